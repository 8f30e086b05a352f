package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

var (
	// ErrFull is returned by Append when the record would take the spool
	// past Options.MaxBytes. Acknowledging records frees space.
	ErrFull = errors.New("spool: full")
	// ErrTooLarge is returned by Append for a payload that cannot fit in a segment.
	ErrTooLarge = errors.New("spool: record too large")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("spool: closed")
	// ErrStaleBatch is returned by Ack for a batch that does not start at
	// the read cursor (or comes from another Spool).
	ErrStaleBatch = errors.New("spool: batch does not start at the read cursor")
)

const (
	// DefaultMaxBytes is used when Options.MaxBytes is 0.
	DefaultMaxBytes = 1 << 30
	// DefaultSegmentBytes is used when Options.SegmentBytes is 0.
	DefaultSegmentBytes = 16 << 20

	minMaxBytes     = 16 << 10
	minSegmentBytes = 1 << 10

	readChunk   = 256 << 10 // bytes read from a segment per read call
	minReadBuf  = 64 << 10
	maxReadBuf  = 64 << 20
	lockName    = "LOCK"
	defaultRBuf = 4 << 20 // read buffer when Next has no byte limit
)

// Options configures a Spool. The zero value is usable.
type Options struct {
	// MaxBytes bounds the bytes of all segment files. Append returns
	// ErrFull for a record that would exceed it. 0 means DefaultMaxBytes;
	// the minimum is 16 KiB.
	MaxBytes int64
	// SegmentBytes is the size past which Append starts a new segment file.
	// Space is freed a whole segment at a time, so it is clamped to at most
	// MaxBytes/8 (and at least 1 KiB). 0 means DefaultSegmentBytes. A payload
	// must fit in one segment: at most SegmentBytes-28 bytes.
	SegmentBytes int64
	// FsyncInterval is the group-commit interval: appended records and the
	// read cursor are fsynced at most this long after Append or Ack
	// returns. 0 fsyncs inside every Append and every Ack.
	FsyncInterval time.Duration
}

