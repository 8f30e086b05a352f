package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Info is what a Resolver knows about one cgroup.
type Info struct {
	// ID is the cgroup v2 id: the inode number of the cgroup's directory.
	ID uint64
	// Path is relative to the v2 mount and starts with "/", as in the "0::"
	// line of /proc/<pid>/cgroup. The root cgroup is "/".
	Path string
	// Container is Parse(Path); the zero value for host cgroups.
	Container Container
}

// ResolverOptions configures a Resolver. The zero value is ready to use.
type ResolverOptions struct {
	// Root is the cgroup v2 mount point. Empty means FindV2Mount. On a
	// hybrid host, the v1 root (such as the host's /sys/fs/cgroup mounted
	// into a pod) does too: its "unified" subdirectory is used.
	Root string
	// MinRescanInterval is the least time between two walks of the hierarchy
	// that lookup misses trigger, so a flood of unknown ids cannot cause a walk
	// storm. Default 250ms.
	MinRescanInterval time.Duration
	// Retention is how long the id of a cgroup that has disappeared still
	// resolves, for events that are processed after their cgroup was removed.
	// Cgroup ids are never reused, so a stale entry is never wrong. Default 10m.
	Retention time.Duration
}

// Resolver maps cgroup v2 ids to paths and parsed containers. A lookup that
// hits the cache costs one lock-free map read and does not allocate; a miss
// walks the hierarchy again, at most once per MinRescanInterval, with
// concurrent misses waiting for the same walk. It is safe for concurrent use.
type Resolver struct {
	root        string
	minInterval time.Duration
	retention   time.Duration
	now         func() time.Time

	// cache is replaced, never modified, so readers need no lock.
	cache atomic.Pointer[map[uint64]entry]

	scanMu   sync.Mutex // serialises walks; guards lastScan
	lastScan time.Time
	missed   chan struct{} // a token when Cached missed
}

type entry struct {
	info     Info
	lastSeen int64 // unix nanoseconds of the last walk that found the cgroup
}

// NewResolver returns a Resolver for the hierarchy at opts.Root and walks it
// once, so that an unusable root fails here rather than on every lookup.
func NewResolver(opts ResolverOptions) (*Resolver, error) {
	return newResolver(opts, time.Now)
}

func newResolver(opts ResolverOptions, now func() time.Time) (*Resolver, error) {
	r := &Resolver{
		root:        opts.Root,
		minInterval: opts.MinRescanInterval,
		retention:   opts.Retention,
		now:         now,
		missed:      make(chan struct{}, 1),
	}
	root, err := V2Root(r.root)
	if err != nil {
		return nil, err
	}
	r.root = root
	if r.minInterval <= 0 {
		r.minInterval = 250 * time.Millisecond
	}
	if r.retention <= 0 {
		r.retention = 10 * time.Minute
	}
	r.cache.Store(&map[uint64]entry{})
	if err := r.Rescan(); err != nil {
		return nil, err
	}
	return r, nil
}

// Root returns the cgroup v2 mount point that r walks.
func (r *Resolver) Root() string { return r.root }

// PathOf returns the path of the cgroup with the given id, relative to the
// v2 mount.
func (r *Resolver) PathOf(id uint64) (string, bool) {
	info, ok := r.Lookup(id)
	return info.Path, ok
}

// Lookup returns the path and parsed container of the cgroup with the given
// id. On a cache miss it may walk the hierarchy (see Resolver).
func (r *Resolver) Lookup(id uint64) (Info, bool) {
	if e, ok := (*r.cache.Load())[id]; ok {
		return e.info, true
	}
	r.rescanForMiss(id)
	e, ok := (*r.cache.Load())[id]
	return e.info, ok
}

// Cached returns what the cache knows of id without blocking. A miss asks
// RunRescans to walk the hierarchy again, so a later call may find it: the
// event loop never waits for a walk.
func (r *Resolver) Cached(id uint64) (Info, bool) {
	if e, ok := (*r.cache.Load())[id]; ok {
		return e.info, true
	}
	select {
	case r.missed <- struct{}{}:
	default:
	}
	return Info{}, false
}

