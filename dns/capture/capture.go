// Package capture observes the DNS queries and answers of the sockets on the
// node that talk to port 53, with eBPF programs on the cgroup v2 root, and
// hands their payloads to userspace through a ring buffer.
package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// PayloadMax is how many bytes of each DNS payload the kernel copies (dns.c).
const PayloadMax = 1024

// packetSize is sizeof(struct dns_packet) in dns.c.
const packetSize = 64 + PayloadMax

// Transports of Packet.Transport.
const (
	UDP = unix.IPPROTO_UDP
	TCP = unix.IPPROTO_TCP
)

// Packet is one DNS segment as a socket sent (a query) or received (an
// answer) it.
type Packet struct {
	TimeNs    uint64         // CLOCK_BOOTTIME when the socket sent or received it
	CgroupID  uint64         // cgroup v2 id of the socket's owner
	NetNS     uint32         // network namespace of the socket
	Len       int            // DNS payload bytes in the packet (for TCP: in this segment)
	Transport uint8          // UDP or TCP
	Query     bool           // sent to port 53; else received from port 53
	Server    netip.Addr     // the port 53 end
	Client    netip.AddrPort // the socket's end
	// Payload is the copied prefix of the DNS payload, at most PayloadMax
	// bytes; it aliases the reader's buffer and is valid until the next Read.
	Payload []byte
}

// Truncated reports whether the packet was longer than what the kernel copied.
func (p *Packet) Truncated() bool { return len(p.Payload) < p.Len }

// Config sizes the capture.
type Config struct {
	// RingBufferBytes is the size of the packet ring buffer; a power of two, at least one page.
	RingBufferBytes int
	// CgroupRoot is the cgroup v2 mount the program is attached to.
	CgroupRoot string
}

// Capture owns the programs, their cgroup links and the ring buffer reader.
type Capture struct {
	objs   dnsObjects
	links  []link.Link
	reader *ringbuf.Reader
	record ringbuf.Record
}

// ErrPrivilege marks a failure for lack of privilege: attaching to a cgroup
// needs CAP_NET_ADMIN on top of what connect capture needs.
var ErrPrivilege = errors.New("DNS capture needs CAP_NET_ADMIN (to attach a cgroup program) besides CAP_BPF and CAP_PERFMON")

// Load loads the program and attaches it to the cgroup v2 root.
func Load(cfg Config) (*Capture, error) {
	if cfg.RingBufferBytes < unix.Getpagesize() || cfg.RingBufferBytes&(cfg.RingBufferBytes-1) != 0 {
		return nil, fmt.Errorf("DNS ring buffer size %d must be a power of two and at least one page", cfg.RingBufferBytes)
	}
	_ = rlimit.RemoveMemlock()
	spec, err := loadDns()
	if err != nil {
		return nil, fmt.Errorf("parse embedded DNS eBPF object: %w", err)
	}
	spec.Maps[dnsMapPackets].MaxEntries = uint32(cfg.RingBufferBytes)
	c := &Capture{}
	if err := spec.LoadAndAssign(&c.objs, nil); err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("load DNS eBPF program: %w: %w", ErrPrivilege, err)
		}
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load DNS eBPF program: the verifier refused it (Linux 6.2 or newer is needed for DNS capture): %+v", verr)
		}
		return nil, fmt.Errorf("load DNS eBPF program: %w", err)
	}
	for _, a := range []struct {
		prog   *ebpf.Program
		attach ebpf.AttachType
	}{
		// The marking hooks first: a packet's program must never find a
		// socket unmarked because its hook was not there yet.
		{c.objs.DnsConnect4, ebpf.AttachCGroupInet4Connect},
		{c.objs.DnsConnect6, ebpf.AttachCGroupInet6Connect},
		{c.objs.DnsSendmsg4, ebpf.AttachCGroupUDP4Sendmsg},
		{c.objs.DnsSendmsg6, ebpf.AttachCGroupUDP6Sendmsg},
		{c.objs.DnsEgress, ebpf.AttachCGroupInetEgress},
		{c.objs.DnsIngress, ebpf.AttachCGroupInetIngress},
	} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cfg.CgroupRoot, Attach: a.attach, Program: a.prog})
		if err != nil {
			c.Close()
			if errors.Is(err, unix.EPERM) {
				return nil, fmt.Errorf("attach DNS program %s to cgroup %s: %w: %w", a.attach, cfg.CgroupRoot, ErrPrivilege, err)
			}
			return nil, fmt.Errorf("attach DNS program %s to cgroup %s: %w", a.attach, cfg.CgroupRoot, err)
		}
		c.links = append(c.links, l)
	}
	c.reader, err = ringbuf.NewReader(c.objs.Packets)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("open DNS ring buffer: %w", err)
	}
	return c, nil
}