func (o Options) normalize() (Options, error) {
	if o.MaxBytes < 0 || o.SegmentBytes < 0 || o.FsyncInterval < 0 {
		return o, fmt.Errorf("spool: negative option in %+v", o)
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxBytes < minMaxBytes {
		return o, fmt.Errorf("spool: MaxBytes %d is below the minimum %d", o.MaxBytes, minMaxBytes)
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	o.SegmentBytes = max(min(o.SegmentBytes, o.MaxBytes/8), minSegmentBytes)
	return o, nil
}

// Recovery reports what Open found on disk.
type Recovery struct {
	// Records is the number of unacknowledged records recovered: what the
	// first calls to Next will return.
	Records int
	// CorruptBytes counts the bytes of unacknowledged record data (at or
	// after the read cursor, past segment headers) that held no valid
	// record: torn tails, garbage, zero-filled regions, and the records of
	// files of an unsupported format version (moved aside). Records in them
	// are lost; report them as such. Open repairs the files, so the same
	// damage is not reported twice.
	CorruptBytes int64
	// Problems describes each finding in a line, for logs. Empty when the
	// spool was intact.
	Problems []string
}

// Stats is a snapshot of the spool's state.
type Stats struct {
	// Bytes is the size of all segment files: unacknowledged records plus
	// segment headers plus the acknowledged prefix of the oldest segment.
	// It is what MaxBytes bounds.
	Bytes int64
	// Records is the number of unacknowledged records.
	Records int64
	// Segments is the number of segment files.
	Segments int
	// CorruptBytes counts bytes that Next skipped since Open because they
	// failed their checksum (damage after Open). Report them as loss.
	CorruptBytes int64
	// SyncErrors counts failed background fsyncs or cursor writes.
	SyncErrors int64
}

// Batch is a run of consecutive unacknowledged records returned by Next.
type Batch struct {
	// Records holds the payloads in append order. The slices are valid
	// until the next call to Next, Ack or Close.
	Records [][]byte

	spool      *Spool
	start, end position
	n          int
}

type segment struct {
	seq  uint64
	size int64 // bytes written and visible to the reader
}

// Spool is a bounded, crash-safe FIFO of opaque records on local disk. All
// methods are safe for concurrent use; it is designed for one goroutine
// appending and one goroutine calling Next and Ack.
type Spool struct {
	dir        string
	opts       Options
	maxPayload int
	lock       *os.File
	avail      chan struct{} // gets a token after each Append
	done       chan struct{} // closed by Close
	stopSync   chan struct{}
	syncWG     sync.WaitGroup
	syncMu     sync.Mutex // serialises syncOnce

	mu           sync.Mutex
	closed       bool
	segs         []segment // oldest first; the last is the active one
	bytes        int64
	records      int64
	cursor       position // first unacknowledged record
	cursorDirty  bool
	corruptBytes int64
	syncErrors   int64
	syncErr      error      // first background sync error not yet returned
	wf           *os.File   // active segment
	wbuf         []byte     // frame being appended
	wdirty       bool       // wf has writes not yet fsynced
	dirDirty     bool       // a segment was created since the last directory fsync
	unsynced     []*os.File // sealed segments the syncer must fsync and close
	needTrunc    bool       // a failed write may have left bytes past the active segment's size
	writeFailed  bool       // the last Append failed to write (disk full?)

	rmu  sync.Mutex // reader state below
	rf   *os.File
	rseq uint64
	rbuf []byte
	recs [][]byte
}

// Open opens the spool in dir, creating dir if needed, and recovers the
// segments found there. It takes an exclusive lock on dir for the life of
// the Spool. Problems found on disk are reported in Recovery, not as an
// error; an error means the directory could not be read or written.
func Open(dir string, opts Options) (*Spool, Recovery, error) {
	opts, err := opts.normalize()
	if err != nil {
		return nil, Recovery{}, err
	}
	// Records name processes, pods and peers: only the agent reads them. A
	// directory made by someone else (a kubelet hostPath makes 0755) is narrowed.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, Recovery{}, fmt.Errorf("spool: creating directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, Recovery{}, fmt.Errorf("spool: restricting %s to its owner: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, Recovery{}, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{
		dir:        dir,
		opts:       opts,
		maxPayload: int(min(maxFramePayload, opts.SegmentBytes-segHeaderSize-frameHeaderSize)),
		lock:       lock,
		avail:      make(chan struct{}, 1),
		done:       make(chan struct{}),
		stopSync:   make(chan struct{}),
	}
	rec, err := s.recover()
	if err != nil {
		lock.Close()
		return nil, rec, fmt.Errorf("spool: opening %s: %w", dir, err)
	}
	if opts.FsyncInterval > 0 {
		s.syncWG.Add(1)
		go s.syncLoop()
	}
	return s, rec, nil
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s (is another Spool using it?): %w", dir, err)
	}
	return f, nil
}

// recover scans dir, repairs the segments, positions the read cursor and
// starts a fresh active segment. Recovered segments are never appended to.
func (s *Spool) recover() (Recovery, error) {
	var rec Recovery
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return rec, fmt.Errorf("listing: %w", err)
	}
	var live []uint64
	var maxSeq uint64
	for _, e := range entries {
		name := e.Name()
		seq, isLive, ok := parseSegName(name)
		if strings.HasSuffix(name, tmpSuffix) && (ok || name == cursorTmpName) {
			// Left by a crash during a rewrite or a cursor write; the
			// original is intact.
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil {
				return rec, fmt.Errorf("removing %s: %w", name, err)
			}
			continue
		}
		if !ok {
			continue
		}
		maxSeq = max(maxSeq, seq)
		if isLive && e.Type().IsRegular() {
			live = append(live, seq)
		}
	}
	slices.Sort(live)

	cur, found, corrupt, err := readCursor(s.dir)
	if err != nil {
		return rec, err
	}
	switch {
	case corrupt != nil:
		rec.Problems = append(rec.Problems, fmt.Sprintf("cursor file: %v; replaying from the oldest segment", corrupt))
		cur = position{}
	case found && len(live) > 0 && cur.seq > live[len(live)-1]:
		rec.Problems = append(rec.Problems, fmt.Sprintf(
			"cursor file points at segment %d, newer than any segment on disk; replaying from the oldest segment", cur.seq))
		maxSeq = max(maxSeq, cur.seq)
		cur = position{}
	case found:
		maxSeq = max(maxSeq, cur.seq)
	}

	for _, seq := range live {
		if seq < cur.seq { // fully acknowledged; its removal was interrupted
			if err := os.Remove(filepath.Join(s.dir, segName(seq))); err != nil {
				return rec, fmt.Errorf("removing acknowledged segment %d: %w", seq, err)
			}
			continue
		}
		from := int64(0)
		if seq == cur.seq {
			from = cur.off
		}
		r, problems, err := recoverSegment(s.dir, seq, from, len(s.segs) == 0)
		if err != nil {
			return rec, err
		}
		rec.Problems = append(rec.Problems, problems...)
		rec.CorruptBytes += r.lost
		if !r.kept {
			continue
		}
		rec.Records += r.records
		if len(s.segs) == 0 {
			s.cursor = position{seq: seq, off: r.start}
		}
		s.segs = append(s.segs, segment{seq: seq, size: r.size})
		s.bytes += r.size
	}
	s.records = int64(rec.Records)

	seq := maxSeq + 1
	f, err := createSegment(s.dir, seq, true)
	if err != nil {
		return rec, fmt.Errorf("creating segment %d: %w", seq, err)
	}
	s.wf = f
	s.segs = append(s.segs, segment{seq: seq, size: segHeaderSize})
	s.bytes += segHeaderSize
	if len(s.segs) == 1 {
		s.cursor = position{seq: seq, off: segHeaderSize}
	}
	if err := writeCursor(s.dir, s.cursor); err != nil {
		f.Close()
		return rec, err
	}
	return rec, nil
}

