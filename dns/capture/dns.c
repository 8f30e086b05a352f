//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// connaudit: DNS responses received by any socket on the node.
//
// A cgroup_skb/ingress program on the cgroup v2 root runs for every packet
// delivered to a socket of any process (pod or host): it sees UDP and TCP
// segments from port 53 after the socket was found, so the socket's network
// namespace and cgroup are the receiver's, never the softirq's current task.
// It copies a bounded prefix of the DNS payload into a ring buffer and always
// lets the packet through.
#include "../../bpf/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define DNS_PORT 53
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

// Bytes of DNS payload copied; the rest of a longer answer is cut off. A power
// of two (it is also a mask). Must match capture.go.
#define PAYLOAD_MAX 1024

enum counter {
	COUNTER_RINGBUF_LOST = 0,
	COUNTER_MAX = 1,
};

struct dns_packet {
	__u64 time_ns; // CLOCK_BOOTTIME when the packet reached the socket
	__u64 cgroup_id; // cgroup v2 id of the receiving socket
	__u32 netns;     // network namespace of the receiving socket
	__u32 len;       // DNS payload bytes in the packet (TCP: in this segment)
	__u16 caplen;    // of which copied into payload
	__u8 family;     // 4 or 6
	__u8 transport;  // IPPROTO_UDP or IPPROTO_TCP
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 dport;
	__u8 pad[2];
	__u8 payload[PAYLOAD_MAX];
};

// Referenced so that its type reaches BTF for bpf2go's -type.
const struct dns_packet *unused_dns_packet __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); // resized from userspace
} packets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

static __always_inline __u32 socket_netns(struct __sk_buff *skb)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	struct sock *sk = BPF_CORE_READ(kskb, sk);
	if (!sk)
		return 0;
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

SEC("cgroup_skb/ingress")
int dns_ingress(struct __sk_buff *skb)
{
	__u32 off, l4proto;
	__u8 family;

	// The packet starts at its IP header.
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) < 0)
			return 1;
		// A later fragment has no port; a first fragment's DNS payload is cut by PAYLOAD_MAX anyway.
		if (ip.frag_off & bpf_htons(IP_OFFSET))
			return 1;
		off = ip.ihl * 4;
		l4proto = ip.protocol;
		family = 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)) < 0)
			return 1;
		// Extension headers are not followed: resolvers do not send them.
		off = sizeof(ip6);
		l4proto = ip6.nexthdr;
		family = 6;
	} else {
		return 1;
	}

	__u16 sport, dport;
	__u32 payload_off;
	if (l4proto == IPPROTO_UDP) {
		struct udphdr udp;
		if (bpf_skb_load_bytes(skb, off, &udp, sizeof(udp)) < 0)
			return 1;
		sport = udp.source;
		dport = udp.dest;
		payload_off = off + sizeof(udp);
	} else if (l4proto == IPPROTO_TCP) {
		struct tcphdr tcp;
		if (bpf_skb_load_bytes(skb, off, &tcp, sizeof(tcp)) < 0)
			return 1;
		sport = tcp.source;
		dport = tcp.dest;
		payload_off = off + tcp.doff * 4;
	} else {
		return 1;
	}
	if (sport != bpf_htons(DNS_PORT))
		return 1;
	if (payload_off >= skb->len)
		return 1; // a bare TCP ACK, SYN or FIN
	__u32 len = skb->len - payload_off;

	struct dns_packet *p = bpf_ringbuf_reserve(&packets, sizeof(*p), 0);
	if (!p) {
		// Never lose silently: userspace reports the count.
		__u32 key = COUNTER_RINGBUF_LOST;
		__u64 *v = bpf_map_lookup_elem(&counters, &key);
		if (v)
			__sync_fetch_and_add(v, 1);
		return 1;
	}
	__u32 caplen = len;
	if (caplen > PAYLOAD_MAX)
		caplen = PAYLOAD_MAX;
	p->time_ns = bpf_ktime_get_boot_ns();
	p->cgroup_id = bpf_skb_cgroup_id(skb);
	p->netns = socket_netns(skb);
	p->len = len;
	p->family = family;
	p->transport = l4proto;
	p->dport = bpf_ntohs(dport);
	__builtin_memset(p->saddr, 0, sizeof(p->saddr));
	__builtin_memset(p->daddr, 0, sizeof(p->daddr));
	if (family == 4) {
		bpf_skb_load_bytes(skb, 12, p->saddr, 4);
		bpf_skb_load_bytes(skb, 16, p->daddr, 4);
	} else {
		bpf_skb_load_bytes(skb, 8, p->saddr, 16);
		bpf_skb_load_bytes(skb, 24, p->daddr, 16);
	}
	// The verifier needs a length it can bound from both sides: 1..PAYLOAD_MAX
	// (len >= 1 here), masked where the compiler cannot drop the mask.
	__u64 n = caplen - 1;
	asm volatile("%[n] &= %[mask]" : [n] "+r"(n) : [mask] "i"(PAYLOAD_MAX - 1));
	if (bpf_skb_load_bytes(skb, payload_off, p->payload, n + 1) < 0)
		caplen = 0;
	p->caplen = caplen;
	bpf_ringbuf_submit(p, 0);
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
