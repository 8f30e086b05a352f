// Command dnsforger is what an unprivileged process can do to choose the
// names on its own connects, for the e2e tests: it runs its own "resolver"
// on 127.0.0.1:53 and sends its sockets answers nobody asked for, then
// connects to the address it tried to name.
//
//	dnsforger <connect-to ip:port> <resolver ip>
//
// Forgeries, each naming the connect's address:
//   - an answer to a socket that never sent a query;
//   - an answer from 127.0.0.1:53 to a socket whose query went to <resolver>;
//   - an answer to another question than the socket asked its own server.
package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func main() {
	if err := run(netip.MustParseAddrPort(os.Args[1]), netip.MustParseAddr(os.Args[2])); err != nil {
		fmt.Fprintln(os.Stderr, "dnsforger:", err)
		os.Exit(1)
	}
}

func run(target netip.AddrPort, resolver netip.Addr) error {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53})
	if err != nil {
		return fmt.Errorf("serve 127.0.0.1:53: %w", err)
	}
	defer srv.Close()
	self := srv.LocalAddr().(*net.UDPAddr).AddrPort()
	quiet, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	asker, err := net.ListenUDP("udp4", &net.UDPAddr{}) // asks the resolver and 127.0.0.1 alike
	if err != nil {
		return err
	}
	to := func(c *net.UDPConn) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), c.LocalAddr().(*net.UDPAddr).AddrPort().Port())
	}
	steps := []struct {
		from    *net.UDPConn
		to      netip.AddrPort
		msg     []byte
		receive *net.UDPConn // reads it, so that it is delivered before the connect
	}{
		{srv, to(quiet), answer(1, "api.github.com.", target.Addr()), quiet},
		{asker, netip.AddrPortFrom(resolver, 53), query(2, "b.example.com."), nil},
		{srv, to(asker), answer(2, "b.example.com.", target.Addr()), asker},
		{asker, self, query(3, "c.example.com."), srv},
		{srv, to(asker), answer(3, "www.google.com.", target.Addr()), asker},
	}
	buf := make([]byte, 1500)
	for i, s := range steps {
		if _, err := s.from.WriteToUDPAddrPort(s.msg, s.to); err != nil {
			return fmt.Errorf("step %d: send: %w", i, err)
		}
		if s.receive != nil {
			_ = s.receive.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := s.receive.Read(buf); err != nil {
				return fmt.Errorf("step %d: receive: %w", i, err)
			}
		}
	}
	c, err := net.DialTimeout("tcp", target.String(), 5*time.Second)
	if err != nil {
		return fmt.Errorf("connect %s: %w", target, err)
	}
	c.Close()
	return nil
}

func query(id uint16, name string) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	msg, _ := b.Finish()
	return msg
}

func answer(id uint16, name string, ip netip.Addr) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: true, RecursionAvailable: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	_ = b.StartAnswers()
	_ = b.AResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name), Class: dnsmessage.ClassINET, TTL: 1<<31 - 1},
		dnsmessage.AResource{A: ip.As4()})
	msg, _ := b.Finish()
	return msg
}
