// Command loadgen makes bounded loopback connect load (see package
// bench/loadgen) and prints its result as one JSON object.
//
//	loadgen -rate 5000 -count 100000 -duration 20s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/connaudit/connaudit/bench/loadgen"
)

func main() {
	var cfg loadgen.Config
	flag.IntVar(&cfg.Rate, "rate", 0, "connects per second; 0: as fast as possible")
	flag.IntVar(&cfg.Count, "count", 10000, "connects to make, at most")
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Second, "time to run, at most")
	flag.IntVar(&cfg.Workers, "workers", 2, "concurrent connecting threads")
	flag.IntVar(&cfg.Sources, "sources", 1024, "source addresses in 127.1.0.0/16 to rotate over")
	flag.IntVar(&cfg.Port, "port", 0, "listener port on 127.0.0.1; 0: a free one")
	flag.IntVar(&cfg.SampleEvery, "sample", 0, "report the source address and connect time of every n-th connect (from 127.2.0.0/16); 0: none")
	cpu := flag.Int("cpu", -1, "pin the process to this CPU; -1: do not pin")
	flag.Parse()

	if *cpu >= 0 {
		var set unix.CPUSet
		set.Set(*cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			fmt.Fprintf(os.Stderr, "loadgen: pin to CPU %d: %v\n", *cpu, err)
			os.Exit(2)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
}
