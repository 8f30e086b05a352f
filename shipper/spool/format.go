package spool

import (
	"encoding/binary"
	"hash/crc32"
	"sort"
)

// On-disk format, version 1. All integers are little-endian.
//
//	segment = header frame*
//	header  = magic "cnaspseg" (8) | version uint32 (4) | crc32c(magic|version) uint32 (4)
//	frame   = length uint32 (4) | crc32c(payload) uint32 (4) | crc32c(length|payload crc) uint32 (4) | payload
//
// The frame header carries its own checksum so that a scan for the next
// valid frame after damage costs O(1) per byte offset, and so that a
// zero-filled region never decodes as a record (crc32c of zero bytes is not zero).
const (
	formatVersion   = 1
	segHeaderSize   = 16
	frameHeaderSize = 12

	// maxFramePayload bounds the length field the decoder accepts, whatever
	// SegmentBytes the writer used.
	maxFramePayload = 64 << 20
)

var (
	segMagic   = [8]byte{'c', 'n', 'a', 's', 'p', 's', 'e', 'g'}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	le         = binary.LittleEndian
)

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// putSegHeader writes a version-1 segment header into b[:segHeaderSize].
func putSegHeader(b []byte) {
	copy(b, segMagic[:])
	le.PutUint32(b[8:], formatVersion)
	le.PutUint32(b[12:], checksum(b[:12]))
}

type headerStatus int

const (
	headerOK          headerStatus = iota
	headerDamaged                  // not a valid header: treated as corrupt bytes
	headerUnsupported              // valid header of another format version
)

// parseSegHeader classifies the start of a segment file. A header whose
// magic and checksum are intact but whose version is not ours comes from
// another (newer) build and must not be decoded or modified.
func parseSegHeader(data []byte) (headerStatus, uint32) {
	if len(data) < segHeaderSize || string(data[:8]) != string(segMagic[:]) {
		return headerDamaged, 0
	}
	version := le.Uint32(data[8:])
	if le.Uint32(data[12:]) != checksum(data[:12]) {
		return headerDamaged, version
	}
	if version != formatVersion {
		return headerUnsupported, version
	}
	return headerOK, version
}

// putFrameHeader writes the frame header for payload into b[:frameHeaderSize].
func putFrameHeader(b []byte, payload []byte) {
	le.PutUint32(b[0:], uint32(len(payload)))
	le.PutUint32(b[4:], checksum(payload))
	le.PutUint32(b[8:], checksum(b[:8]))
}

// parseFrameHeader validates the frame header at the start of b and returns
// the payload length and checksum. It does not look at the payload.
func parseFrameHeader(b []byte) (n int, sum uint32, ok bool) {
	if len(b) < frameHeaderSize || le.Uint32(b[8:]) != checksum(b[:8]) {
		return 0, 0, false
	}
	l := le.Uint32(b[0:])
	if l > maxFramePayload {
		return 0, 0, false
	}
	return int(l), le.Uint32(b[4:]), true
}

// parseFrame returns the payload and total size of the frame at the start of
// b if b starts with a complete frame whose checksums match.
func parseFrame(b []byte) (payload []byte, size int, ok bool) {
	n, sum, ok := parseFrameHeader(b)
	if !ok || len(b)-frameHeaderSize < n {
		return nil, 0, false
	}
	payload = b[frameHeaderSize : frameHeaderSize+n]
	if checksum(payload) != sum {
		return nil, 0, false
	}
	return payload, frameHeaderSize + n, true
}

// decoder walks the frames of a segment image, resynchronising after damage
// by trying every following byte offset as a frame start.
type decoder struct {
	data []byte
	pos  int
}

// next returns the next valid frame at or after d.pos: its offset, payload,
// and how many bytes before it were skipped as undecodable. At the end it
// returns ok=false, off=len(data) and the undecodable tail length in skipped.
func (d *decoder) next() (off int, payload []byte, skipped int, ok bool) {
	start := d.pos
	for p := d.pos; len(d.data)-p >= frameHeaderSize; p++ {
		if payload, size, ok := parseFrame(d.data[p:]); ok {
			d.pos = p + size
			return p, payload, p - start, true
		}
	}
	d.pos = len(d.data)
	return len(d.data), nil, len(d.data) - start, false
}

// span is a byte range [off, end) of a segment file.
type span struct{ off, end int64 }

// segPlan is what recovery decided about one segment image: which records
// are unacknowledged, how many bytes are lost, and how to repair the file.
// planSegment computes it without I/O so that it can be fuzzed.
type segPlan struct {
	unsupported bool   // valid header of another format version: set the file aside
	version     uint32 // header version (when unsupported)

	headerOK  bool
	frames    []span // every valid frame, in file order
	start     int64  // first unacknowledged byte: the cursor if it was valid, else 0
	cursorBad bool   // a cursor was given but is not a record boundary
	records   int    // valid frames at or after start
	lostBytes int64  // undecodable bytes after the header and at or after start

	damagedBytes int64 // undecodable bytes anywhere in the file
	regions      int   // number of separate undecodable regions
	tailOnly     bool  // header intact and all damage after the last valid frame: truncate
	validEnd     int64 // end of the last valid frame, or of the header
}

// planSegment decodes a whole segment image. from is the read cursor's
// offset if the cursor points into this segment, or 0. A cursor that lies
// inside a valid frame, inside the header, or past the end cannot have been
// written by us for this file, so the segment is replayed from its start.
// A cursor inside an undecodable region is kept: the bytes before it had been
// delivered, those after it are lost.
func planSegment(data []byte, from int64) segPlan {
	var p segPlan
	status, version := parseSegHeader(data)
	dataStart := 0
	switch status {
	case headerUnsupported:
		p.unsupported, p.version = true, version
		p.lostBytes, p.damagedBytes = int64(len(data)-segHeaderSize), int64(len(data))
		return p
	case headerOK:
		p.headerOK = true
		dataStart = segHeaderSize
	}

	d := decoder{data: data, pos: dataStart}
	var gaps []span
	for {
		off, _, skipped, ok := d.next()
		if skipped > 0 {
			gaps = append(gaps, span{int64(off - skipped), int64(off)})
		}
		if !ok {
			break
		}
		p.frames = append(p.frames, span{int64(off), int64(d.pos)})
	}
	p.validEnd = int64(dataStart)
	if len(p.frames) > 0 {
		p.validEnd = p.frames[len(p.frames)-1].end
	}

	if from > 0 {
		bad := from > int64(len(data)) || (p.headerOK && from < segHeaderSize)
		if !bad {
			i := sort.Search(len(p.frames), func(i int) bool { return p.frames[i].end > from })
			bad = i < len(p.frames) && p.frames[i].off < from
		}
		if bad {
			p.cursorBad = true
		} else {
			p.start = from
		}
	}

	for _, f := range p.frames {
		if f.off >= p.start {
			p.records++
		}
	}
	// The first segHeaderSize bytes never hold records: damage there is
	// repaired but loses nothing.
	lostFrom := max(p.start, segHeaderSize)
	for _, g := range gaps {
		p.damagedBytes += g.end - g.off
		if g.end > lostFrom {
			p.lostBytes += g.end - max(g.off, lostFrom)
		}
	}
	p.regions = len(gaps)
	p.tailOnly = p.headerOK && (len(gaps) == 0 || (len(gaps) == 1 && gaps[0].off >= p.validEnd))
	return p
}
