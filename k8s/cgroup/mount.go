package cgroup

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// FindV2Mount returns the mount point of the cgroup v2 hierarchy, read from
// /proc/self/mountinfo. Pure v2 nodes mount it at /sys/fs/cgroup, hybrid
// ones at /sys/fs/cgroup/unified.
func FindV2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup v2 mount: %w", err)
	}
	defer f.Close()
	mnt, err := parseMountinfo(f)
	if err != nil {
		return "", fmt.Errorf("find cgroup v2 mount: %w", err)
	}
	return mnt, nil
}

// parseMountinfo returns the mount point of the first cgroup2 mount, preferring
// one that shows the whole hierarchy (mount root "/") over a bind mount of a
// subtree. See proc(5) for the line format:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
func parseMountinfo(r io.Reader) (string, error) {
	var subtree string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		pre, post, ok := bytes.Cut(line, []byte(" - "))
		if !ok {
			continue
		}
		fields := bytes.Fields(pre)
		after := bytes.Fields(post)
		if len(fields) < 5 || len(after) < 1 || string(after[0]) != "cgroup2" {
			continue
		}
		mnt := unescapeOctal(string(fields[4]))
		if string(fields[3]) == "/" {
			return mnt, nil
		}
		if subtree == "" {
			subtree = mnt
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	if subtree == "" {
		return "", fmt.Errorf("no cgroup2 mount in mountinfo")
	}
	return subtree, nil
}

// unescapeOctal undoes the \NNN escaping that mountinfo applies to space,
// tab, newline and backslash in paths.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// V2Root returns the cgroup v2 hierarchy to watch: configured (the host's
// cgroup v2 mount, or its whole cgroup filesystem on a hybrid host, whose
// "unified" directory is used), else the mount in /proc/self/mountinfo. In a
// container with its own cgroup namespace, that mount is the container's own
// cgroup only; the host's must be configured.
func V2Root(configured string) (string, error) {
	if configured == "" {
		return FindV2Mount()
	}
	return unifiedUnder(configured), nil
}

// unifiedUnder returns root's "unified" subdirectory when root is not a
// cgroup v2 mount and that subdirectory is: the v2 hierarchy of a hybrid
// host. Otherwise it returns root.
func unifiedUnder(root string) string {
	if isCgroup2(root) {
		return root
	}
	if unified := filepath.Join(root, "unified"); isCgroup2(unified) {
		return unified
	}
	return root
}

func isCgroup2(dir string) bool {
	var fs unix.Statfs_t
	return unix.Statfs(dir, &fs) == nil && fs.Type == unix.CGROUP2_SUPER_MAGIC
}
