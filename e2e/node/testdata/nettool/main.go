// Command nettool is the test pod's client and the outside hosts' server in
// e2e/node (Debian's busybox wget segfaults on this machine kind):
//
//	nettool serve ADDR                 answer HTTP GETs on ADDR
//	nettool get ROUNDS URL...          GET each URL ROUNDS times, a second
//	                                   apart, print one ATTEMPT line each,
//	                                   then wait for SIGTERM
//	nettool fetch URL...               GET each URL once, print one ATTEMPT
//	                                   line each to the container's log
//	                                   (the stdout of its pid 1), and exit:
//	                                   run in a container beside `get`
//	                                   (exec output can be cut short when
//	                                   the process exits)
//	nettool post URL TOKENFILE BODY    POST BODY (OTLP JSON) to URL with the
//	                                   bearer token in TOKENFILE ("-" for
//	                                   none), print one POSTED line, then
//	                                   wait for SIGTERM; an https URL is not
//	                                   verified (a forger does not care)
package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: nettool serve ADDR | nettool get ROUNDS URL... | nettool fetch URL... | nettool post URL TOKENFILE BODY")
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
				fmt.Print(get(u))
			}
			time.Sleep(time.Second)
		}
		fmt.Println("DONE")
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
	case "fetch":
		log, err := os.OpenFile("/proc/1/fd/1", os.O_WRONLY, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for _, u := range os.Args[2:] {
			fmt.Fprint(log, get(u))
		}
		log.Close()
	case "post":
		if len(os.Args) != 5 {
			fmt.Fprintln(os.Stderr, "usage: nettool post URL TOKENFILE BODY")
			os.Exit(2)
		}
		fmt.Print(post(os.Args[2], os.Args[3], os.Args[4]))
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
	default:
		os.Exit(2)
	}
}

// get returns "ATTEMPT url local=ADDR result=...\n" with the local address
// of the connection, which the test looks up in the trail.
func get(u string) string {
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
	return fmt.Sprintf("ATTEMPT %s local=%s result=%q\n", u, local, result)
}

// post returns "POSTED url status=... answer=...\n".
func post(u, tokenFile, body string) string {
	line := func(status, answer string) string {
		return fmt.Sprintf("POSTED %s status=%q answer=%q\n", u, status, answer)
	}
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		return line("error", err.Error())
	}
	req.Header.Set("Content-Type", "application/json")
	if tokenFile != "-" {
		token, err := os.ReadFile(tokenFile)
		if err != nil {
			return line("error", err.Error())
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	resp, err := client.Do(req)
	if err != nil {
		return line("error", err.Error())
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return line(resp.Status, string(answer))
}
