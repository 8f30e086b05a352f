package archive

import (
	"context"
	"strconv"
	"time"

	"github.com/connaudit/connaudit/backend"
)

// Trail implements backend.TrailReader.
func (b *Backend) Trail(ctx context.Context, from, to time.Time, nodes []string, each func(map[string]string) error) error {
	for _, r := range b.window(from, to) {
		if r.Get(backend.FieldSeq) == "" || !inNodes(r, nodes) {
			continue
		}
		if err := each(Row(r)); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// InstanceRecords implements backend.TrailReader.
func (b *Backend) InstanceRecords(ctx context.Context, instance string, start bool, seq uint64, to time.Time, each func(map[string]string) error) error {
	want := strconv.FormatUint(seq, 10)
	for _, r := range b.window(time.Unix(0, 0), to) {
		if r.Get(backend.FieldServiceInstanceID) != instance {
			continue
		}
		if start && r.Get(backend.FieldEventName) != backend.EventAgentStart || !start && r.Get(backend.FieldSeq) != want {
			continue
		}
		if err := each(Row(r)); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Export implements backend.TrailReader: the archive's records of the
// window, oldest first.
func (b *Backend) Export(ctx context.Context, from, to time.Time, nodes []string, each func(map[string]string) error) error {
	for _, r := range b.window(from, to) {
		if !inNodes(r, nodes) {
			continue
		}
		if err := each(Row(r)); err != nil {
			return err
		}
	}
	return ctx.Err()
}