// Append adds a record. When it returns nil the record is in the page cache
// and survives a crash of the process; it is fsynced within
// Options.FsyncInterval (before returning if that is 0). The payload is
// copied; Append does not allocate. It returns ErrFull if the record would
// exceed MaxBytes, ErrTooLarge if it cannot fit in a segment, and a wrapped
// write error (e.g. ENOSPC) if the disk refused it, in which case the
// segment is cut back to its last record and a later Append may succeed.
func (s *Spool) Append(payload []byte) error {
	if len(payload) > s.maxPayload {
		return ErrTooLarge
	}
	frameLen := int64(frameHeaderSize + len(payload))

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	act := &s.segs[len(s.segs)-1]
	if s.needTrunc {
		if err := s.wf.Truncate(act.size); err != nil {
			return fmt.Errorf("spool: append: cutting segment %d back after a failed write: %w", act.seq, err)
		}
		s.needTrunc = false
	}
	roll := act.size+frameLen > s.opts.SegmentBytes && act.size > segHeaderSize
	need := frameLen
	if roll {
		need += segHeaderSize
	}
	if s.bytes+need > s.opts.MaxBytes {
		return ErrFull
	}
	if roll {
		if err := s.roll(); err != nil {
			return err
		}
		act = &s.segs[len(s.segs)-1]
	}

	if int64(cap(s.wbuf)) < frameLen {
		s.wbuf = make([]byte, max(frameLen, 4<<10))
	}
	buf := s.wbuf[:frameLen]
	putFrameHeader(buf, payload)
	copy(buf[frameHeaderSize:], payload)
	if _, err := s.wf.WriteAt(buf, act.size); err != nil {
		if terr := s.wf.Truncate(act.size); terr != nil {
			s.needTrunc = true
		}
		s.writeFailed = true
		return fmt.Errorf("spool: append: writing to segment %d: %w", act.seq, err)
	}
	s.writeFailed = false
	act.size += frameLen
	s.bytes += frameLen
	s.records++
	if s.opts.FsyncInterval == 0 {
		if err := s.wf.Sync(); err != nil {
			// The record is written and may still be delivered; its
			// durability against a machine crash is unknown.
			return fmt.Errorf("spool: append: fsync of segment %d: %w", act.seq, err)
		}
	} else {
		s.wdirty = true
	}
	select {
	case s.avail <- struct{}{}:
	default:
	}
	return nil
}

// roll seals the active segment and starts the next one. Called with mu held.
func (s *Spool) roll() error {
	seq := s.segs[len(s.segs)-1].seq + 1
	sync := s.opts.FsyncInterval == 0
	f, err := createSegment(s.dir, seq, sync)
	if err != nil {
		return fmt.Errorf("spool: append: starting segment %d: %w", seq, err)
	}
	if sync {
		s.wf.Close() // every write to it was fsynced already
	} else {
		s.unsynced = append(s.unsynced, s.wf)
		s.wdirty, s.dirDirty = true, true
	}
	s.wf = f
	s.segs = append(s.segs, segment{seq: seq, size: segHeaderSize})
	s.bytes += segHeaderSize
	return nil
}

