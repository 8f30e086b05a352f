package capture_test

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/connaudit/connaudit/dns/capture"
	"github.com/connaudit/connaudit/internal/netnstest"
)

// BenchmarkKernelPerPacket reports the program's own run time (bpf_stats)
// per packet: for DNS answers it copies into the ring buffer; for any other
// packet a socket receives (the connect path's SYN-ACKs included) it returns
// after reading the headers.
func BenchmarkKernelPerPacket(b *testing.B) {
	for _, sport := range []int{53, 5353} {
		name := "dns"
		if sport != 53 {
			name = "other-udp"
		}
		b.Run(name, func(b *testing.B) {
			stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
			if err != nil {
				b.Fatalf("enable bpf_stats: %v", err)
			}
			defer stats.Close()
			c := load(b, 1<<24)
			h := netnstest.New(b)
			var srv, cli *net.UDPConn
			if err := h.Server.Do(func() (err error) {
				srv, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("198.51.100.1"), Port: sport})
				return err
			}); err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			if err := h.Client.Do(func() (err error) {
				cli, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("198.51.100.2")})
				return err
			}); err != nil {
				b.Fatal(err)
			}
			defer cli.Close()
			to := cli.LocalAddr().(*net.UDPAddr).AddrPort()
			answer := make([]byte, 120) // a typical A answer
			done := make(chan int)
			go func() {
				buf := make([]byte, 2048)
				got := 0
				_ = cli.SetReadDeadline(time.Now().Add(time.Minute))
				for got < b.N {
					if _, err := cli.Read(buf); err != nil {
						break
					}
					got++
				}
				done <- got
			}()
			before, err := c.Program().Stats()
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := srv.WriteToUDPAddrPort(answer, to); err != nil {
					b.Fatal(err)
				}
				if i%256 == 255 {
					time.Sleep(time.Millisecond) // stay below the veth backlog
				}
			}
			got := <-done
			b.StopTimer()
			after, err := c.Program().Stats()
			if err != nil {
				b.Fatal(err)
			}
			runs := after.RunCount - before.RunCount
			if runs < uint64(got) {
				b.Fatalf("the program ran %d times for %d packets received", runs, got)
			}
			b.ReportMetric(float64(after.Runtime-before.Runtime)/float64(runs), "kernel-ns/packet")
			// Drain, so that the next run starts empty.
			var pkt capture.Packet
			c.SetDeadline(time.Now())
			for {
				if err := c.Read(&pkt); err != nil {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						b.Fatal(err)
					}
					break
				}
			}
		})
	}
}
