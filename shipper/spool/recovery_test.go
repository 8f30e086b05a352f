package spool

import (
	"context"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fillSegment writes records 0..n-1 into segment 1 of a new spool in dir,
// acknowledges the first acked of them, and closes it.
func fillSegment(t *testing.T, dir string, n, acked int) {
	t.Helper()
	s, _, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 0, n)
	if acked > 0 {
		b, err := s.Next(context.Background(), acked, 0)
		if err != nil || len(b.Records) != acked {
			t.Fatalf("Next: %d records, %v", len(b.Records), err)
		}
		if err := s.Ack(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// off is the offset of record i's frame in segment 1 as written by fillSegment.
func off(i int) int64 {
	o := int64(segHeaderSize)
	for j := 0; j < i; j++ {
		o += frameSize(j)
	}
	return o
}

func frameSize(i int) int64 { return int64(frameHeaderSize + len(payloadFor(i))) }

func seg1(dir string) string { return filepath.Join(dir, segName(1)) }

func overwrite(t *testing.T, path string, at int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

func garbage(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// reopenClean checks that a second Open finds no further problems: the
// first one repaired the files.
func reopenClean(t *testing.T, dir string, records int) {
	t.Helper()
	s, rec, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantRecovery(t, rec, records, 0, 0)
}

func TestRecoverTornTail(t *testing.T) {
	for _, cut := range []int64{5, frameSize(9) - 1, frameSize(9) - 5} {
		dir := t.TempDir()
		fillSegment(t, dir, 10, 0)
		if err := os.Truncate(seg1(dir), off(9)+cut); err != nil {
			t.Fatal(err)
		}
		s, rec := openT(t, dir, Options{})
		wantRecovery(t, rec, 9, cut, 1)
		if !strings.Contains(rec.Problems[0], "torn tail") {
			t.Errorf("problem %q", rec.Problems[0])
		}
		if fi, _ := os.Stat(seg1(dir)); fi.Size() != off(9) {
			t.Fatalf("segment not truncated to the last record: %d bytes", fi.Size())
		}
		s.Close()
		reopenClean(t, dir, 9)
		s, _ = openT(t, dir, Options{})
		wantIndexes(t, collect(t, s, 4), seq(0, 9))
	}
}

func TestRecoverGarbageInMiddle(t *testing.T) {
	dir := t.TempDir()
	fillSegment(t, dir, 10, 0)
	overwrite(t, seg1(dir), off(4)+frameHeaderSize+3, garbage(20, 1)) // inside record 4's payload
	s, rec := openT(t, dir, Options{})
	wantRecovery(t, rec, 9, frameSize(4), 1)
	want := append(seq(0, 4), seq(5, 10)...)
	s.Close()
	reopenClean(t, dir, 9)
	s, _ = openT(t, dir, Options{})
	wantIndexes(t, collect(t, s, 3), want)
}

func TestRecoverInsertedGarbage(t *testing.T) {
	dir := t.TempDir()
	fillSegment(t, dir, 10, 0)
	data, err := os.ReadFile(seg1(dir))
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	b = append(b, data[:off(3)]...)
	b = append(b, garbage(100, 2)...)
	b = append(b, data[off(3):]...)
	if err := os.WriteFile(seg1(dir), b, 0o640); err != nil {
		t.Fatal(err)
	}
	s, rec := openT(t, dir, Options{})
	wantRecovery(t, rec, 10, 100, 1)
	wantIndexes(t, collect(t, s, 100), seq(0, 10))
}

func TestRecoverZeroFilledRegion(t *testing.T) {
	dir := t.TempDir()
	fillSegment(t, dir, 10, 0)
	// From inside record 3 to inside record 6: records 3..6 are lost.
	overwrite(t, seg1(dir), off(3)+7, make([]byte, off(6)+2-(off(3)+7)))
	s, rec := openT(t, dir, Options{})
	wantRecovery(t, rec, 6, off(7)-off(3), 1)
	wantIndexes(t, collect(t, s, 100), append(seq(0, 3), seq(7, 10)...))
}

func TestRecoverZeroFilledTail(t *testing.T) {
	// A machine crash can leave a file's size extended over blocks never
	// written: zeroes at the end.
	dir := t.TempDir()
	fillSegment(t, dir, 10, 0)
	f, _ := os.OpenFile(seg1(dir), os.O_WRONLY|os.O_APPEND, 0)
	f.Write(make([]byte, 4096))
	f.Close()
	s, rec := openT(t, dir, Options{})
	wantRecovery(t, rec, 10, 4096, 1)
	wantIndexes(t, collect(t, s, 100), seq(0, 10))
}

func TestRecoverDamagedHeader(t *testing.T) {
	dir := t.TempDir()
	fillSegment(t, dir, 10, 0)
	overwrite(t, seg1(dir), 0, make([]byte, segHeaderSize))
	s, rec := openT(t, dir, Options{})
	wantRecovery(t, rec, 10, 0, 1) // no record was lost
	s.Close()
	reopenClean(t, dir, 10)
	s, _ = openT(t, dir, Options{})
	wantIndexes(t, collect(t, s, 100), seq(0, 10))
}

func TestRecoverNewerVersionSegment(t *testing.T) {
	dir := t.TempDir()
	fillSegment(t, dir, 10, 0)
	// A segment written by a future build: valid header of version 2.
	h := make([]byte, segHeaderSize)
	copy(h, segMagic[:])
	le.PutUint32(h[8:], 2)
	le.PutUint32(h[12:], checksum(h[:12]))
	future := append(h, garbage(500, 3)...)
	if err := os.WriteFile(filepath.Join(dir, segName(5)), future, 0o640); err != nil {
		t.Fatal(err)
	}
	s, rec := openT(t, dir, Options{})
	wantRecovery(t, rec, 10, int64(len(future)-segHeaderSize), 1)
	if !strings.Contains(rec.Problems[0], "version 2") {
		t.Errorf("problem %q", rec.Problems[0])
	}
	kept, err := os.ReadFile(filepath.Join(dir, segName(5)+asideSuffix))
	if err != nil || string(kept) != string(future) {
		t.Fatalf("newer-version segment not moved aside intact: %v", err)
	}
	if _, ok := segFiles(t, dir)[6]; !ok {
		t.Fatalf("new active segment is not numbered after the set-aside one: %v", segFiles(t, dir))
	}
	wantIndexes(t, collect(t, s, 100), seq(0, 10))
	s.Close()
	reopenClean(t, dir, 0)
}

func TestRecoverCorruptCursor(t *testing.T) {
	for name, damage := range map[string]func(path string){
		"flipped byte": func(p string) { overwrite(t, p, 14, []byte{0xff}) },
		"empty":        func(p string) { os.Truncate(p, 0) },
		"garbage":      func(p string) { os.WriteFile(p, garbage(1000, 4), 0o640) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			fillSegment(t, dir, 10, 4)
			damage(filepath.Join(dir, cursorName))
			s, rec := openT(t, dir, Options{})
			wantRecovery(t, rec, 10, 0, 1) // replayed from the oldest segment
			wantIndexes(t, collect(t, s, 100), seq(0, 10))
		})
	}
}

func TestRecoverCursorPositions(t *testing.T) {
	t.Run("valid", func(t *testing.T) {
		dir := t.TempDir()
		fillSegment(t, dir, 10, 4)
		s, rec := openT(t, dir, Options{})
		wantRecovery(t, rec, 6, 0, 0)
		wantIndexes(t, collect(t, s, 100), seq(4, 10))
	})
	t.Run("not a record boundary", func(t *testing.T) {
		dir := t.TempDir()
		fillSegment(t, dir, 10, 4)
		if err := writeCursor(dir, position{seq: 1, off: off(4) + 3}); err != nil {
			t.Fatal(err)
		}
		s, rec := openT(t, dir, Options{})
		wantRecovery(t, rec, 10, 0, 1) // the segment is replayed from its start
		wantIndexes(t, collect(t, s, 100), seq(0, 10))
	})
	t.Run("inside damage", func(t *testing.T) {
		dir := t.TempDir()
		fillSegment(t, dir, 10, 4)
		// Records 3 (acknowledged), 4 and 5 are destroyed; the cursor is at 4.
		overwrite(t, seg1(dir), off(3), make([]byte, off(5)+3-off(3)))
		s, rec := openT(t, dir, Options{})
		wantRecovery(t, rec, 4, off(6)-off(4), 1)
		wantIndexes(t, collect(t, s, 100), seq(6, 10))
		s.Close()
		reopenClean(t, dir, 0)
	})
	t.Run("damage only before the cursor", func(t *testing.T) {
		dir := t.TempDir()
		fillSegment(t, dir, 10, 6)
		overwrite(t, seg1(dir), off(2)+frameHeaderSize, garbage(5, 5))
		s, rec := openT(t, dir, Options{})
		wantRecovery(t, rec, 4, 0, 1)
		wantIndexes(t, collect(t, s, 100), seq(6, 10))
	})
	t.Run("past every segment", func(t *testing.T) {
		dir := t.TempDir()
		fillSegment(t, dir, 10, 4)
		if err := writeCursor(dir, position{seq: 99, off: segHeaderSize}); err != nil {
			t.Fatal(err)
		}
		s, rec := openT(t, dir, Options{})
		wantRecovery(t, rec, 10, 0, 1)
		wantIndexes(t, collect(t, s, 100), seq(0, 10))
		if _, ok := segFiles(t, dir)[100]; !ok {
			t.Fatalf("active segment not numbered after the cursor's: %v", segFiles(t, dir))
		}
	})
}

func TestRecoverAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 2048}
	s, _ := openT(t, dir, opts)
	appendN(t, s, 0, 200)
	s.Close()

	// Damage: garbage in the middle of segment 3, segment 5 entirely
	// garbage, a torn tail on the last segment, and a non-spool file with
	// a segment name. Every other record must come back.
	files := segFiles(t, dir)
	var last uint64
	for seq := range files {
		last = max(last, seq)
	}
	data3, _ := os.ReadFile(filepath.Join(dir, segName(3)))
	overwrite(t, filepath.Join(dir, segName(3)), 600, garbage(50, 6))
	data5, _ := os.ReadFile(filepath.Join(dir, segName(5)))
	os.WriteFile(filepath.Join(dir, segName(5)), garbage(len(data5), 7), 0o640)
	os.Truncate(filepath.Join(dir, segName(last)), files[last]-3)
	os.WriteFile(filepath.Join(dir, segName(last+1)), []byte("not a segment"), 0o640)

	lost := map[int]bool{}
	var lostBytes int64
	scan := func(data []byte, damaged func(o, e int64) bool) {
		d := decoder{data: data, pos: segHeaderSize}
		for {
			o, p, _, ok := d.next()
			if !ok {
				return
			}
			if damaged(int64(o), int64(d.pos)) {
				lost[indexOf(t, p)] = true
				lostBytes += int64(d.pos - o)
			}
		}
	}
	scan(data3, func(o, e int64) bool { return e > 600 && o < 650 })
	scan(data5, func(o, e int64) bool { return true })
	lastData, _ := os.ReadFile(filepath.Join(dir, segName(last)))
	d := decoder{data: lastData, pos: segHeaderSize}
	for {
		_, p, _, ok := d.next()
		if !ok {
			break
		}
		if i := indexOf(t, p); i == 199 {
			t.Fatal("record 199 survived truncation")
		}
	}
	lost[199] = true
	lostBytes += frameSize(199) - 3

	var want []int
	for i := 0; i < 200; i++ {
		if !lost[i] {
			want = append(want, i)
		}
	}
	s, rec := openT(t, dir, opts)
	wantRecovery(t, rec, len(want), lostBytes, 4)
	wantIndexes(t, collect(t, s, 33), want)
	s.Close()
	reopenClean(t, dir, 0)
}

func TestCorruptionAfterOpen(t *testing.T) {
	dir := t.TempDir()
	s, _ := openT(t, dir, Options{FsyncInterval: 0})
	appendN(t, s, 0, 10)
	// The active segment is number 1; damage record 3 under the reader.
	overwrite(t, seg1(dir), off(3)+frameHeaderSize+1, []byte("XX"))
	got := collect(t, s, 100)
	wantIndexes(t, got, seq(0, 3))
	if st := s.Stats(); st.CorruptBytes != off(10)-off(3) || st.Records != 0 {
		t.Fatalf("Stats after skipping damage: %+v", st)
	}
	appendN(t, s, 10, 12)
	wantIndexes(t, collect(t, s, 100), seq(10, 12))
}
