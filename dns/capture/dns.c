//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// connaudit: DNS queries and answers of the sockets that talk to port 53.
//
// cgroup_sock_addr hooks (connect and sendmsg) mark, in socket-local storage,
// every socket that addresses port 53; nothing else is recorded there.
// cgroup_skb programs on the cgroup v2 root then run for every packet a
// socket on the node sends or receives, and return at once unless the socket
// is marked: for a marked socket, egress copies its queries (to port 53) and
// ingress its answers (from port 53) into one ring buffer, so that userspace
// can pair each answer with the query its socket sent. Both always let the
// packet through. The socket's network namespace and cgroup are the
// socket's own, never those of the softirq's current task.
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

enum direction {
	DIR_ANSWER = 0, // received from port 53
	DIR_QUERY = 1,  // sent to port 53
};

struct dns_packet {
	__u64 time_ns; // CLOCK_BOOTTIME when the socket sent or received it
	__u64 cgroup_id; // cgroup v2 id of the socket
	__u32 netns;     // network namespace of the socket
	__u32 len;       // DNS payload bytes in the packet (TCP: in this segment)
	__u16 caplen;    // of which copied into payload
	__u8 family;     // 4 or 6
	__u8 transport;  // IPPROTO_UDP or IPPROTO_TCP
	__u8 server[16]; // the port 53 end
	__u8 client[16]; // the socket's end
	__u16 client_port;
	__u8 direction;  // enum direction
	__u8 pad;
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

// The mark of a socket that addressed port 53. Storage lives and dies with
// its socket, so nothing here needs cleaning up or bounding.
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u8);
} dns_sockets SEC(".maps");

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

static __always_inline __u32 socket_netns(struct __sk_buff *skb)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	struct sock *sk = BPF_CORE_READ(kskb, sk);
	if (!sk)
		return 0;
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