// Next returns the oldest unacknowledged records, at most maxRecords of
// them and at most maxBytes payload bytes (maxBytes <= 0: no byte limit),
// in append order. A batch always holds at least one record, even one
// larger than maxBytes; it may hold fewer than the limits allow. Next blocks
// until a record is available, ctx is done (ctx.Err() is returned) or the
// spool is closed (ErrClosed).
//
// Next always starts at the read cursor, which only Ack moves: calling Next
// again without acknowledging the previous batch returns the same records
// (and possibly more after them). That is how an exporter re-reads a batch
// it failed to deliver.
func (s *Spool) Next(ctx context.Context, maxRecords, maxBytes int) (Batch, error) {
	maxRecords = max(maxRecords, 1)
	for {
		if err := ctx.Err(); err != nil {
			return Batch{}, err
		}
		s.rmu.Lock()
		b, err := s.readBatch(maxRecords, maxBytes)
		s.rmu.Unlock()
		if err != nil || len(b.Records) > 0 {
			return b, err
		}
		select {
		case <-s.avail:
		case <-s.done:
			return Batch{}, ErrClosed
		case <-ctx.Done():
			return Batch{}, ctx.Err()
		}
	}
}

// readBatch reads records from the cursor into s.rbuf. Called with rmu held.
func (s *Spool) readBatch(maxRecords, maxBytes int) (Batch, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Batch{}, ErrClosed
	}
	start := s.cursor
	s.mu.Unlock()

	s.sizeReadBuf(maxRecords, maxBytes)
	recs := s.recs[:0]
	pos := start
	used, total, need := 0, 0, 0 // need: size of a frame that did not fit in the last chunk
	for len(recs) < maxRecords {
		limit, next, ok := s.segLimit(pos.seq)
		if !ok {
			return Batch{}, fmt.Errorf("spool: next: segment %d is missing", pos.seq)
		}
		if pos.off >= limit {
			if next == 0 {
				break // caught up with the writer
			}
			pos = position{seq: next, off: segHeaderSize}
			continue
		}
		space := len(s.rbuf) - used
		if need > space {
			if len(recs) > 0 {
				break // buffer full
			}
			s.rbuf = make([]byte, need) // one frame larger than the buffer; used is 0
			space = need
		}
		if err := s.openReader(pos.seq); err != nil {
			return Batch{}, err
		}
		chunk := s.rbuf[used : used+int(min(int64(space), limit-pos.off, int64(max(readChunk, need))))]
		if _, err := s.rf.ReadAt(chunk, pos.off); err != nil {
			return Batch{}, fmt.Errorf("spool: next: reading segment %d at %d: %w", pos.seq, pos.off, err)
		}

		consumed, stop, corrupt := 0, false, false
		need = 0
		for len(recs) < maxRecords {
			rest := chunk[consumed:]
			avail := limit - pos.off - int64(consumed) // bytes left in the segment
			if avail == 0 {
				break
			}
			if len(rest) < frameHeaderSize {
				corrupt = avail < frameHeaderSize
				need = frameHeaderSize
				break
			}
			n, sum, ok := parseFrameHeader(rest)
			size := frameHeaderSize + n
			if !ok || int64(size) > avail {
				corrupt = true
				break
			}
			if size > len(rest) {
				need = size
				break
			}
			if len(recs) > 0 && maxBytes > 0 && total+n > maxBytes {
				stop = true
				break
			}
			payload := rest[frameHeaderSize:size]
			if checksum(payload) != sum {
				corrupt = true
				break
			}
			recs = append(recs, payload)
			total += n
			consumed += size
		}
		pos.off += int64(consumed)
		used += consumed
		if stop {
			break
		}
		if corrupt {
			if len(recs) > 0 {
				break // deliver the good records; the next call skips the damage
			}
			// Damaged after Open: the rest of the segment's data cannot be
			// framed. Skip it and count it as lost.
			if err := s.skipCorrupt(pos, limit); err != nil {
				return Batch{}, err
			}
			pos.off, start, used, need = limit, position{seq: pos.seq, off: limit}, 0, 0
		}
	}
	s.recs = recs
	return Batch{Records: recs, spool: s, start: start, end: pos, n: len(recs)}, nil
}

