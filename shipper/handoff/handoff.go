// Package handoff keeps, beside the spool, the last chain value an agent
// instance is known to have spooled, so that the next instance on the node
// names it in its start record. A verifier then finds a deleted instance,
// or a deleted tail, between two instances that both reached the trail.
package handoff

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// FileName is the state file in the spool directory; the spool ignores it.
const FileName = "chain-head.json"

// State is an instance's position in its own chain: Seq is the last seq
// known to be spooled and Chain its connaudit.chain value. A kill -9 leaves
// it at the last save, so it is a lower bound of what the instance wrote.
type State struct {
	Instance string `json:"instance"`
	Seq      uint64 `json:"seq"`
	Chain    string `json:"chain"`
}

// Load reads the state in dir; ok is false when there is none.
func Load(dir string) (s State, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if errors.Is(err, fs.ErrNotExist) {
		return s, false, nil
	}
	if err != nil {
		return s, false, fmt.Errorf("read chain head: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil || s.Instance == "" {
		return State{}, false, fmt.Errorf("chain head %s is damaged: %q", filepath.Join(dir, FileName), b)
	}
	return s, true, nil
}

// Save replaces the state in dir atomically and durably.
func Save(dir string, s State) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, FileName+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("save chain head: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, FileName))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save chain head: %w", err)
	}
	return nil
}
