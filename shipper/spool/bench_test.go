package spool

import (
	"context"
	"errors"
	"testing"
	"time"
)

// BenchmarkAppendExport runs one writer appending 300-byte records and one
// exporter doing Next(1024 records) + Ack concurrently, with a 100ms group
// commit. records/s is the end-to-end rate: appended and acknowledged.
func BenchmarkAppendExport(b *testing.B) {
	s, _ := openT(b, b.TempDir(), Options{MaxBytes: 256 << 20, FsyncInterval: 100 * time.Millisecond})
	payload := make([]byte, 300)
	exported := make(chan error, 1)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	go func() {
		for n := 0; n < b.N; {
			batch, err := s.Next(context.Background(), 1024, 1<<20)
			if err != nil {
				exported <- err
				return
			}
			n += len(batch.Records)
			if err := s.Ack(batch); err != nil {
				exported <- err
				return
			}
		}
		exported <- nil
	}()
	fullWaits := 0
	for i := 0; i < b.N; i++ {
		for {
			err := s.Append(payload)
			if err == nil {
				break
			}
			if !errors.Is(err, ErrFull) {
				b.Fatal(err)
			}
			fullWaits++
			time.Sleep(50 * time.Microsecond)
		}
	}
	if err := <-exported; err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(fullWaits), "full-waits")
}

// BenchmarkAppend measures Append alone (300-byte records, 100ms group
// commit). It must not allocate.
func BenchmarkAppend(b *testing.B) {
	s, _ := openT(b, b.TempDir(), Options{MaxBytes: 8 << 30, FsyncInterval: 100 * time.Millisecond})
	payload := make([]byte, 300)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Append(payload); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