func (s *Spool) sizeReadBuf(maxRecords, maxBytes int) {
	want := int64(defaultRBuf)
	if maxBytes > 0 {
		want = int64(maxBytes) + int64(min(maxRecords, maxReadBuf))*frameHeaderSize
	}
	want = min(max(want, minReadBuf), maxReadBuf)
	if int64(len(s.rbuf)) < want {
		s.rbuf = make([]byte, want)
	}
}

// segLimit returns how many bytes of segment seq are readable and the next
// segment's number (0 if seq is the active segment).
func (s *Spool) segLimit(seq uint64) (limit int64, next uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, sg := range s.segs {
		if sg.seq == seq {
			if i+1 < len(s.segs) {
				next = s.segs[i+1].seq
			}
			return sg.size, next, true
		}
	}
	return 0, 0, false
}

func (s *Spool) openReader(seq uint64) error {
	if s.rf != nil && s.rseq == seq {
		return nil
	}
	if s.rf != nil {
		s.rf.Close()
		s.rf = nil
	}
	f, err := os.Open(filepath.Join(s.dir, segName(seq)))
	if err != nil {
		return fmt.Errorf("spool: next: opening segment %d: %w", seq, err)
	}
	s.rf, s.rseq = f, seq
	return nil
}

// skipCorrupt moves the cursor past [pos.off, limit) of segment pos.seq.
// Called with rmu held.
func (s *Spool) skipCorrupt(pos position, limit int64) error {
	s.mu.Lock()
	s.corruptBytes += limit - pos.off
	doomed := s.advance(position{seq: pos.seq, off: limit})
	s.mu.Unlock()
	return s.removeSegments(doomed)
}

// Ack marks the batch delivered: the read cursor moves past it and segments
// holding only acknowledged records are deleted, which frees space for
// Append. The cursor is persisted within FsyncInterval (before returning if
// that is 0); after a crash, records acknowledged since the last persisted
// cursor are delivered again. Acknowledging the zero Batch, or a batch
// already acknowledged, does nothing; a batch that does not start at the
// cursor yields ErrStaleBatch. Ack covers the batch as Next returned it,
// whatever the caller did to b.Records. An error deleting a segment or writing the
// cursor is returned, but the acknowledgement has taken effect.
func (s *Spool) Ack(b Batch) error {
	if b.spool == nil {
		return nil
	}
	if b.spool != s {
		return ErrStaleBatch
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if !s.cursor.before(b.end) {
		s.mu.Unlock()
		return nil
	}
	if b.start != s.cursor {
		s.mu.Unlock()
		return ErrStaleBatch
	}
	s.records = max(s.records-int64(b.n), 0)
	doomed := s.advance(b.end)
	doomed = append(doomed, s.recycleActive()...)
	s.mu.Unlock()

	err := s.removeSegments(doomed)
	if s.opts.FsyncInterval == 0 {
		if serr := s.syncOnce(); err == nil {
			err = serr
		}
	}
	return err
}

// advance moves the cursor to p and drops the sealed segments it has passed,
// returning their numbers for removal. Called with mu held.
func (s *Spool) advance(p position) (doomed []uint64) {
	s.cursor, s.cursorDirty = p, true
	for len(s.segs) > 1 { // the active segment stays
		first := s.segs[0]
		if first.seq > s.cursor.seq || (first.seq == s.cursor.seq && s.cursor.off < first.size) {
			break
		}
		doomed = append(doomed, first.seq)
		s.bytes -= first.size
		s.segs = s.segs[1:]
		if s.cursor.seq <= first.seq {
			s.cursor = position{seq: s.segs[0].seq, off: segHeaderSize}
		}
	}
	if act := s.segs[len(s.segs)-1]; s.cursor == (position{act.seq, act.size}) {
		s.records = 0 // caught up; keeps the count exact even after skipped damage
	}
	return doomed
}

// recycleActive replaces the active segment by a new one once everything in
// it is acknowledged and it is big, or the disk refused a write: only sealed
// segments are ever deleted, so without this a full disk would stay full.
// It returns the segment to delete. Called with rmu and mu held.
func (s *Spool) recycleActive() []uint64 {
	act := s.segs[len(s.segs)-1]
	caughtUp := len(s.segs) == 1 && s.cursor == position{act.seq, act.size}
	if !caughtUp || act.size == segHeaderSize || !s.writeFailed && act.size < s.opts.SegmentBytes/4 {
		return nil
	}
	err := s.roll()
	if err != nil && s.writeFailed {
		// No room even for a new segment's header: empty the acknowledged one first.
		if terr := s.wf.Truncate(segHeaderSize); terr == nil {
			s.bytes -= act.size - segHeaderSize
			s.segs[0].size = segHeaderSize
			s.cursor, s.cursorDirty = position{act.seq, segHeaderSize}, true
			err = s.roll()
		}
	}
	if err != nil {
		return nil // tried again at the next Ack
	}
	return s.advance(s.cursor)
}

// removeSegments deletes acknowledged segment files. Called with rmu held.
func (s *Spool) removeSegments(seqs []uint64) error {
	var errs []error
	for _, seq := range seqs {
		if s.rf != nil && s.rseq == seq {
			s.rf.Close()
			s.rf = nil
		}
		err := os.Remove(filepath.Join(s.dir, segName(seq)))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("spool: ack: removing acknowledged segments: %w", errors.Join(errs...))
	}
	return nil
}

// Sync fsyncs appended records and persists the read cursor now. It also
// returns the first background fsync error since the previous Sync.
func (s *Spool) Sync() error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	err := s.syncOnce()
	s.mu.Lock()
	if err == nil {
		err = s.syncErr
	}
	s.syncErr = nil
	s.mu.Unlock()
	return err
}

