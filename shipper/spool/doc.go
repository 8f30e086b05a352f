// Package spool is connaudit's durable, bounded FIFO of audit records on
// local disk: every record is appended here before anything depends on it,
// exported from here in batches, and removed only after the collector
// accepted it. Delivery is at-least-once: a crash can cause records to be
// delivered again, never to be skipped. Records are opaque byte payloads.
//
// # Use
//
//	s, rec, err := spool.Open(dir, spool.Options{MaxBytes: 512 << 20, FsyncInterval: 100 * time.Millisecond})
//	// report rec.CorruptBytes as lost, log rec.Problems
//
//	// writer goroutine
//	err = s.Append(payload) // ErrFull: spool at MaxBytes; other errors: disk refused the write
//
//	// exporter goroutine
//	for {
//		b, err := s.Next(ctx, 1024, 4<<20)
//		for export(b.Records) != nil { /* retry b, or call Next again: it returns the same records */ }
//		s.Ack(b)
//	}
//
// Next always reads from the read cursor, which only Ack moves, so a batch
// that was not acknowledged is returned again by the next call to Next. The
// payload slices in a Batch are valid until the next Next, Ack or Close.
//
// # Guarantees
//
//   - When Append returns nil the record has been written to the segment
//     file with one pwrite: it is in the kernel's page cache. A crash of the
//     process (panic, SIGKILL, OOM kill) loses nothing Append returned nil
//     for. There is deliberately no user-space write buffer, since its
//     contents would be lost in such a crash.
//   - A crash of the machine (power loss, kernel panic) loses at most the
//     records appended during the last FsyncInterval (plus the time the
//     fsync takes): a background group commit fsyncs the segment files every
//     FsyncInterval. With FsyncInterval 0, Append fsyncs before returning
//     and a machine crash loses nothing Append returned nil for.
//   - Acknowledged records may be delivered again after a crash: the cursor
//     is persisted by the same group commit (or in Ack when FsyncInterval is
//     0), atomically, and only after the data it covers was fsynced.
//   - Append never takes the segment files past MaxBytes; it returns ErrFull
//     instead. Space is freed when Ack passes the end of a segment, which
//     is then deleted (its disk blocks are released once the background
//     commit has closed it, within FsyncInterval).
//   - A failed write (ENOSPC, EIO) leaves the segment as it was before the
//     call: the partial write is truncated away and the error, wrapping
//     the cause, is returned. Append works again once space returns.
//
// # Recovery
//
// Open never panics on any directory contents. It starts a new segment for
// its own appends, and repairs the existing ones so that each is a header
// followed by valid frames: damage is counted in Recovery.CorruptBytes (the
// unacknowledged bytes lost, to be reported as loss), described in
// Recovery.Problems, and not reported again by a later Open. Every valid
// record survives:
//
//   - a torn tail (partial record at the end of a segment) is truncated;
//   - garbage or zeroes inside a segment, or a damaged segment header, are
//     skipped by scanning forward for the next valid frame, and the segment
//     is rewritten with its valid unacknowledged records;
//   - a segment with a valid header of another format version is renamed to
//     NNN.seg.unsupported and left alone; its record bytes count as corrupt;
//   - a corrupt cursor file, or one pointing past every segment, causes a
//     replay from the oldest segment; a cursor that is not at a record
//     boundary, a replay of its segment (duplicates, not loss).
//
// Damage that appears after Open (bit rot under the reader) makes Next
// deliver the records before it, then skip the rest of that segment's data,
// counted in Stats.CorruptBytes.
//
// A directory is used by one Spool at a time (flock on dir/LOCK).
//
// # On-disk format (version 1, little-endian)
//
// Files in dir: segments NNNNNNNNNNNNNNNNNNNN.seg (20-digit number, increasing;
// a new one is started by each Open and whenever the active one would pass
// SegmentBytes), the read cursor "cursor", and LOCK.
//
//	segment header (16 bytes): "cnaspseg" | version uint32 | crc32c(previous 12 bytes) uint32
//	record frame (12 + n bytes): n uint32 | crc32c(payload) uint32 | crc32c(previous 8 bytes) uint32 | payload
//	cursor (32 bytes): "cnaspcur" | version uint32 | segment uint64 | offset uint64 | crc32c(previous 28 bytes) uint32
//
// CRCs are CRC-32C (Castagnoli). The frame header's own checksum lets
// recovery test every byte offset for a frame start in constant time and
// keeps zero-filled regions from decoding as records. The cursor names the
// first unacknowledged record; it is written to cursor.tmp, fsynced, and
// renamed over cursor. Segments are only ever appended to while they are the
// active segment of the process that created them; recovery rewrites them
// only to drop damage.
package spool