// RunRescans walks the hierarchy after misses of Cached, at most once per
// MinRescanInterval, until ctx is done.
func (r *Resolver) RunRescans(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.missed:
		}
		r.scanMu.Lock()
		wait := r.minInterval - r.now().Sub(r.lastScan)
		r.scanMu.Unlock()
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		// A failed walk leaves the cache as it was; misses stand.
		_ = r.Rescan()
	}
}

// rescanForMiss walks the hierarchy for an id that missed the cache, unless
// another walk found it meanwhile or the last walk is too recent.
func (r *Resolver) rescanForMiss(id uint64) {
	r.scanMu.Lock()
	defer r.scanMu.Unlock()
	if _, ok := (*r.cache.Load())[id]; ok {
		return // a walk that we waited for found it
	}
	if r.now().Sub(r.lastScan) < r.minInterval {
		return
	}
	// A failed walk leaves the cache as it was; the miss stands, and the
	// error shows in the next explicit Rescan.
	_ = r.rescanLocked()
}

// Rescan walks the hierarchy now, whatever the rate limit, and replaces the
// cache: new cgroups are added, and cgroups gone for longer than the
// retention are dropped.
func (r *Resolver) Rescan() error {
	r.scanMu.Lock()
	defer r.scanMu.Unlock()
	return r.rescanLocked()
}

func (r *Resolver) rescanLocked() error {
	now := r.now()
	r.lastScan = now
	old := *r.cache.Load()
	next := make(map[uint64]entry, len(old))
	seen := now.UnixNano()

	err := walkCgroups(r.root, func(id uint64, path string) {
		if e, ok := old[id]; ok && e.info.Path == path {
			e.lastSeen = seen // keep the parsed result
			next[id] = e
			return
		}
		c, _ := Parse(path)
		next[id] = entry{info: Info{ID: id, Path: path, Container: c}, lastSeen: seen}
	})
	if err != nil {
		return err
	}
	cutoff := now.Add(-r.retention).UnixNano()
	for id, e := range old {
		if _, ok := next[id]; !ok && e.lastSeen >= cutoff {
			next[id] = e
		}
	}
	r.cache.Store(&next)
	return nil
}

// walkCgroups calls fn with the id and relative path of every cgroup
// directory under root, root included. Directories that vanish during the
// walk are skipped: cgroups come and go all the time.
func walkCgroups(root string, fn func(id uint64, path string)) error {
	id, err := dirID(root)
	if err != nil {
		return fmt.Errorf("walk cgroups at %s: %w", root, err)
	}
	fn(id, "/")
	if err := walkChildren(root, "", fn); err != nil {
		return fmt.Errorf("walk cgroups at %s: %w", root, err)
	}
	return nil
}

// walkChildren walks the directories below dir (absolute) whose path
// relative to the root is rel ("" for the root).
func walkChildren(dir, rel string, fn func(id uint64, path string)) error {
	f, err := os.Open(dir)
	if err != nil {
		return ignoreVanished(err)
	}
	entries, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return ignoreVanished(err)
	}
	for _, de := range entries {
		if !de.IsDir() {
			continue // control files such as cgroup.procs
		}
		childDir := filepath.Join(dir, de.Name())
		childRel := rel + "/" + de.Name()
		id, err := dirID(childDir)
		if err != nil {
			if err := ignoreVanished(err); err != nil {
				return err
			}
			continue
		}
		fn(id, childRel)
		if err := walkChildren(childDir, childRel, fn); err != nil {
			return err
		}
	}
	return nil
}

// dirID returns the inode number of dir, which for a cgroup v2 directory is
// the cgroup id that bpf_get_current_cgroup_id() reports.
func dirID(dir string) (uint64, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("stat %s: no inode number", dir)
	}
	return st.Ino, nil
}

// ignoreVanished drops the errors of a cgroup removed while it was walked.
func ignoreVanished(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV) {
		return nil
	}
	return err
}
