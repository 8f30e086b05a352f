// Package loadgen makes loopback TCP connects at a fixed rate, or as fast as
// it can, so that benchmarks measure connaudit rather than the kernel's port
// allocator: every connect binds a source address spread over 127.0.0.0/8
// (IP_BIND_ADDRESS_NO_PORT, so the port is picked at connect time from a
// fresh 4-tuple space) and closes with RST (SO_LINGER 0), so no TIME_WAIT
// socket piles up. It serves its own listener, and is bounded both in count
// and in time.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Config says how many connects to make and how fast.
type Config struct {
	// Rate is connects per second; 0 connects as fast as the workers can.
	Rate int
	// Count bounds the connects made; Duration bounds the time. Both must be positive.
	Count    int
	Duration time.Duration
	// Workers connect concurrently; 0 means 2.
	Workers int
	// Sources is how many source addresses (127.1.0.1, 127.1.0.2, ...) the
	// connects rotate over; 0 means 1024.
	Sources int
	// Port is the listener's port on 127.0.0.1; 0 picks a free one.
	Port int
	// SampleEvery, when positive, samples every SampleEvery-th connect: it
	// connects from a source address of its own (see SampleSource) and its
	// wall time is reported in Result.Samples. The other connects are as
	// without sampling.
	SampleEvery int
}

// maxSamples is how many distinct sample sources 127.2.0.0/16 holds.
const maxSamples = 1<<16 - 2

// Validate reports a configuration that would not be bounded.
func (c Config) Validate() error {
	switch {
	case c.Rate < 0:
		return fmt.Errorf("rate %d must not be negative", c.Rate)
	case c.Count <= 0:
		return fmt.Errorf("count %d must be positive: every load is bounded", c.Count)
	case c.Duration <= 0:
		return fmt.Errorf("duration %s must be positive: every load is bounded", c.Duration)
	case c.Workers < 0 || c.Sources < 0 || c.Sources > 1<<16:
		return fmt.Errorf("workers %d and sources %d must be in range", c.Workers, c.Sources)
	case c.SampleEvery < 0 || (c.SampleEvery > 0 && c.Count/c.SampleEvery >= maxSamples):
		return fmt.Errorf("sample every %d must not be negative and give fewer than %d samples of %d connects", c.SampleEvery, maxSamples, c.Count)
	}
	return nil
}

// Result is what one load made.
type Result struct {
	Port     int           `json:"port"`     // the listener's port: every record of this load has it as peer port
	Made     int64         `json:"made"`     // connects attempted
	Failed   int64         `json:"failed"`   // of those, connects that did not succeed
	Accepted int64         `json:"accepted"` // connections the listener accepted
	Elapsed  time.Duration `json:"elapsed_ns"`
	Rate     float64       `json:"rate"`              // Made per second of Elapsed
	Samples  []Sample      `json:"samples,omitempty"` // the sampled connects that succeeded (Config.SampleEvery)
}

// Sample is one sampled connect: its source address, unique in the load,
// and the wall time just before connect() was called.
type Sample struct {
	Source    string `json:"source"`
	ConnectNs int64  `json:"connect_unix_ns"`
}

// Run listens on 127.0.0.1, makes the connects cfg asks for, and returns once
// they are made or cfg.Duration has passed (or ctx is done).
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	workers, sources := cfg.Workers, cfg.Sources
	if workers == 0 {
		workers = 2
	}
	if sources == 0 {
		sources = 1024
	}
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: cfg.Port})
	if err != nil {
		return Result{}, fmt.Errorf("listen on 127.0.0.1: %w", err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	var accepted atomic.Int64
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()

	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	dst := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	var next, failed atomic.Int64
	var samples []Sample // slot k is the connect cfg.SampleEvery*k, written by its worker only
	if cfg.SampleEvery > 0 {
		samples = make([]Sample, (cfg.Count+cfg.SampleEvery-1)/cfg.SampleEvery)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(cfg.Count) {
					return
				}
				if cfg.Rate > 0 {
					due := start.Add(time.Duration(i) * time.Second / time.Duration(cfg.Rate))
					if wait := time.Until(due); wait > 0 {
						select {
						case <-ctx.Done():
							next.Add(-1)
							return
						case <-time.After(wait):
						}
					}
				}
				src := source(int(i) % sources)
				sampled := cfg.SampleEvery > 0 && i%int64(cfg.SampleEvery) == 0
				var at time.Time
				if sampled {
					src, at = SampleSource(int(i)/cfg.SampleEvery), time.Now()
				}
				err := connect(dst, src)
				if sampled && err == nil {
					samples[int(i)/cfg.SampleEvery] = Sample{Source: net.IP(src[:]).String(), ConnectNs: at.UnixNano()}
				}
				if err != nil {
					failed.Add(1)
					if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	made := min(next.Load(), int64(cfg.Count))
	// Let the listener take what is still in its backlog before it closes.
	for deadline := time.Now().Add(time.Second); accepted.Load() < made-failed.Load() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	ln.Close()
	<-acceptDone
	res := Result{Port: port, Made: made, Failed: failed.Load(), Accepted: accepted.Load(), Elapsed: elapsed,
		Rate: float64(made) / elapsed.Seconds()}
	for _, s := range samples {
		if s.ConnectNs != 0 {
			res.Samples = append(res.Samples, s)
		}
	}
	select {
	case err := <-errs:
		return res, fmt.Errorf("out of file descriptors: %w", err)
	default:
	}
	return res, nil
}

// source is the n-th source address: 127.1.0.1 upwards.
func source(n int) [4]byte {
	n++
	return [4]byte{127, 1, byte(n >> 8), byte(n)}
}

// SampleSource is the source address of the k-th sampled connect:
// 127.2.0.1 upwards, apart from the addresses the other connects rotate over.
func SampleSource(k int) [4]byte {
	k++
	return [4]byte{127, 2, byte(k >> 8), byte(k)}
}

// connect makes one blocking connect from src to dst and closes with RST.
func connect(dst *unix.SockaddrInet4, src [4]byte) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		return fmt.Errorf("set SO_LINGER: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil {
		return fmt.Errorf("set IP_BIND_ADDRESS_NO_PORT: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src}); err != nil {
		return fmt.Errorf("bind %v: %w", src, err)
	}
	err = unix.Connect(fd, dst)
	if err == unix.EINTR {
		// The handshake goes on; wait for it as a non-blocking connect would.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		if _, err := unix.Poll(fds, 1000); err != nil && err != unix.EINTR {
			return fmt.Errorf("poll connect: %w", err)
		}
		soErr, gerr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if gerr != nil {
			return fmt.Errorf("read connect result: %w", gerr)
		}
		if soErr != 0 {
			err = unix.Errno(soErr)
		} else {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	return nil
}
