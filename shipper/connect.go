package shipper

import (
	"strconv"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
	"golang.org/x/sys/unix"

	"github.com/connaudit/connaudit/bpf"
	"github.com/connaudit/connaudit/trail"
)

// Source is what the stages after the kernel learned about a connect attempt.
type Source struct {
	Resource       *Resource // the OTLP resource the record belongs to
	ContainerID    string
	ExecutablePath string
	ServerName     string               // the name the application resolved the peer from, when known (server.address)
	Attrs          []attribute.KeyValue // further attributes, built by an AttrList
}

// ConnectBuilder encodes tcp.connect records. It reuses its buffers, so the
// record it returns is valid until the next Build.
type ConnectBuilder struct {
	enc  Encoder
	body []byte
	addr []byte
	comm []byte
}

// Build encodes one connect attempt. start, end and observed are wall-clock times.
func (b *ConnectBuilder) Build(ev *bpf.Event, start, end, observed time.Time, src *Source) *Encoder {
	sev := log.SeverityWarn
	if ev.Outcome == bpf.Established {
		sev = log.SeverityInfo
	}
	duration := end.Sub(start)
	b.body = b.appendBody(b.body[:0], ev, duration)
	e := &b.enc
	e.Reset(trail.EventConnect, start, observed, sev, b.body, src.Resource)

	e.String(trail.KeyNetworkTransport, "tcp")
	if ev.Peer.Addr().Is4() {
		e.String(trail.KeyNetworkType, "ipv4")
	} else {
		e.String(trail.KeyNetworkType, "ipv6")
	}
	b.addr = ev.Local.Addr().AppendTo(b.addr[:0])
	e.StringBytes(trail.KeyLocalAddress, b.addr)
	e.Int(trail.KeyLocalPort, int64(ev.Local.Port()))
	b.addr = ev.Peer.Addr().AppendTo(b.addr[:0])
	e.StringBytes(trail.KeyPeerAddress, b.addr)
	e.Int(trail.KeyPeerPort, int64(ev.Peer.Port()))
	if src.ServerName != "" {
		e.String(trail.KeyServerAddress, src.ServerName)
	} else {
		e.StringBytes(trail.KeyServerAddress, b.addr)
	}
	e.Int(trail.KeyServerPort, int64(ev.Peer.Port()))
	e.String(trail.KeyOutcome, ev.Outcome.String())
	if ev.Outcome != bpf.Established {
		e.String(trail.KeyErrorType, errorType(ev))
	}
	e.Float(trail.KeyConnectDuration, duration.Seconds())
	if ev.IdentityLost {
		e.Bool(trail.KeyIdentityLost, true)
	} else {
		e.Int(trail.KeyProcessPID, int64(ev.PID))
		e.Int(trail.KeyProcessParentPID, int64(ev.PPID))
		e.Int(trail.KeyThreadID, int64(ev.TID))
		b.comm = appendPrintable(b.comm[:0], ev.Comm())
		e.StringBytes(trail.KeyProcessExecName, b.comm)
		if src.ExecutablePath != "" {
			e.String(trail.KeyProcessExecPath, src.ExecutablePath)
		}
		e.Int(trail.KeyProcessUserID, int64(ev.UID))
		e.Int(trail.KeyProcessGroupID, int64(ev.GID))
		e.Int(trail.KeyCgroupID, int64(ev.CgroupID))
		e.Int(trail.KeyMntNS, int64(ev.MntNS))
	}
	if src.ContainerID != "" {
		e.String(trail.KeyContainerID, src.ContainerID)
	}
	e.Int(trail.KeyNetNS, int64(ev.NetNS))
	e.Append(src.Attrs...)
	return e.Finish()
}

// errorType is the errno's name, or the outcome when the kernel gave none
// (an application that closes its socket mid-handshake leaves no error).
func errorType(ev *bpf.Event) string {
	if ev.Errno == 0 {
		return ev.Outcome.String()
	}
	if name := unix.ErrnoName(ev.Errno); name != "" {
		return name
	}
	return "errno " + strconv.Itoa(int(ev.Errno))
}

// appendBody writes e.g. "curl (pid 4242) -> 127.0.0.1:8080 established in 0.21 ms".
func (b *ConnectBuilder) appendBody(dst []byte, ev *bpf.Event, d time.Duration) []byte {
	if ev.IdentityLost {
		dst = append(dst, "unknown process"...)
	} else {
		dst = appendPrintable(dst, ev.Comm())
		dst = append(dst, " (pid "...)
		dst = strconv.AppendUint(dst, uint64(ev.PID), 10)
		dst = append(dst, ')')
	}
	dst = append(dst, " -> "...)
	dst = ev.Peer.AppendTo(dst)
	dst = append(dst, ' ')
	dst = append(dst, ev.Outcome.String()...)
	if ev.Outcome != bpf.Established && ev.Errno != 0 {
		dst = append(dst, " ("...)
		dst = append(dst, unix.ErrnoName(ev.Errno)...)
		dst = append(dst, ')')
	}
	if ev.Outcome == bpf.Established {
		dst = append(dst, " in "...)
	} else {
		dst = append(dst, " after "...)
	}
	dst = strconv.AppendFloat(dst, float64(d.Microseconds())/1000, 'f', 2, 64)
	return append(dst, " ms"...)
}

// appendPrintable copies a process name, which is any bytes a process chose.
// OTLP strings must be valid UTF-8 (an invalid one fails the whole export), and
// control characters would garble a log line: both become U+FFFD.
func appendPrintable(dst, s []byte) []byte {
	for len(s) > 0 {
		r, size := utf8.DecodeRune(s)
		if r == utf8.RuneError && size <= 1 || r < 0x20 || r == 0x7f {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, s[:size]...)
		}
		s = s[size:]
	}
	return dst
}
