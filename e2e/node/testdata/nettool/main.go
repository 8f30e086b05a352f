// Command nettool is the test pod's client and the outside hosts' server in
// e2e/node (Debian's busybox wget segfaults on this machine kind):
//
//	nettool serve ADDR                 answer HTTP GETs on ADDR
//	nettool get ROUNDS URL...          GET each URL ROUNDS times, a second
//	                                   apart, print one ATTEMPT line each,
//	                                   then wait for SIGTERM
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: nettool serve ADDR | nettool get ROUNDS URL...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		err := http.ListenAndServe(os.Args[2], http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello %s\n", r.RemoteAddr)
		}))
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	case "get":
		rounds, err := strconv.Atoi(os.Args[2])
		if err != nil || len(os.Args) < 4 {
			fmt.Fprintln(os.Stderr, "usage: nettool get ROUNDS URL...")
			os.Exit(2)
		}
		for i := 0; i < rounds; i++ {
			for _, u := range os.Args[3:] {
				get(u)
			}
			time.Sleep(time.Second)
		}
		fmt.Println("DONE")
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
	default:
		os.Exit(2)
	}
}

// get prints "ATTEMPT url local=ADDR result=..." with the local address of
// the connection, which the test looks up in the trail.
func get(u string) {
	local := "-"
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			if c != nil {
				local = c.LocalAddr().String()
			}
			return c, err
		},
	}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := client.Get(u)
	result := "ok"
	if err != nil {
		result = "error:" + err.Error()
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		result = resp.Status
	}
	fmt.Printf("ATTEMPT %s local=%s result=%q\n", u, local, result)
}
