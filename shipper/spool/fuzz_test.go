package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// segmentImage builds a segment file holding payloads 0..n-1.
func segmentImage(n int) []byte {
	b := make([]byte, segHeaderSize)
	putSegHeader(b)
	for i := 0; i < n; i++ {
		p := payloadFor(i)
		h := make([]byte, frameHeaderSize)
		putFrameHeader(h, p)
		b = append(append(b, h...), p...)
	}
	return b
}

type fuzzSeed struct {
	name string
	data []byte
	from int64
}

func fuzzSeeds() []fuzzSeed {
	valid := segmentImage(6)
	cut := func(b []byte, n int) []byte { return append([]byte(nil), b[:n]...) }
	with := func(at int, patch []byte) []byte {
		b := append([]byte(nil), valid...)
		copy(b[at:], patch)
		return b
	}
	v2 := cut(valid, len(valid))
	le.PutUint32(v2[8:], 2)
	le.PutUint32(v2[12:], checksum(v2[:12]))
	frame1 := segHeaderSize + int(frameSize(0))
	return []fuzzSeed{
		{"empty", nil, 0},
		{"header-only", cut(valid, segHeaderSize), 0},
		{"valid", valid, 0},
		{"valid-cursor", valid, int64(frame1)},
		{"cursor-mid-frame", valid, int64(frame1 + 5)},
		{"cursor-past-end", valid, int64(len(valid) + 10)},
		{"torn-tail", cut(valid, len(valid)-7), 0},
		{"torn-header", cut(valid, 9), 0},
		{"garbage-middle", with(frame1+20, []byte("\xde\xad\xbe\xef garbage")), int64(frame1)},
		{"zeroes-middle", with(frame1, make([]byte, 100)), 0},
		{"zero-header", with(0, make([]byte, segHeaderSize)), segHeaderSize},
		{"version-2", v2, 0},
		{"huge-length", with(segHeaderSize, []byte{0xff, 0xff, 0xff, 0x7f}), 0},
	}
}

// FuzzDecodeSegment feeds arbitrary bytes and cursor offsets to the
// recovery decoder. It must not panic, every record it returns must have a
// valid CRC, and the frames and damage it reports must account for every
// byte. Repairing the image as recovery would must give a clean segment
// with the same unacknowledged records.
func FuzzDecodeSegment(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.data, s.from)
	}
	f.Fuzz(func(t *testing.T, data []byte, from int64) {
		p := planSegment(data, from)
		if p.unsupported {
			if len(p.frames) != 0 || p.lostBytes != int64(len(data)-segHeaderSize) {
				t.Fatalf("unsupported segment: %+v", p)
			}
			return
		}
		pos := int64(0)
		if p.headerOK {
			pos = segHeaderSize
		}
		framed := int64(0)
		for _, fr := range p.frames {
			if fr.off < pos || fr.end > int64(len(data)) || fr.end-fr.off < frameHeaderSize {
				t.Fatalf("frame %+v out of order or bounds (previous end %d, size %d)", fr, pos, len(data))
			}
			frame := data[fr.off:fr.end]
			payload := frame[frameHeaderSize:]
			if int(le.Uint32(frame)) != len(payload) || checksum(payload) != le.Uint32(frame[4:]) || checksum(frame[:8]) != le.Uint32(frame[8:]) {
				t.Fatalf("frame at %d has a bad length or CRC", fr.off)
			}
			framed += fr.end - fr.off
			pos = fr.end
		}
		hdr := int64(0)
		if p.headerOK {
			hdr = segHeaderSize
		}
		if hdr+framed+p.damagedBytes != int64(len(data)) {
			t.Fatalf("header %d + frames %d + damage %d != size %d", hdr, framed, p.damagedBytes, len(data))
		}
		if p.records > len(p.frames) || p.lostBytes < 0 || p.lostBytes > p.damagedBytes || p.start < 0 || p.start > int64(len(data)) {
			t.Fatalf("inconsistent plan %+v", p)
		}
		if p.cursorBad && p.start != 0 {
			t.Fatalf("bad cursor but start %d", p.start)
		}

		var repaired []byte
		switch {
		case p.damagedBytes == 0:
			return
		case p.tailOnly:
			if p.validEnd+p.damagedBytes != int64(len(data)) {
				t.Fatalf("tail-only damage of %d bytes does not end the file (valid end %d, size %d)", p.damagedBytes, p.validEnd, len(data))
			}
			repaired = data[:p.validEnd]
		default:
			repaired = repairedImage(data, p)
		}
		q := planSegment(repaired, 0)
		wantRecords := p.records
		if p.tailOnly {
			wantRecords = len(p.frames)
		}
		if !q.headerOK || q.damagedBytes != 0 || q.records != wantRecords {
			t.Fatalf("repaired image not clean: %d records, %d damaged bytes; want %d records", q.records, q.damagedBytes, wantRecords)
		}
	})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzDecodeSegment from
// fuzzSeeds when SPOOL_WRITE_FUZZ_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("SPOOL_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set SPOOL_WRITE_FUZZ_SEEDS=1 to regenerate the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeSegment")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range fuzzSeeds() {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\nint64(%d)\n", strconv.Quote(string(s.data)), s.from)
		if err := os.WriteFile(filepath.Join(dir, "seed-"+s.name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
