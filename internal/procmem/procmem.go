// Package procmem reads how much memory a process has resident, and where,
// from /proc/<pid>/status and /proc/<pid>/smaps: for benchmarks that report
// an agent's memory.
package procmem

import (
	"fmt"
	"os"
	"strings"
)

// Usage is a process's resident memory, in bytes.
type Usage struct {
	RSS, Peak, Anon int64 // VmRSS, VmHWM, RssAnon
	Binary          int64 // resident pages of the process's executable
	BPFMaps         int64 // resident pages of its BPF map mappings
}

// Read reads pid's Usage.
func Read(pid int) (Usage, error) {
	var u Usage
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return u, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		var kb int64
		for _, f := range []struct {
			format string
			to     *int64
		}{{"VmRSS: %d kB", &u.RSS}, {"VmHWM: %d kB", &u.Peak}, {"RssAnon: %d kB", &u.Anon}} {
			if _, err := fmt.Sscanf(line, f.format, &kb); err == nil {
				*f.to = kb << 10
			}
		}
	}
	smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return u, err
	}
	var mapped string
	for _, line := range strings.Split(string(smaps), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			mapped = "" // a mapping's header line: address range, perms, offset, device, inode[, path]
			if len(fields) >= 6 {
				mapped = fields[5]
			}
			continue
		}
		var kb int64
		if _, err := fmt.Sscanf(line, "Rss: %d kB", &kb); err != nil {
			continue
		}
		switch mapped {
		case exe:
			u.Binary += kb << 10
		case "anon_inode:bpf-map":
			u.BPFMaps += kb << 10
		}
	}
	return u, nil
}
