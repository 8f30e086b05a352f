package main

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A tiny trail: one agent on node-a, a connect, a loss and a hole.
const testArchive = `{"_time":"2026-11-24T14:00:00Z","_msg":"agent started","event_name":"connaudit.agent.start","k8s.node.name":"node-a","service.instance.id":"i1","connaudit.seq":"1"}
{"_time":"2026-11-24T14:00:01Z","_msg":"curl (pid 7) -> 1.0.0.1:443 refused","event_name":"tcp.connect","k8s.node.name":"node-a","service.instance.id":"i1","connaudit.seq":"2","connaudit.source.kind":"host","process.executable.name":"curl","process.pid":"7","network.peer.address":"1.0.0.1","network.peer.port":"443","connaudit.outcome":"refused","connaudit.peer.kind":"external"}
{"_time":"2026-11-24T14:00:01Z","_msg":"curl (pid 7) -> 1.0.0.1:443 refused","event_name":"tcp.connect","k8s.node.name":"node-a","service.instance.id":"i1","connaudit.seq":"2","connaudit.source.kind":"host","process.executable.name":"curl","process.pid":"7","network.peer.address":"1.0.0.1","network.peer.port":"443","connaudit.outcome":"refused","connaudit.peer.kind":"external"}
{"_time":"2026-11-24T14:00:03Z","_msg":"agent stopped","event_name":"connaudit.agent.stop","k8s.node.name":"node-a","service.instance.id":"i1","connaudit.seq":"5"}
`

var archiveWindow = []string{"--from", "2026-11-24T14:00:00Z", "--to", "2026-11-24T14:01:00Z"}

func TestArchiveCommands(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "trail.jsonl")
	if err := os.WriteFile(path, []byte(testArchive), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, append([]string{"query", "--archive", path, "-o", "csv", "--no-headers"}, archiveWindow...)...)
	if err != nil || strings.Count(out, "1.0.0.1") != 1 || !strings.Contains(out, "seq 3..4 missing") {
		t.Errorf("query --archive: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"coverage", "--archive", path, "--strict"}, archiveWindow...)...)
	if exitCode(err) != exitGaps || !strings.Contains(out, "node-a") {
		t.Errorf("coverage --archive --strict: exit %d (%v)\n%s", exitCode(err), err, out)
	}
	// export of an archive is the archive, duplicates included.
	copyPath := filepath.Join(dir, "copy.jsonl")
	if out, err := run(t, append([]string{"export", "--archive", path, "-f", copyPath}, archiveWindow...)...); err != nil || !strings.Contains(out, "exported 4 records") {
		t.Fatalf("export: %v\n%s", err, out)
	}
	got, err := os.ReadFile(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	gotLines, wantLines := strings.Split(string(got), "\n"), strings.Split(testArchive, "\n")
	for i := range wantLines {
		var g, w map[string]string
		if i >= len(gotLines) || (wantLines[i] != "" && (json.Unmarshal([]byte(gotLines[i]), &g) != nil || json.Unmarshal([]byte(wantLines[i]), &w) != nil || !maps.Equal(g, w))) {
			t.Errorf("export wrote\n%s\nwant the records of\n%s", got, testArchive)
			break
		}
	}
	if _, err := run(t, append([]string{"query", "--archive", path, "-f"}, archiveWindow...)...); err == nil || !strings.Contains(err.Error(), "cannot be followed") {
		t.Errorf("query -f --archive: %v", err)
	}
	if _, err := run(t, "query", "--archive", path, "--server", "http://127.0.0.1:9428"); err == nil || !strings.Contains(err.Error(), "give one") {
		t.Errorf("--archive and --server: %v", err)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte(testArchive+"{oops\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "coverage", "--archive", path+","+bad); err == nil || !strings.Contains(err.Error(), "bad.jsonl, line 5") {
		t.Errorf("a malformed archive: %v", err)
	}
}