// Wait blocks until the ring buffer holds a packet or timeout has passed,
// without reading anything.
func (c *Capture) Wait(timeout time.Duration) error {
	fds := []unix.PollFd{{Fd: int32(c.objs.Packets.FD()), Events: unix.POLLIN}}
	_, err := unix.Poll(fds, int(timeout.Milliseconds()))
	if err != nil && !errors.Is(err, unix.EINTR) {
		return fmt.Errorf("poll DNS ring buffer: %w", err)
	}
	return nil
}

// Read decodes the next packet into p. It returns os.ErrDeadlineExceeded once
// SetDeadline's time has passed and nothing is buffered.
func (c *Capture) Read(p *Packet) error {
	if err := c.reader.ReadInto(&c.record); err != nil {
		return err
	}
	return Decode(c.record.RawSample, p)
}

// SetDeadline makes a blocked Read return at time d; a past d makes Read non-blocking.
func (c *Capture) SetDeadline(d time.Time) { c.reader.SetDeadline(d) }

// Buffered is the number of bytes waiting in the ring buffer.
func (c *Capture) Buffered() int { return c.reader.AvailableBytes() }

// Lost is the number of packets that found the ring buffer full, since Load.
func (c *Capture) Lost() (uint64, error) {
	var n uint64
	if err := c.objs.Counters.Lookup(uint32(0), &n); err != nil {
		return 0, fmt.Errorf("read DNS loss counter: %w", err)
	}
	return n, nil
}

// Programs are the loaded programs by name, for their run-time statistics.
func (c *Capture) Programs() map[string]*ebpf.Program {
	return map[string]*ebpf.Program{
		"ingress": c.objs.DnsIngress, "egress": c.objs.DnsEgress,
		"connect4": c.objs.DnsConnect4, "connect6": c.objs.DnsConnect6,
		"sendmsg4": c.objs.DnsSendmsg4, "sendmsg6": c.objs.DnsSendmsg6,
	}
}

// Close detaches the program and releases the kernel objects.
func (c *Capture) Close() error {
	var errs []error
	for _, l := range c.links {
		errs = append(errs, l.Close())
	}
	if c.reader != nil {
		errs = append(errs, c.reader.Close())
	}
	errs = append(errs, c.objs.Close())
	return errors.Join(errs...)
}

// Decode parses a raw struct dns_packet. p.Payload aliases raw.
func Decode(raw []byte, p *Packet) error {
	if len(raw) < packetSize {
		return fmt.Errorf("DNS packet record of %d bytes, want %d", len(raw), packetSize)
	}
	le := binary.LittleEndian
	p.TimeNs = le.Uint64(raw[0:])
	p.CgroupID = le.Uint64(raw[8:])
	p.NetNS = le.Uint32(raw[16:])
	p.Len = int(le.Uint32(raw[20:]))
	caplen := int(le.Uint16(raw[24:]))
	if caplen > PayloadMax {
		return fmt.Errorf("DNS packet record claims %d captured bytes, more than %d", caplen, PayloadMax)
	}
	family, transport := raw[26], raw[27]
	p.Transport = transport
	port := le.Uint16(raw[60:])
	p.Query = raw[62] == 1
	switch family {
	case 4:
		p.Server = netip.AddrFrom4([4]byte(raw[28:32]))
		p.Client = netip.AddrPortFrom(netip.AddrFrom4([4]byte(raw[44:48])), port)
	case 6:
		p.Server = netip.AddrFrom16([16]byte(raw[28:44]))
		p.Client = netip.AddrPortFrom(netip.AddrFrom16([16]byte(raw[44:60])), port)
	default:
		return fmt.Errorf("DNS packet record of address family %d", family)
	}
	p.Payload = raw[64 : 64+caplen]
	return nil
}
