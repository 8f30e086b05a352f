package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const (
	segSuffix   = ".seg"
	asideSuffix = ".unsupported" // appended to segments recovery cannot read
	tmpSuffix   = ".tmp"

	// maxSegmentFile is the largest segment file recovery reads into memory;
	// anything larger was not written by this package and is set aside.
	maxSegmentFile = 1 << 30
)

// segName is the file name of segment seq: 20 decimal digits sort
// lexically in numeric order.
func segName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, segSuffix) }

// parseSegName recognises "<20 digits>.seg" (live is true) and names that
// extend it, such as set-aside or temporary files (live is false).
func parseSegName(name string) (seq uint64, live, ok bool) {
	if len(name) < 20+len(segSuffix) || !strings.HasPrefix(name[20:], segSuffix) {
		return 0, false, false
	}
	for _, c := range name[:20] {
		if c < '0' || c > '9' {
			return 0, false, false
		}
	}
	seq, err := strconv.ParseUint(name[:20], 10, 64)
	if err != nil {
		return 0, false, false
	}
	return seq, len(name) == 20+len(segSuffix), true
}

// createSegment creates segment seq holding just a header. With sync, the
// file and its directory entry are fsynced before it returns.
func createSegment(dir string, seq uint64, sync bool) (*os.File, error) {
	path := filepath.Join(dir, segName(seq))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	var h [segHeaderSize]byte
	putSegHeader(h[:])
	_, err = f.WriteAt(h[:], 0)
	if err == nil && sync {
		err = f.Sync()
		if err == nil {
			err = syncDir(dir)
		}
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return f, nil
}

// recoveredSeg is the outcome of recovering one segment file.
type recoveredSeg struct {
	kept    bool  // the file remains a live segment with unacknowledged records
	size    int64 // its size after repair
	start   int64 // offset of its first unacknowledged record
	records int   // unacknowledged records in it
	lost    int64 // bytes at or after the cursor that held no valid record
}

// recoverSegment decodes segment seq and repairs it so that, afterwards, it
// is a header followed by valid frames only and holds at least one
// unacknowledged record (otherwise it is removed). from is the cursor offset
// if the cursor points into this segment, else 0. first tells that no
// earlier segment was kept, so the cursor will point into this one: if the
// file has to be rewritten without its acknowledged records, the cursor is
// first persisted at the new file's start so that a crash in between can
// only cause duplicates.
func recoverSegment(dir string, seq uint64, from int64, first bool) (recoveredSeg, []string, error) {
	name := segName(seq)
	path := filepath.Join(dir, name)
	var out recoveredSeg
	var problems []string
	problemf := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("segment %s: ", name)+fmt.Sprintf(format, args...))
	}

	fi, err := os.Stat(path)
	if err != nil {
		return out, nil, fmt.Errorf("recovering segment %s: %w", name, err)
	}
	if fi.Size() > maxSegmentFile {
		if err := os.Rename(path, path+asideSuffix); err != nil {
			return out, nil, fmt.Errorf("recovering segment %s: setting aside: %w", name, err)
		}
		out.lost = fi.Size() - segHeaderSize
		problemf("%d bytes is larger than any segment this build writes; moved aside to %s%s", fi.Size(), name, asideSuffix)
		return out, problems, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return out, nil, fmt.Errorf("recovering segment %s: %w", name, err)
	}

	p := planSegment(data, from)
	if p.unsupported {
		if err := os.Rename(path, path+asideSuffix); err != nil {
			return out, nil, fmt.Errorf("recovering segment %s: setting aside: %w", name, err)
		}
		out.lost = p.lostBytes
		problemf("format version %d is not supported (this build reads version %d); moved aside to %s%s, %d bytes unread",
			p.version, formatVersion, name, asideSuffix, len(data))
		return out, problems, nil
	}
	if p.cursorBad {
		problemf("read cursor offset %d is not a record boundary; replaying the segment from its start", from)
	}
	out.records, out.lost = p.records, p.lostBytes
	out.size, out.start = int64(len(data)), max(p.start, segHeaderSize)

	switch {
	case p.damagedBytes == 0:
	case p.tailOnly:
		problemf("torn tail: truncated %d undecodable bytes at offset %d (%d after the read cursor)", p.damagedBytes, p.validEnd, p.lostBytes)
		if err := truncateFile(path, p.validEnd); err != nil {
			return out, nil, fmt.Errorf("recovering segment %s: truncating torn tail: %w", name, err)
		}
		out.size, out.start = p.validEnd, min(out.start, p.validEnd)
	default:
		what := fmt.Sprintf("%d undecodable bytes in %d region(s) (%d after the read cursor)", p.damagedBytes, p.regions, p.lostBytes)
		if !p.headerOK {
			what = "damaged header; " + what
		}
		if out.records == 0 {
			problemf("%s; removed it: no unacknowledged valid record left", what)
			break // removed below
		}
		problemf("%s; rewrote it with its %d unacknowledged valid records", what, p.records)
		size, err := rewriteSegment(dir, seq, data, p, first)
		if err != nil {
			return out, nil, fmt.Errorf("recovering segment %s: rewriting: %w", name, err)
		}
		out.size, out.start = size, segHeaderSize
	}

	if out.records == 0 {
		if err := os.Remove(path); err != nil {
			return out, nil, fmt.Errorf("recovering segment %s: removing fully acknowledged segment: %w", name, err)
		}
		return out, problems, nil
	}
	out.kept = true
	return out, problems, nil
}

func truncateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// rewriteSegment replaces segment seq with a fresh header followed by the
// valid frames of p at or after p.start, and returns the new size.
func rewriteSegment(dir string, seq uint64, data []byte, p segPlan, first bool) (int64, error) {
	path := filepath.Join(dir, segName(seq))
	tmp := path + tmpSuffix
	out := repairedImage(data, p)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	_, err = f.Write(out)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && first {
		err = writeCursor(dir, position{seq: seq, off: segHeaderSize})
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, err
	}
	return int64(len(out)), nil
}

// repairedImage is the segment file rewriteSegment writes: a fresh header and
// the valid frames of p at or after p.start.
func repairedImage(data []byte, p segPlan) []byte {
	out := make([]byte, segHeaderSize, len(data)+segHeaderSize)
	putSegHeader(out)
	for _, f := range p.frames {
		if f.off >= p.start {
			out = append(out, data[f.off:f.end]...)
		}
	}
	return out
}
