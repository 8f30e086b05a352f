package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The read cursor file holds the position of the first unacknowledged record:
//
//	magic "cnaspcur" (8) | version uint32 (4) | segment uint64 (8) | offset uint64 (8) | crc32c of the preceding 28 bytes uint32 (4)
//
// It is replaced atomically: written to cursor.tmp, fsynced, renamed over
// cursor, and the directory fsynced.
const (
	cursorName    = "cursor"
	cursorTmpName = "cursor.tmp"
	cursorSize    = 32
)

var cursorMagic = [8]byte{'c', 'n', 'a', 's', 'p', 'c', 'u', 'r'}

// position is a byte offset in a segment; positions order by (seq, off).
type position struct {
	seq uint64
	off int64
}

func (p position) before(q position) bool {
	return p.seq < q.seq || (p.seq == q.seq && p.off < q.off)
}

func encodeCursor(p position) []byte {
	b := make([]byte, cursorSize)
	copy(b, cursorMagic[:])
	le.PutUint32(b[8:], formatVersion)
	le.PutUint64(b[12:], p.seq)
	le.PutUint64(b[20:], uint64(p.off))
	le.PutUint32(b[28:], checksum(b[:28]))
	return b
}

func decodeCursor(b []byte) (position, error) {
	switch {
	case len(b) != cursorSize:
		return position{}, fmt.Errorf("size %d, want %d", len(b), cursorSize)
	case string(b[:8]) != string(cursorMagic[:]):
		return position{}, errors.New("bad magic")
	case le.Uint32(b[28:]) != checksum(b[:28]):
		return position{}, errors.New("checksum mismatch")
	case le.Uint32(b[8:]) != formatVersion:
		return position{}, fmt.Errorf("unsupported version %d", le.Uint32(b[8:]))
	}
	p := position{seq: le.Uint64(b[12:]), off: int64(le.Uint64(b[20:]))}
	if p.off < 0 {
		return position{}, fmt.Errorf("offset %d out of range", p.off)
	}
	return p, nil
}

// readCursor loads the cursor file. found is false if there is none. A file
// that exists but cannot be decoded is reported by corrupt (not err), so that
// recovery replays from the oldest segment instead of failing.
func readCursor(dir string) (p position, found bool, corrupt, err error) {
	b, err := os.ReadFile(filepath.Join(dir, cursorName))
	if errors.Is(err, fs.ErrNotExist) {
		return position{}, false, nil, nil
	}
	if err != nil {
		return position{}, false, nil, fmt.Errorf("reading cursor file: %w", err)
	}
	p, corrupt = decodeCursor(b)
	return p, true, corrupt, nil
}

// writeCursor durably replaces the cursor file with p.
func writeCursor(dir string, p position) error {
	tmp := filepath.Join(dir, cursorTmpName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("writing cursor: %w", err)
	}
	_, err = f.Write(encodeCursor(p))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, cursorName))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing cursor: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
