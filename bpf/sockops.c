//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// EXPERIMENTAL, measured only (issue 20, item 4): the same connect attempt as
// connect.c records, captured from cgroup socket hooks instead of tracepoints,
// to see what they cost per connect and what they cannot see. The agent does
// not load this object; bpf/kernel_bench_test.go and bpf/sockops_test.go do.
//
// Two variants, both attached to the root of the cgroup v2 hierarchy:
//
//   sockops_only           BPF_SOCK_OPS_TCP_CONNECT_CB (inside connect(), in the
//                          connecting task) takes the task's identity and sets
//                          BPF_SOCK_OPS_STATE_CB_FLAG on that socket alone;
//                          STATE_CB from SYN_SENT/SYN_RECV to ESTABLISHED or
//                          CLOSE reports the outcome and clears the flag.
//   connect4/6 +           the cgroup connect hook (inside connect(), before the
//   sockops_state          route and the port are chosen) takes the identity and
//                          sets the socket's STATE_CB flag with bpf_setsockopt
//                          (TCP_BPF_SOCK_OPS_CB_FLAGS, Linux 6.12); sockops_state
//                          reports the outcome as above and ignores every other op.
//
// sockops_empty is a reference: the floor of any sock_ops design on the load.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define SOL_TCP 6

// As in connect.c.
enum outcome {
	OUTCOME_ESTABLISHED = 1,
	OUTCOME_CLOSED = 2,
};

enum flags {
	FLAG_IDENTITY_LOST = 1,
};

enum counter {
	COUNTER_RINGBUF_LOST = 0,
	COUNTER_HANDSHAKE_LOST = 1,
	COUNTER_MAX = 4,
};

// Must be connect.c's struct event, so that bpf.Decode reads it
// (TestSockopsEventIsConnectEvent compares the generated types).
struct event {
	__u64 start_ns;
	__u64 end_ns;
	__u64 cgroup_id;
	__u32 tgid;
	__u32 tid;
	__u32 ptgid;
	__u32 uid;
	__u32 gid;
	__u32 mntns;
	__u32 netns;
	__s32 err;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u8 outcome;
	__u8 flags;
	__u8 saddr[16];
	__u8 daddr[16];
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24); // resized from userspace
} events SEC(".maps");

// The attempt of a socket between its start and its outcome. By default in
// an LRU hash keyed by the socket's address, as connect.c's handshakes; built
// with -DCONNAUDIT_SK_STORAGE (the sockopsSkStorage object), in socket
// storage, which is freed with the socket but allocated and freed for each
// attempt.
#ifndef CONNAUDIT_SK_STORAGE
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); // struct sock *
	__type(value, struct event);
} attempts SEC(".maps");
#else
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct event);
} attempts SEC(".maps");
#endif

#ifndef CONNAUDIT_SK_STORAGE
// Zero-initialised scratch space for a record before it is stored.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct event);
} scratch SEC(".maps");
#endif

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

#define KPTR(type, ptr) ((type *)bpf_rdonly_cast((void *)(ptr), bpf_core_type_id_kernel(type)))

static __always_inline void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &which);
	if (v)
		__sync_fetch_and_add(v, 1);
}

// connect.c's emit: no wakeup unless the ring buffer is an eighth full.
static __always_inline void emit(struct event *ev)
{
	struct event *rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	if (!rec) {
		count(COUNTER_RINGBUF_LOST);
		return;
	}
	__builtin_memcpy(rec, ev, sizeof(*rec));
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= bpf_ringbuf_query(&events, BPF_RB_RING_SIZE) / 8)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(rec, flags);
}

// The current task's identity, as connect.c's fill_identity takes it: on
// Linux 6.18 sock_ops and cgroup/connect programs may call the
// bpf_get_current_* helpers (and a tracing-capable loader may walk the task).
static __always_inline void fill_identity(struct event *ev, struct sock *sk)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();

	ev->tgid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	ev->uid = (__u32)uid_gid;
	ev->gid = uid_gid >> 32;
	ev->ptgid = task->real_parent->tgid;
	ev->cgroup_id = bpf_get_current_cgroup_id();
	ev->mntns = task->nsproxy->mnt_ns->ns.inum;
	ev->netns = sk->__sk_common.skc_net.net->ns.inum;
	bpf_get_current_comm(&ev->comm, sizeof(ev->comm));
}

// Begins an attempt on the socket: a fresh record of its start.
#ifdef CONNAUDIT_SK_STORAGE
static __always_inline bool begin(struct bpf_sock *bsk)
{
	struct event *ev = bpf_sk_storage_get(&attempts, bsk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!ev)
		return false;
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->start_ns = bpf_ktime_get_boot_ns();
	fill_identity(ev, KPTR(struct sock, bsk));
	return true;
}
#else
static __always_inline bool begin(struct bpf_sock *bsk)
{
	__u32 zero = 0;
	struct event *ev = bpf_map_lookup_elem(&scratch, &zero);
	if (!ev)
		return false;
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->start_ns = bpf_ktime_get_boot_ns();
	fill_identity(ev, KPTR(struct sock, bsk));
	__u64 key = (__u64)bsk;
	return bpf_map_update_elem(&attempts, &key, ev, BPF_ANY) == 0;
}
#endif

