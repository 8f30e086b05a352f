//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
// connaudit: one event per TCP connect attempt, sent when its outcome is known.
//
// Three stable tracepoints cooperate:
//   sys_enter_connect     remembers the attempt per thread (start time, socket, destination)
//   inet_sock_set_state   (a raw tracepoint) CLOSE->SYN_SENT runs in the connecting task: capture its identity,
//                         keyed by socket, because the outcome (SYN_SENT->ESTABLISHED/CLOSE)
//                         usually runs in softirq where the current task is unrelated.
//   sys_exit_connect      reports attempts that failed before SYN_SENT (no route, EPERM from a
//                         cgroup hook, ...) and those that failed inside connect() without an
//                         error on the socket (EADDRNOTAVAIL from the port allocator).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115

// Must match bpf/event.go.
enum outcome {
	OUTCOME_ESTABLISHED = 1,
	OUTCOME_CLOSED = 2, // handshake ended in CLOSE; userspace classifies by errno
	OUTCOME_SYNC_ERROR = 3,
};

enum flags {
	FLAG_IDENTITY_LOST = 1, // outcome seen for a handshake that is not in the map
};

// The kernel counts losses; userspace writes back what it has reported, so
// that an agent resuming pinned maps reports each loss exactly once.
enum counter {
	COUNTER_RINGBUF_LOST = 0,
	COUNTER_HANDSHAKE_LOST = 1,
	COUNTER_RINGBUF_REPORTED = 2,
	COUNTER_HANDSHAKE_REPORTED = 3,
	COUNTER_MAX = 4,
};

struct event {
	__u64 start_ns; // CLOCK_BOOTTIME at connect() entry (or at SYN_SENT without connect())
	__u64 end_ns;   // CLOCK_BOOTTIME when the outcome was known
	__u64 cgroup_id;
	__u32 tgid;
	__u32 tid;
	__u32 ptgid;
	__u32 uid;
	__u32 gid;
	__u32 mntns;
	__u32 netns;
	__s32 err; // positive errno, 0 when established
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u8 outcome;
	__u8 flags;
	__u8 saddr[16];
	__u8 daddr[16];
	char comm[16];
};

// A connect() in progress on one thread. The destination is read from uaddr
// only when connect() fails before SYN_SENT, the one case that needs it.
struct pending {
	__u64 start_ns;
	__u64 sk;
	__u64 uaddr;
	__u8 reached_syn_sent;
	__u8 pad[7];
};

// A handshake in flight. closed_in_syscall marks a SYN_SENT->CLOSE with no socket error
// that happened inside the connecting thread's connect(): the syscall's return value is
// the only place that says why. err_at_connect is the soft error the socket held when
// connect() returned: an ICMP error that arrives while connect() owns the socket (a
// REJECT on this node answers within the syscall) is kept only in sk_err_soft, which the
// application's SO_ERROR clears before it closes the socket.
struct handshake {
	struct event ev;
	__u8 closed_in_syscall;
	__u8 pad[3];
	__s32 err_at_connect;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24); // resized from userspace
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); // resized from userspace
	__type(key, __u64);         // struct sock *
	__type(value, struct handshake);
} handshakes SEC(".maps");

// Per thread, freed with it. An entry is reused by the thread's next
// connect(); sk 0 marks one whose connect() has returned.
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pending);
} pendings SEC(".maps");

static __always_inline struct pending *current_pending(void)
{
	return bpf_task_storage_get(&pendings, bpf_get_current_task_btf(), 0, 0);
}

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// Zero-initialised scratch space: struct handshake is too big for comfort on the stack.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct handshake);
} scratch SEC(".maps");

#ifndef CONNAUDIT_PROBE_READS
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

// A read-only typed view of a kernel pointer (Linux 6.2): its fields are then
// read with plain loads (faulting to 0) instead of one bpf_probe_read_kernel
// call each.
#define KPTR(type, ptr) ((type *)bpf_rdonly_cast((void *)(ptr), bpf_core_type_id_kernel(type)))
#define KREAD(ptr, ...) (___arrow(ptr, __VA_ARGS__))
#define KCOPY(dst, n, src) __builtin_memcpy(dst, src, n)
#else
// The object for kernels without bpf_rdonly_cast (before 6.2): one
// bpf_probe_read_kernel per field.
#define KPTR(type, ptr) ((type *)(ptr))
#define KREAD(ptr, ...) BPF_CORE_READ(ptr, __VA_ARGS__)
#define KCOPY(dst, n, src) bpf_probe_read_kernel(dst, n, src)
#endif

static __always_inline void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &which);
	if (v)
		__sync_fetch_and_add(v, 1);
}

