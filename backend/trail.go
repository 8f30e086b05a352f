package backend

import (
	"context"
	"time"
)

// TrailReader is a Backend that also hands out the records as stored: every
// field and every duplicate, for `connaudit verify` (which keeps the copy
// that matches the chain) and `connaudit export`. A row is a record's fields
// by name, as text, with its timestamp under "_time" (RFC 3339) and its body
// under "_msg"; each may not keep the map once it returns.
type TrailReader interface {
	// Trail calls each with every record of [from, to) that carries a
	// connaudit.seq, on the given nodes (all when empty).
	Trail(ctx context.Context, from, to time.Time, nodes []string, each func(map[string]string) error) error
	// InstanceRecords calls each with the records of one instance stored at
	// any time before to: its start record (start), or those at seq.
	InstanceRecords(ctx context.Context, instance string, start bool, seq uint64, to time.Time, each func(map[string]string) error) error
	// Export calls each with every record of [from, to), of every event
	// name, on the given nodes (all when empty), duplicates included, in no
	// particular order.
	Export(ctx context.Context, from, to time.Time, nodes []string, each func(map[string]string) error) error
}
