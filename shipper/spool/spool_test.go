package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// payloadFor is record i's payload: 20..299 bytes, starting with its index.
func payloadFor(i int) []byte {
	n := 20 + (i*37)%280
	b := make([]byte, n)
	copy(b, fmt.Sprintf("record-%07d|", i))
	for j := 15; j < n; j++ {
		b[j] = byte('a' + (i+j)%26)
	}
	return b
}

// indexOf checks that p is a payload made by payloadFor and returns its index.
func indexOf(t testing.TB, p []byte) int {
	t.Helper()
	if len(p) < 15 {
		t.Fatalf("short payload %q", p)
	}
	i, err := strconv.Atoi(string(p[7:14]))
	if err != nil {
		t.Fatalf("payload %q: %v", p[:15], err)
	}
	if !bytes.Equal(p, payloadFor(i)) {
		t.Fatalf("payload of record %d is damaged: %q", i, p)
	}
	return i
}

func openT(t testing.TB, dir string, opts Options) (*Spool, Recovery) {
	t.Helper()
	s, rec, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s, rec
}

func appendN(t testing.TB, s *Spool, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := s.Append(payloadFor(i)); err != nil {
			t.Fatalf("Append(%d): %v", i, err)
		}
	}
}

// collect reads and acknowledges records, batchSize at a time, until none
// arrives for a while, and returns their indexes.
func collect(t testing.TB, s *Spool, batchSize int) []int {
	t.Helper()
	var got []int
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		b, err := s.Next(ctx, batchSize, 0)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return got
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if len(b.Records) == 0 || len(b.Records) > batchSize {
			t.Fatalf("Next returned %d records, limit %d", len(b.Records), batchSize)
		}
		for _, p := range b.Records {
			got = append(got, indexOf(t, p))
		}
		if err := s.Ack(b); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	}
}

func seq(from, to int) []int {
	var r []int
	for i := from; i < to; i++ {
		r = append(r, i)
	}
	return r
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func wantIndexes(t testing.TB, got, want []int) {
	t.Helper()
	if !equalInts(got, want) {
		t.Fatalf("got %d records %v, want %d records %v", len(got), abbrev(got), len(want), abbrev(want))
	}
}

func abbrev(a []int) string {
	if len(a) <= 12 {
		return fmt.Sprint(a)
	}
	return fmt.Sprintf("%v…%v", a[:6], a[len(a)-6:])
}

func wantRecovery(t testing.TB, got Recovery, records int, corrupt int64, problems int) {
	t.Helper()
	if got.Records != records || got.CorruptBytes != corrupt || len(got.Problems) != problems {
		t.Fatalf("Recovery = {Records:%d CorruptBytes:%d Problems:%q}, want %d records, %d corrupt bytes, %d problems",
			got.Records, got.CorruptBytes, got.Problems, records, corrupt, problems)
	}
}

// segFiles lists the live segment files in dir with their sizes.
func segFiles(t testing.TB, dir string) map[uint64]int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[uint64]int64{}
	for _, e := range entries {
		if seq, live, ok := parseSegName(e.Name()); ok && live {
			fi, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			m[seq] = fi.Size()
		}
	}
	return m
}

// checkAccounting compares Stats with the files on disk.
func checkAccounting(t testing.TB, s *Spool, dir string) {
	t.Helper()
	files := segFiles(t, dir)
	var total int64
	for _, n := range files {
		total += n
	}
	st := s.Stats()
	if st.Bytes != total || st.Segments != len(files) {
		t.Fatalf("Stats = %+v, but disk has %d segments, %d bytes", st, len(files), total)
	}
}

// crash abandons s the way a dying process would: nothing is fsynced or
// persisted, file descriptors are closed (the kernel would), the lock is
// released. What was written stays in the page cache.
func crash(s *Spool) {
	s.mu.Lock()
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	close(s.stopSync)
	s.syncWG.Wait()
	s.mu.Lock()
	for _, f := range s.unsynced {
		f.Close()
	}
	s.wf.Close()
	s.mu.Unlock()
	s.rmu.Lock()
	if s.rf != nil {
		s.rf.Close()
	}
	s.rmu.Unlock()
	s.lock.Close()
}