// Waking the reader is the dearest part of an event (irq_work: a self-IPI,
// a VM exit under virtualisation), so records are submitted without one: the
// reader drains the ring buffer on a short period (readerPoll in tracer.go).
// Only a ring buffer filling faster than that wakes it, at an eighth full.
static __always_inline void emit(struct event *ev)
{
	// Never drop silently: a full ring buffer is counted and userspace reports it.
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

static __always_inline struct handshake *scratch_handshake(void)
{
	__u32 zero = 0;
	struct handshake *h = bpf_map_lookup_elem(&scratch, &zero);
	if (h)
		__builtin_memset(h, 0, sizeof(*h));
	return h;
}

// The sock of fd when it is a socket, and the socket's state.
static __always_inline struct sock *sock_from_fd(int fd, int *state)
{
	struct fdtable *fdt = bpf_get_current_task_btf()->files->fdt;
	if (fd < 0 || (unsigned int)fd >= fdt->max_fds)
		return NULL;
	// The verifier allows no variable index into the BTF-typed fd array.
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fdt->fd[fd]);
	if (!f)
		return NULL;
	f = KPTR(struct file, f);
	if ((KREAD(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = KPTR(struct socket, KREAD(f, private_data));
	*state = KREAD(sock, state);
	return KREAD(sock, sk);
}

// Identity of the current task, and the socket's network namespace.
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
	ev->netns = KREAD(sk, __sk_common.skc_net.net, ns.inum);
	bpf_get_current_comm(&ev->comm, sizeof(ev->comm));
}

SEC("tracepoint/syscalls/sys_enter_connect")
int enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	int state = 0;
	struct sock *sk = sock_from_fd((int)ctx->args[0], &state);
	if (!sk)
		return 0;
	sk = KPTR(struct sock, sk);

	__u16 family = KREAD(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	if (KREAD(sk, sk_protocol) != IPPROTO_TCP || KREAD(sk, sk_type) != SOCK_STREAM)
		return 0;
	// Only an unconnected socket in CLOSE starts an attempt. Others poll
	// (EALREADY, EISCONN) or collect how their attempt ended: a socket still
	// SS_CONNECTING in CLOSE returns its error, which was reported already.
	if (state != SS_UNCONNECTED || KREAD(sk, __sk_common.skc_state) != TCP_CLOSE)
		return 0;

	struct pending *p = bpf_task_storage_get(&pendings, bpf_get_current_task_btf(), 0,
						 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!p)
		return 0;
	p->start_ns = bpf_ktime_get_boot_ns();
	p->sk = (__u64)sk;
	p->uaddr = ctx->args[1];
	p->reached_syn_sent = 0;
	return 0;
}

// The peer as the inet_sock_set_state trace record has it.
static __always_inline void set_peer(struct event *ev, struct sock *sk)
{
	ev->family = KREAD(sk, __sk_common.skc_family);
	ev->dport = bpf_ntohs(KREAD(sk, __sk_common.skc_dport));
	if (ev->family == AF_INET)
		KCOPY(ev->daddr, 4, &sk->__sk_common.skc_daddr);
	else
		KCOPY(ev->daddr, 16, sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32);
}

// The local end as the trace record has it.
static __always_inline void set_local(struct event *ev, struct sock *sk)
{
	struct inet_sock *inet = KPTR(struct inet_sock, sk);
	ev->sport = bpf_ntohs(KREAD(inet, inet_sport));
	if (ev->family == AF_INET)
		KCOPY(ev->saddr, 4, &inet->inet_saddr);
	else
		KCOPY(ev->saddr, 16, sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32);
}

// Why a handshake ended in CLOSE: the hard error, or else the soft one an ICMP
// error left while the socket was owned by the application.
static __always_inline __s32 socket_error(struct sock *sk)
{
	__s32 err = KREAD(sk, sk_err);
	return err ? err : KREAD(sk, sk_err_soft);
}

static __always_inline int on_syn_sent(struct sock *sk, __u64 skaddr)
{
	struct handshake *h = scratch_handshake();
	if (!h)
		return 0;
	struct event *ev = &h->ev;

	ev->start_ns = bpf_ktime_get_boot_ns();
	struct pending *p = current_pending();
	if (p && p->sk == skaddr) {
		ev->start_ns = p->start_ns;
		p->reached_syn_sent = 1;
	}
	fill_identity(ev, sk);
	set_peer(ev, sk);
	bpf_map_update_elem(&handshakes, &skaddr, h, BPF_ANY);
	return 0;
}

// A raw tracepoint: the classic one would fill its trace record (addresses,
// ports) on every state change of every inet socket before the program runs,
// where most transitions are decided on the states alone.
SEC("raw_tp/inet_sock_set_state")
int sock_set_state(struct bpf_raw_tracepoint_args *ctx)
{
	int oldstate = ctx->args[1], newstate = ctx->args[2];
	if (oldstate == TCP_CLOSE) {
		if (newstate != TCP_SYN_SENT)
			return 0;
	} else if (oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV) {
		// SYN_RECV is reached from SYN_SENT only by a simultaneous open.
		if (newstate != TCP_ESTABLISHED && newstate != TCP_CLOSE)
			return 0;
	} else {
		return 0;
	}
	__u64 skaddr = ctx->args[0];
	struct sock *sk = KPTR(struct sock, skaddr);
	if (KREAD(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	if (oldstate == TCP_CLOSE)
		return on_syn_sent(sk, skaddr);
	// A passive socket (LISTEN->SYN_RECV->ESTABLISHED) has no struct socket until it is
	// accepted; ours are owned by a socket until they leave SYN_SENT/SYN_RECV.
	if (oldstate == TCP_SYN_RECV && !KREAD(sk, sk_socket))
		return 0;

	struct handshake *h = bpf_map_lookup_elem(&handshakes, &skaddr);
	if (!h) {
		if (oldstate != TCP_SYN_SENT)
			return 0;
		// Evicted from the LRU (or begun before we attached): report what the socket says.
		count(COUNTER_HANDSHAKE_LOST);
		struct handshake *o = scratch_handshake();
		if (!o)
			return 0;
		o->ev.flags = FLAG_IDENTITY_LOST;
		set_peer(&o->ev, sk);
		set_local(&o->ev, sk);
		o->ev.netns = KREAD(sk, __sk_common.skc_net.net, ns.inum);
		o->ev.end_ns = bpf_ktime_get_boot_ns();
		if (newstate == TCP_ESTABLISHED) {
			o->ev.outcome = OUTCOME_ESTABLISHED;
		} else {
			o->ev.outcome = OUTCOME_CLOSED;
			o->ev.err = socket_error(sk);
		}
		emit(&o->ev);
		return 0;
	}

	struct event *ev = &h->ev;
	ev->end_ns = bpf_ktime_get_boot_ns();
	set_local(ev, sk);
	if (newstate == TCP_ESTABLISHED) {
		ev->outcome = OUTCOME_ESTABLISHED;
		ev->err = 0;
	} else {
		ev->outcome = OUTCOME_CLOSED;
		ev->err = socket_error(sk);
		if (ev->err == 0)
			ev->err = h->err_at_connect;
		if (ev->err == 0) {
			struct pending *p = current_pending();
			if (p && p->sk == skaddr) {
				h->closed_in_syscall = 1; // sys_exit_connect reports it with the errno
				return 0;
			}
		}
	}
	emit(ev);
	bpf_map_delete_elem(&handshakes, &skaddr);
	return 0;
}

// The destination connect() was given, for an attempt that never reached SYN_SENT.
static __always_inline bool set_peer_from_user(struct event *ev, const void *uaddr)
{
	bpf_probe_read_user(&ev->family, sizeof(ev->family), uaddr);
	if (ev->family == AF_INET) {
		struct sockaddr_in sin = {};
		bpf_probe_read_user(&sin, sizeof(sin), uaddr);
		ev->dport = bpf_ntohs(sin.sin_port);
		__builtin_memcpy(ev->daddr, &sin.sin_addr, 4);
		return true;
	}
	if (ev->family == AF_INET6) {
		struct sockaddr_in6 sin6 = {};
		bpf_probe_read_user(&sin6, sizeof(sin6), uaddr);
		ev->dport = bpf_ntohs(sin6.sin6_port);
		__builtin_memcpy(ev->daddr, &sin6.sin6_addr, 16);
		return true;
	}
	return false; // AF_UNSPEC disconnects
}

SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	struct pending *p = current_pending();
	if (!p || !p->sk)
		return 0;
	long ret = ctx->ret;
	__u64 skaddr = p->sk;
	p->sk = 0;

	if (p->reached_syn_sent) {
		struct handshake *h = bpf_map_lookup_elem(&handshakes, &skaddr);
		if (h && h->closed_in_syscall) {
			h->ev.outcome = OUTCOME_SYNC_ERROR;
			h->ev.err = ret < 0 ? (__s32)-ret : 0;
			emit(&h->ev);
			bpf_map_delete_elem(&handshakes, &skaddr);
		} else if (h) {
			h->err_at_connect = KREAD(KPTR(struct sock, skaddr), sk_err_soft);
		}
		// Otherwise the handshake's outcome is (or will be) reported by sock_set_state.
		return 0;
	}

	// ret == 0 without SYN_SENT: TCP_FASTOPEN_CONNECT defers the SYN to the first write,
	// where CLOSE->SYN_SENT starts the attempt.
	if (ret < 0 && ret != -EINPROGRESS) {
		struct handshake *h = scratch_handshake();
		if (h && set_peer_from_user(&h->ev, (const void *)p->uaddr)) {
			struct sock *sk = KPTR(struct sock, skaddr);
			struct event *ev = &h->ev;
			ev->start_ns = p->start_ns;
			ev->end_ns = bpf_ktime_get_boot_ns();
			fill_identity(ev, sk);
			ev->outcome = OUTCOME_SYNC_ERROR;
			ev->err = (__s32)-ret;
			ev->sport = KREAD(sk, __sk_common.skc_num);
			if (ev->family == AF_INET)
				KCOPY(ev->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
			else
				KCOPY(ev->saddr, 16, sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32);
			emit(ev);
		}
	}
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