// syncOnce is one group commit: fsync what was written, then persist the
// cursor. The cursor only points at records that were read back from these
// files, so it never gets ahead of durable data.
func (s *Spool) syncOnce() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()

	s.mu.Lock()
	sealed := s.unsynced
	s.unsynced = nil
	var active *os.File
	if s.wdirty {
		active, s.wdirty = s.wf, false
	}
	dirDirty, cur, curDirty := s.dirDirty, s.cursor, s.cursorDirty
	s.dirDirty, s.cursorDirty = false, false
	s.mu.Unlock()

	var errs []error
	for _, f := range sealed {
		if err := f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("fsync of %s: %w", filepath.Base(f.Name()), err))
		}
		f.Close()
	}
	if active != nil {
		if err := active.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("fsync of %s: %w", filepath.Base(active.Name()), err))
			s.mu.Lock()
			s.wdirty = true
			s.mu.Unlock()
		}
	}
	if dirDirty {
		if err := syncDir(s.dir); err != nil {
			errs = append(errs, fmt.Errorf("fsync of directory: %w", err))
			s.mu.Lock()
			s.dirDirty = true
			s.mu.Unlock()
		}
	}
	if curDirty {
		if err := writeCursor(s.dir, cur); err != nil {
			errs = append(errs, err)
			s.mu.Lock()
			s.cursorDirty = true
			s.mu.Unlock()
		}
	}
	if len(errs) == 0 {
		return nil
	}
	s.mu.Lock()
	s.syncErrors++
	s.mu.Unlock()
	return fmt.Errorf("spool: sync: %w", errors.Join(errs...))
}

func (s *Spool) syncLoop() {
	defer s.syncWG.Done()
	t := time.NewTicker(s.opts.FsyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopSync:
			return
		case <-t.C:
			if err := s.syncOnce(); err != nil {
				s.mu.Lock()
				if s.syncErr == nil {
					s.syncErr = err
				}
				s.mu.Unlock()
			}
		}
	}
}

// Stats returns a snapshot of the spool's state.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Bytes:        s.bytes,
		Records:      s.records,
		Segments:     len(s.segs),
		CorruptBytes: s.corruptBytes,
		SyncErrors:   s.syncErrors,
	}
}

// Close fsyncs appended records, persists the read cursor, and releases the
// directory. Unacknowledged records are delivered by the next Open. A
// blocked Next returns ErrClosed.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()

	close(s.stopSync)
	s.syncWG.Wait()
	err := s.syncOnce()

	s.mu.Lock()
	if err == nil {
		err = s.syncErr
	}
	if cerr := s.wf.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("spool: close: %w", cerr)
	}
	s.wf = nil
	s.mu.Unlock()

	s.rmu.Lock()
	if s.rf != nil {
		s.rf.Close()
		s.rf = nil
	}
	s.rmu.Unlock()
	s.lock.Close()
	return err
}