func TestRoundTripAcrossSegments(t *testing.T) {
	for _, interval := range []time.Duration{0, 5 * time.Millisecond} {
		t.Run(fmt.Sprint("fsync=", interval), func(t *testing.T) {
			dir := t.TempDir()
			s, rec := openT(t, dir, Options{MaxBytes: 1 << 20, SegmentBytes: 4096, FsyncInterval: interval})
			wantRecovery(t, rec, 0, 0, 0)
			appendN(t, s, 0, 500)
			st := s.Stats()
			if st.Records != 500 || st.Segments < 20 {
				t.Fatalf("after 500 appends: %+v", st)
			}
			checkAccounting(t, s, dir)
			for _, sz := range segFiles(t, dir) {
				if sz > 4096 {
					t.Fatalf("segment of %d bytes exceeds SegmentBytes", sz)
				}
			}

			wantIndexes(t, collect(t, s, 37), seq(0, 500))
			if st := s.Stats(); st.Records != 0 || st.Segments != 1 {
				t.Fatalf("after acknowledging everything: %+v", st)
			}
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			checkAccounting(t, s, dir)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s, rec = openT(t, dir, Options{MaxBytes: 1 << 20, SegmentBytes: 4096, FsyncInterval: interval})
			wantRecovery(t, rec, 0, 0, 0)
			appendN(t, s, 500, 510)
			wantIndexes(t, collect(t, s, 1000), seq(500, 510))
		})
	}
}