// mark runs in connect() and in sendmsg() with an address (sendto), in the
// caller's context, before the kernel uses the address: a socket is marked
// before its first query leaves. A connected UDP socket's send() passes no
// address and no hook, but its connect() marked it.
static __always_inline int mark(struct bpf_sock_addr *ctx)
{
	if (ctx->user_port == bpf_htons(DNS_PORT) && ctx->sk)
		bpf_sk_storage_get(&dns_sockets, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	return 1;
}

SEC("cgroup/connect4")
int dns_connect4(struct bpf_sock_addr *ctx) { return mark(ctx); }

SEC("cgroup/connect6")
int dns_connect6(struct bpf_sock_addr *ctx) { return mark(ctx); }

SEC("cgroup/sendmsg4")
int dns_sendmsg4(struct bpf_sock_addr *ctx) { return mark(ctx); }

SEC("cgroup/sendmsg6")
int dns_sendmsg6(struct bpf_sock_addr *ctx) { return mark(ctx); }

// marked is the whole cost for every other packet: one helper call, which
// returns at its first test for a socket without any local storage. The
// helper itself returns NULL for request and time-wait sockets.
static __always_inline bool marked(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return false;
	return bpf_sk_storage_get(&dns_sockets, sk, 0, 0) != NULL;
}

// copy_packet sends a UDP datagram or TCP segment with DNS payload, to
// (query) or from (answer) port 53, to userspace.
static __always_inline void copy_packet(struct __sk_buff *skb, __u8 direction)
{
	__u32 off, l4proto;
	__u8 family;

	// The packet starts at its IP header.
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) < 0)
			return;
		// A later fragment has no port; a first fragment's DNS payload is cut by PAYLOAD_MAX anyway.
		if (ip.frag_off & bpf_htons(IP_OFFSET))
			return;
		off = ip.ihl * 4;
		l4proto = ip.protocol;
		family = 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)) < 0)
			return;
		// Extension headers are not followed: resolvers do not send them.
		off = sizeof(ip6);
		l4proto = ip6.nexthdr;
		family = 6;
	} else {
		return;
	}

	__u16 sport, dport;
	__u32 payload_off;
	if (l4proto == IPPROTO_UDP) {
		struct udphdr udp;
		if (bpf_skb_load_bytes(skb, off, &udp, sizeof(udp)) < 0)
			return;
		sport = udp.source;
		dport = udp.dest;
		payload_off = off + sizeof(udp);
	} else if (l4proto == IPPROTO_TCP) {
		struct tcphdr tcp;
		if (bpf_skb_load_bytes(skb, off, &tcp, sizeof(tcp)) < 0)
			return;
		sport = tcp.source;
		dport = tcp.dest;
		payload_off = off + tcp.doff * 4;
	} else {
		return;
	}
	__u16 client_port = direction == DIR_QUERY ? sport : dport;
	if ((direction == DIR_QUERY ? dport : sport) != bpf_htons(DNS_PORT))
		return;
	if (payload_off >= skb->len)
		return; // a bare TCP ACK, SYN or FIN
	__u32 len = skb->len - payload_off;

	// The time is taken before the reservation: a packet placed in the
	// ring after another is then never older than it, which is what lets
	// userspace know that everything before a connect's time was read once
	// it has read a packet stamped after it. (Stamped after reserving, a
	// packet delayed in between, say by an interrupt, would carry a later
	// time than answers placed behind it.)
	__u64 now = bpf_ktime_get_boot_ns();
	struct dns_packet *p = bpf_ringbuf_reserve(&packets, sizeof(*p), 0);
	if (!p) {
		// Never lose silently: userspace reports the count.
		__u32 key = COUNTER_RINGBUF_LOST;
		__u64 *v = bpf_map_lookup_elem(&counters, &key);
		if (v)
			__sync_fetch_and_add(v, 1);
		return;
	}
	__u32 caplen = len;
	if (caplen > PAYLOAD_MAX)
		caplen = PAYLOAD_MAX;
	p->time_ns = now;
	p->cgroup_id = bpf_skb_cgroup_id(skb);
	p->netns = socket_netns(skb);
	p->len = len;
	p->family = family;
	p->transport = l4proto;
	p->client_port = bpf_ntohs(client_port);
	p->direction = direction;
	p->pad = 0;
	__builtin_memset(p->server, 0, sizeof(p->server));
	__builtin_memset(p->client, 0, sizeof(p->client));
	// Source and destination addresses: offsets 12 and 16 (IPv4), 8 and 24 (IPv6).
	__u8 *src = direction == DIR_QUERY ? p->client : p->server;
	__u8 *dst = direction == DIR_QUERY ? p->server : p->client;
	if (family == 4) {
		bpf_skb_load_bytes(skb, 12, src, 4);
		bpf_skb_load_bytes(skb, 16, dst, 4);
	} else {
		bpf_skb_load_bytes(skb, 8, src, 16);
		bpf_skb_load_bytes(skb, 24, dst, 16);
	}
	// The verifier needs a length it can bound from both sides: 1..PAYLOAD_MAX
	// (len >= 1 here), masked where the compiler cannot drop the mask.
	__u64 n = caplen - 1;
	asm volatile("%[n] &= %[mask]" : [n] "+r"(n) : [mask] "i"(PAYLOAD_MAX - 1));
	if (bpf_skb_load_bytes(skb, payload_off, p->payload, n + 1) < 0)
		caplen = 0;
	p->caplen = caplen;
	bpf_ringbuf_submit(p, 0);
}

SEC("cgroup_skb/ingress")
int dns_ingress(struct __sk_buff *skb)
{
	if (marked(skb))
		copy_packet(skb, DIR_ANSWER);
	return 1;
}

SEC("cgroup_skb/egress")
int dns_egress(struct __sk_buff *skb)
{
	if (marked(skb))
		copy_packet(skb, DIR_QUERY);
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