// Completes ev with the outcome and the socket's ends, and sends it.
static __always_inline void finish(struct bpf_sock_ops *skops, struct sock *sk, struct event *ev, __u32 newstate)
{
	// The ends as connect.c's set_peer and set_local read them (the ctx's
	// remote_ip6[] cannot be copied with a variable offset).
	struct inet_sock *inet = KPTR(struct inet_sock, sk);
	ev->end_ns = bpf_ktime_get_boot_ns();
	ev->family = sk->__sk_common.skc_family;
	ev->dport = bpf_ntohs(sk->__sk_common.skc_dport);
	ev->sport = bpf_ntohs(inet->inet_sport);
	if (ev->family == AF_INET) {
		__builtin_memcpy(ev->daddr, &sk->__sk_common.skc_daddr, 4);
		__builtin_memcpy(ev->saddr, &inet->inet_saddr, 4);
	} else {
		__builtin_memcpy(ev->daddr, sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32, 16);
		__builtin_memcpy(ev->saddr, sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32, 16);
	}
	if (newstate == TCP_ESTABLISHED) {
		ev->outcome = OUTCOME_ESTABLISHED;
		ev->err = 0;
	} else {
		ev->outcome = OUTCOME_CLOSED;
		ev->err = sk->sk_err;
		if (!ev->err)
			ev->err = sk->sk_err_soft;
	}
	emit(ev);
}

// Ends the attempt of the socket skops is about, when the state change is an
// outcome: from SYN_SENT (or SYN_RECV, a simultaneous open) to ESTABLISHED or CLOSE.
static __always_inline void on_state(struct bpf_sock_ops *skops)
{
	__u32 oldstate = skops->args[0], newstate = skops->args[1];
	if (oldstate != TCP_SYN_SENT && oldstate != TCP_SYN_RECV)
		return;
	if (newstate != TCP_ESTABLISHED && newstate != TCP_CLOSE)
		return;
	struct bpf_sock *bsk = skops->sk;
	if (!bsk)
		return;
	struct sock *sk = KPTR(struct sock, bsk);

#ifdef CONNAUDIT_SK_STORAGE
	struct event *ev = bpf_sk_storage_get(&attempts, bsk, 0, 0);
#else
	__u64 key = (__u64)bsk;
	struct event *ev = bpf_map_lookup_elem(&attempts, &key);
#endif
	if (ev) {
		finish(skops, sk, ev, newstate);
#ifdef CONNAUDIT_SK_STORAGE
		bpf_sk_storage_delete(&attempts, bsk);
#else
		bpf_map_delete_elem(&attempts, &key);
#endif
	} else {
		// The flag without the record: evicted from the LRU map, or no
		// socket storage could be allocated.
		count(COUNTER_HANDSHAKE_LOST);
		struct event lost = {};
		lost.flags = FLAG_IDENTITY_LOST;
		lost.netns = sk->__sk_common.skc_net.net->ns.inum;
		finish(skops, sk, &lost, newstate);
	}
	// The socket's later state changes do not concern us.
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags & ~BPF_SOCK_OPS_STATE_CB_FLAG);
}

// Variant a: sock_ops alone.
SEC("sockops")
int sockops_only(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB: {
		// In tcp_connect(), in connect()'s task: SYN_SENT, the local port chosen.
		struct bpf_sock *bsk = skops->sk;
		if (!bsk || !begin(bsk))
			return 1;
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		return 1;
	}
	case BPF_SOCK_OPS_STATE_CB:
		on_state(skops);
		return 1;
	}
	return 1;
}

// Variant b, start: the cgroup connect hooks. They run at every connect() on a
// TCP socket with an address, before the socket's state is checked, so
// connect() polling an attempt in progress (EALREADY) or on a connected
// socket (EISCONN) is told apart here, as connect.c's enter_connect does.
static __always_inline void on_connect(struct bpf_sock_addr *ctx)
{
	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return;
	struct bpf_sock *bsk = ctx->sk;
	if (bsk->state != TCP_CLOSE)
		return;
	struct sock *sk = KPTR(struct sock, bsk);
	struct socket *sock = KPTR(struct socket, sk->sk_socket);
	if (sock->state != SS_UNCONNECTED)
		return;
	if (!begin(bsk))
		return;
	int flags = 0;
	bpf_getsockopt(ctx, SOL_TCP, TCP_BPF_SOCK_OPS_CB_FLAGS, &flags, sizeof(flags));
	flags |= BPF_SOCK_OPS_STATE_CB_FLAG;
	bpf_setsockopt(ctx, SOL_TCP, TCP_BPF_SOCK_OPS_CB_FLAGS, &flags, sizeof(flags));
}

// Both must return 1: 0 would refuse the connect (EPERM).
SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
	on_connect(ctx);
	return 1;
}

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx)
{
	on_connect(ctx);
	return 1;
}

// Variant b, outcome: only the state changes of the sockets connect4/6 flagged.
SEC("sockops")
int sockops_state(struct bpf_sock_ops *skops)
{
	if (skops->op == BPF_SOCK_OPS_STATE_CB)
		on_state(skops);
	return 1;
}

// A reference, not a capture: what a sock_ops program that does nothing costs
// per connect (its runs, and bpf_stats' own clock reads around each).
SEC("sockops")
int sockops_empty(struct bpf_sock_ops *skops)
{
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