func TestConcurrentWriterAndReader(t *testing.T) {
	dir := t.TempDir()
	s, _ := openT(t, dir, Options{MaxBytes: 256 << 10, SegmentBytes: 8 << 10, FsyncInterval: 2 * time.Millisecond})
	const n = 20000
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			for {
				err := s.Append(payloadFor(i))
				if err == nil {
					break
				}
				if !errors.Is(err, ErrFull) {
					errc <- err
					return
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
		errc <- nil
	}()
	next := 0
	for next < n {
		b, err := s.Next(context.Background(), 100, 8<<10)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range b.Records {
			if i := indexOf(t, p); i != next {
				t.Fatalf("got record %d, want %d", i, next)
			}
			next++
		}
		if err := s.Ack(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Records != 0 || st.Bytes > 8<<10 {
		t.Fatalf("after draining: %+v", st)
	}
}

func TestReopenReplaysOnlyUnacked(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 2048, FsyncInterval: time.Hour}
	s, _ := openT(t, dir, opts)
	appendN(t, s, 0, 100)
	b, err := s.Next(context.Background(), 40, 0)
	if err != nil || len(b.Records) != 40 {
		t.Fatalf("Next: %d records, %v", len(b.Records), err)
	}
	if err := s.Ack(b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(context.Background(), 10, 0); err != nil { // read, not acknowledged
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, rec := openT(t, dir, opts)
	wantRecovery(t, rec, 60, 0, 0)
	if st := s.Stats(); st.Records != 60 {
		t.Fatalf("Stats.Records = %d, want 60", st.Records)
	}
	checkAccounting(t, s, dir)
	wantIndexes(t, collect(t, s, 7), seq(40, 100))
}

func TestNextRereadsUntilAck(t *testing.T) {
	dir := t.TempDir()
	s, _ := openT(t, dir, Options{FsyncInterval: time.Hour})
	appendN(t, s, 0, 20)
	ctx := context.Background()

	indexes := func(b Batch) []int {
		var r []int
		for _, p := range b.Records {
			r = append(r, indexOf(t, p))
		}
		return r
	}
	b1, err := s.Next(ctx, 5, 0)
	if err != nil {
		t.Fatal(err)
	}
	wantIndexes(t, indexes(b1), seq(0, 5))
	b2, err := s.Next(ctx, 5, 0) // not acknowledged: the same records again
	if err != nil {
		t.Fatal(err)
	}
	wantIndexes(t, indexes(b2), seq(0, 5))
	b3, err := s.Next(ctx, 8, 0)
	if err != nil {
		t.Fatal(err)
	}
	wantIndexes(t, indexes(b3), seq(0, 8))
	if err := s.Ack(b3); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(b3); err != nil { // twice: no-op
		t.Fatalf("second Ack: %v", err)
	}
	if err := s.Ack(b1); err != nil { // covered by b3: no-op
		t.Fatalf("Ack of covered batch: %v", err)
	}
	if err := s.Ack(Batch{}); err != nil {
		t.Fatalf("Ack of zero Batch: %v", err)
	}

	// Payloads 8, 9, 10 are 36, 73 and 110 bytes long.
	b4, err := s.Next(ctx, 100, 180)
	if err != nil {
		t.Fatal(err)
	}
	wantIndexes(t, indexes(b4), seq(8, 10))
	b5, err := s.Next(ctx, 100, 1) // one record even if larger than maxBytes
	if err != nil {
		t.Fatal(err)
	}
	wantIndexes(t, indexes(b5), seq(8, 9))
	if err := s.Ack(b5); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(b4); !errors.Is(err, ErrStaleBatch) { // starts before the cursor, ends after it
		t.Fatalf("Ack of a batch not starting at the cursor: %v, want ErrStaleBatch", err)
	}
	b6, err := s.Next(ctx, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	wantIndexes(t, indexes(b6), seq(9, 20))

	other, _ := openT(t, t.TempDir(), Options{})
	if err := other.Append([]byte("x")); err != nil {
		t.Fatal(err)
	}
	ob, err := other.Next(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ob); !errors.Is(err, ErrStaleBatch) {
		t.Fatalf("Ack of another spool's batch: %v, want ErrStaleBatch", err)
	}
}

func TestCrashLosesNothingAppended(t *testing.T) {
	for _, syncBeforeCrash := range []bool{false, true} {
		t.Run(fmt.Sprint("sync=", syncBeforeCrash), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{SegmentBytes: 4096, FsyncInterval: time.Hour} // the group commit never runs
			s, _ := openT(t, dir, opts)
			appendN(t, s, 0, 300)
			b, err := s.Next(context.Background(), 50, 0)
			if err != nil || len(b.Records) != 50 {
				t.Fatalf("Next: %d, %v", len(b.Records), err)
			}
			if err := s.Ack(b); err != nil {
				t.Fatal(err)
			}
			if syncBeforeCrash {
				if err := s.Sync(); err != nil {
					t.Fatal(err)
				}
			}
			appendN(t, s, 300, 400)
			crash(s)

			s2, rec := openT(t, dir, opts)
			got := collect(t, s2, 64)
			if syncBeforeCrash {
				wantRecovery(t, rec, 350, 0, 0)
				wantIndexes(t, got, seq(50, 400))
				return
			}
			// The cursor was not persisted: some acknowledged records come
			// again (their fully acknowledged segments were deleted), none
			// is missing.
			if len(got) == 0 || got[0] > 50 {
				t.Fatalf("replay starts at %v, after the acknowledged prefix", abbrev(got))
			}
			wantIndexes(t, got, seq(got[0], 400))
			wantRecovery(t, rec, len(got), 0, 0)
		})
	}
}

func TestFullAndAckFreesSpace(t *testing.T) {
	dir := t.TempDir()
	s, _ := openT(t, dir, Options{MaxBytes: 16 << 10, FsyncInterval: 0}) // segments of 2 KiB
	payload := func(i int) []byte { p := payloadFor(i); return append(p, make([]byte, 300-len(p))...) }
	n := 0
	for ; ; n++ {
		err := s.Append(payload(n))
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.Bytes > 16<<10 || st.Bytes <= 16<<10-328 {
		t.Fatalf("full at %+v, want close to but not over MaxBytes", st)
	}
	checkAccounting(t, s, dir)
	if err := s.Append(payload(n)); !errors.Is(err, ErrFull) {
		t.Fatalf("Append when full: %v", err)
	}
	// 6 frames of 312 bytes fill a 2 KiB segment; acknowledging them
	// deletes it.
	b, err := s.Next(context.Background(), 6, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(b); err != nil {
		t.Fatal(err)
	}
	if s.Stats().Bytes >= st.Bytes {
		t.Fatalf("Ack freed nothing: %+v", s.Stats())
	}
	if err := s.Append(payload(n)); err != nil {
		t.Fatalf("Append after Ack: %v", err)
	}
	checkAccounting(t, s, dir)
	var got []int
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		b, err := s.Next(ctx, 10, 0)
		cancel()
		if err != nil {
			break
		}
		for _, p := range b.Records {
			got = append(got, indexOf(t, p[:bytes.IndexByte(p, 0)]))
		}
		s.Ack(b)
	}
	wantIndexes(t, got, seq(6, n+1))
}

func TestTooLarge(t *testing.T) {
	s, _ := openT(t, t.TempDir(), Options{MaxBytes: 64 << 10, SegmentBytes: 4096})
	if err := s.Append(make([]byte, 4096-28+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Append of an oversized payload: %v", err)
	}
	if err := s.Append(make([]byte, 4096-28)); err != nil {
		t.Fatalf("Append of the largest payload: %v", err)
	}
	if err := s.Append(nil); err != nil {
		t.Fatalf("Append of an empty payload: %v", err)
	}
	b, err := s.Next(context.Background(), 10, 0)
	if err != nil || len(b.Records) != 2 || len(b.Records[0]) != 4096-28 || len(b.Records[1]) != 0 {
		t.Fatalf("Next: %d records, %v", len(b.Records), err)
	}
}

func TestCloseAndLock(t *testing.T) {
	dir := t.TempDir()
	s, _, err := Open(dir, Options{FsyncInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(dir, Options{}); err == nil {
		t.Fatal("second Open of a directory in use succeeded")
	}
	errc := make(chan error)
	go func() {
		_, err := s.Next(context.Background(), 1, 0)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked Next after Close: %v", err)
	}
	if err := s.Append([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := s.Sync(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close: %v", err)
	}
	if err := s.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	s2, _ := openT(t, dir, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s2.Next(ctx, 1, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on an empty spool: %v", err)
	}
}

func TestOptions(t *testing.T) {
	for _, o := range []Options{{MaxBytes: -1}, {MaxBytes: 1000}, {FsyncInterval: -1}, {SegmentBytes: -5}} {
		if _, _, err := Open(t.TempDir(), o); err == nil {
			t.Errorf("Open with %+v succeeded", o)
		}
	}
	o, err := Options{MaxBytes: 1 << 20}.normalize()
	if err != nil || o.SegmentBytes != 128<<10 {
		t.Fatalf("SegmentBytes not clamped to MaxBytes/8: %+v %v", o, err)
	}
}

func TestLeftoverFiles(t *testing.T) {
	dir := t.TempDir()
	s, _ := openT(t, dir, Options{})
	appendN(t, s, 0, 3)
	s.Close()
	for _, name := range []string{cursorTmpName, segName(1) + tmpSuffix} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("half-written"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "unrelated.txt"), []byte("x"), 0o600)
	s, rec := openT(t, dir, Options{})
	wantRecovery(t, rec, 3, 0, 0)
	for _, name := range []string{cursorTmpName, segName(1) + tmpSuffix} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s not removed: %v", name, err)
		}
	}
	wantIndexes(t, collect(t, s, 10), seq(0, 3))
}

func TestLargeRecords(t *testing.T) {
	dir := t.TempDir()
	sizes := []int{100, 300 << 10, 50, 70 << 10, 70 << 10, 1 << 20, 10}
	payload := func(i int) []byte {
		p := garbage(sizes[i], int64(i))
		return p
	}
	s, _ := openT(t, dir, Options{FsyncInterval: time.Hour})
	for i := range sizes {
		if err := s.Append(payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(b Batch, first int) int {
		for k, p := range b.Records {
			if !bytes.Equal(p, payload(first+k)) {
				t.Fatalf("record %d damaged", first+k)
			}
		}
		return first + len(b.Records)
	}
	// Small batches: a 64 KiB read buffer that must grow for big records.
	for i := 0; i < 3; {
		b, err := s.Next(context.Background(), 100, 1000)
		if err != nil {
			t.Fatal(err)
		}
		i = check(b, i)
		if err := s.Ack(b); err != nil {
			t.Fatal(err)
		}
	}
	// One batch with everything left.
	b, err := s.Next(context.Background(), 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n := check(b, 3); n != len(sizes) {
		t.Fatalf("one batch returned records 3..%d, want up to %d", n, len(sizes))
	}
}
