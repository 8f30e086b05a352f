package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/connaudit/connaudit/internal/teststack"
	"github.com/connaudit/connaudit/trail"
)

// TestVerifyRealAgent: the real agent runs three instances on one node, each
// resuming the pinned capture of the one before, and its trail goes through
// the real collector into VictoriaLogs. `connaudit verify` passes it, and a
// faithful copy of it. It then catches, in copies re-ingested into other
// VictoriaLogs without the touched records: the middle instance deleted
// whole, the newest instance's tail deleted, that tail deleted together with
// its stop record, and a record replaced by a same-seq forgery.
func TestVerifyRealAgent(t *testing.T) {
	keyFile, pubFile := writeKeyPair(t)
	_, otherPub := writeKeyPair(t)
	s := startStack(t, "CONNAUDIT_HEARTBEAT_INTERVAL=1s", "CONNAUDIT_CHECKPOINT_RECORDS=50", "CONNAUDIT_SIGNING_KEY_FILE="+keyFile)
	target := newConnectTarget(t)
	ids := runInstances(t, s, target, 3)
	a, b, c := ids[0], ids[1], ids[2]
	finalTrail(t, s.vl, c, a, b)

	rows, err := s.vl.Query(t.Context(), `connaudit.seq:*`)
	if err != nil {
		t.Fatal(err)
	}
	byInstance := map[string][]map[string]string{}
	for _, r := range rows {
		byInstance[r[string(trail.KeyServiceInstanceID)]] = append(byInstance[r[string(trail.KeyServiceInstanceID)]], r)
	}
	for _, id := range ids {
		sort.Slice(byInstance[id], func(i, j int) bool { return seqOf(byInstance[id][i]) < seqOf(byInstance[id][j]) })
	}
	start := byInstance[a][0]["_time"]
	from, _ := time.Parse(time.RFC3339Nano, start)
	// Well after the last stop: an instance that has not stopped by then
	// must have gone on writing heartbeats.
	window := []string{"--from", from.Add(-time.Second).Format(time.RFC3339Nano), "--to", time.Now().Add(5 * time.Minute).UTC().Format(time.RFC3339Nano), "-o", "json"}

	for _, id := range []string{b, c} {
		st := firstOfEvent(byInstance[id], trail.EventAgentStart)
		if st[string(trail.KeyCaptureResumed)] != "true" || st[string(trail.KeyPreviousInstance)] == "" {
			t.Fatalf("start record of %s: resumed %q, previous instance %q", id, st[string(trail.KeyCaptureResumed)], st[string(trail.KeyPreviousInstance)])
		}
	}

	t.Run("intact", func(t *testing.T) {
		rep := runVerify(t, s.vl.URL(), window, 0)
		if len(rep.Instances) < 3 {
			t.Errorf("instances %+v", rep.Instances)
		}
		for _, p := range rep.Instances {
			if p.Checkpoints == 0 || !p.Stopped {
				t.Errorf("instance %s: %d checkpoints, stopped %v", p.Instance, p.Checkpoints, p.Stopped)
			}
		}
	})
	t.Run("signed with the trusted key", func(t *testing.T) {
		runVerify(t, s.vl.URL(), append([]string{"--public-key", pubFile}, window...), 0)
	})
	t.Run("not signed with the trusted key", func(t *testing.T) {
		rep := runVerify(t, s.vl.URL(), append([]string{"--public-key", otherPub}, window...), 3)
		wantFinding(t, rep, a, "unsigned")
	})
	t.Run("faithful copy", func(t *testing.T) {
		runVerify(t, copyTrail(t, rows, nil), window, 0)
	})
	t.Run("exported archive and an altered one", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "trail.jsonl")
		if exp := runConnaudit(t, nil, append([]string{"export", "--server", s.vl.URL(), "-f", path}, window[:4]...)...); exp.code != 0 {
			t.Fatalf("export: exit %d: %s", exp.code, exp.stderr)
		}
		rep := runVerifyArgs(t, append([]string{"--archive", path, "--public-key", pubFile}, window...), 0)
		if len(rep.Instances) < 3 {
			t.Errorf("verify --archive: instances %+v", rep.Instances)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		altered := false
		for i, line := range lines {
			var r map[string]string
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatal(err)
			}
			if r[string(trail.KeyServiceInstanceID)] == b && r["event_name"] == string(trail.EventConnect) && r["network.peer.port"] == strconv.Itoa(target.port) {
				r["network.peer.address"] = "203.0.113.66"
				out, _ := json.Marshal(r)
				lines[i], altered = string(out), true
				break
			}
		}
		if !altered {
			t.Fatal("no connect of the middle instance in the export")
		}
		changed := filepath.Join(t.TempDir(), "altered.jsonl")
		if err := os.WriteFile(changed, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		rep = runVerifyArgs(t, append([]string{"--archive", changed, "--public-key", pubFile}, window...), 3)
		wantFinding(t, rep, b, "altered")
	})
	t.Run("middle instance deleted", func(t *testing.T) {
		rep := runVerify(t, copyTrail(t, rows, func(r map[string]string) bool {
			return r[string(trail.KeyServiceInstanceID)] == b
		}), window, 3)
		wantFinding(t, rep, b, "deleted")
	})
	cRows := byInstance[c]
	stop := seqOf(firstOfEvent(cRows, trail.EventAgentStop))
	tailFrom := seqOf(cRows[len(cRows)-1]) - 30
	t.Run("newest tail deleted", func(t *testing.T) {
		rep := runVerify(t, copyTrail(t, rows, func(r map[string]string) bool {
			return r[string(trail.KeyServiceInstanceID)] == c && seqOf(r) >= tailFrom && seqOf(r) < stop
		}), window, 3)
		wantFinding(t, rep, c, "deleted")
	})
	t.Run("newest tail and stop record deleted", func(t *testing.T) {
		// Only once the instance's heartbeat is overdue (three intervals
		// and 30 s) can its silence be told from a live agent's.
		var kept time.Time
		for _, r := range cRows {
			if seqOf(r) < tailFrom {
				tm, _ := time.Parse(time.RFC3339Nano, r["_time"])
				kept = latestTime(kept, tm)
			}
		}
		time.Sleep(time.Until(kept.Add(35 * time.Second)))
		rep := runVerify(t, copyTrail(t, rows, func(r map[string]string) bool {
			return r[string(trail.KeyServiceInstanceID)] == c && seqOf(r) >= tailFrom
		}), window, 3)
		wantFinding(t, rep, c, "truncated")
	})
	t.Run("same-seq forgery", func(t *testing.T) {
		var victim map[string]string
		for _, r := range byInstance[b] {
			if r["event_name"] == string(trail.EventConnect) && r["network.peer.port"] == strconv.Itoa(target.port) {
				victim = r
				break
			}
		}
		forged := map[string]string{}
		for k, v := range victim {
			forged[k] = v
		}
		forged["network.peer.address"] = "203.0.113.66"
		out := copyTrail(t, append(rows, forged), func(r map[string]string) bool {
			return sameRecord(r, victim)
		})
		rep := runVerify(t, out, window, 3)
		wantFinding(t, rep, b, "altered")
	})
}

type verifyReport struct {
	Verified  bool `json:"verified"`
	Instances []struct {
		Instance    string `json:"instance"`
		Checkpoints int    `json:"checkpoints"`
		Stopped     bool   `json:"stopped"`
	} `json:"instances"`
	Findings []struct {
		Instance string `json:"instance"`
		First    uint64 `json:"seq_first"`
		Last     uint64 `json:"seq_last"`
		Kind     string `json:"kind"`
		Detail   string `json:"detail"`
	} `json:"findings"`
}

func runVerify(t *testing.T, server string, window []string, wantCode int) verifyReport {
	t.Helper()
	return runVerifyArgs(t, append([]string{"--server", server}, window...), wantCode)
}

// runVerifyArgs runs verify -o json with args (where the trail is, and the
// window) and checks its exit status.
func runVerifyArgs(t *testing.T, args []string, wantCode int) verifyReport {
	t.Helper()
	res := runConnaudit(t, nil, append([]string{"verify"}, args...)...)
	var rep verifyReport
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
		t.Fatalf("verify -o json: exit %d: %v: %s %s", res.code, err, res.stdout, res.stderr)
	}
	if res.code != wantCode || rep.Verified != (wantCode == 0) {
		t.Fatalf("verify: exit %d, want %d; verified %v; findings %+v; stderr %s", res.code, wantCode, rep.Verified, rep.Findings, res.stderr)
	}
	return rep
}

func wantFinding(t *testing.T, rep verifyReport, instance, kind string) {
	t.Helper()
	for _, f := range rep.Findings {
		t.Logf("finding: %s %d-%d %s: %s", f.Instance, f.First, f.Last, f.Kind, f.Detail)
	}
	for _, f := range rep.Findings {
		if f.Instance == instance && f.Kind == kind {
			return
		}
	}
	t.Errorf("no %s finding for instance %s: %+v", kind, instance, rep.Findings)
}

// copyTrail ingests rows, but those drop reports, into a new VictoriaLogs
// as they came back (every value a string), and returns its URL.
func copyTrail(t *testing.T, rows []map[string]string, drop func(map[string]string) bool) string {
	t.Helper()
	vl := teststack.StartVictoriaLogs(t)
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	for _, r := range rows {
		if drop != nil && drop(r) {
			continue
		}
		m := map[string]string{}
		for k, v := range r {
			if k != "_stream" && k != "_stream_id" {
				m[k] = v
			}
		}
		if err := enc.Encode(m); err != nil {
			t.Fatal(err)
		}
	}
	q := url.Values{"_time_field": {"_time"}, "_msg_field": {"_msg"}, "_stream_fields": {"service.name,k8s.node.name"}}
	resp, err := http.Post(vl.URL()+"/insert/jsonline?"+q.Encode(), "application/stream+json", &body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("jsonline ingest: %s", resp.Status)
	}
	vl.WaitFor(t, `connaudit.seq:*`, 1, time.Minute)
	return vl.URL()
}

func sameRecord(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func seqOf(r map[string]string) uint64 {
	n, _ := strconv.ParseUint(r[string(trail.KeySeq)], 10, 64)
	return n
}

func firstOfEvent(rows []map[string]string, ev trail.Event) map[string]string {
	for _, r := range rows {
		if r["event_name"] == string(ev) {
			return r
		}
	}
	return nil
}

// newestInstance waits for an agent start record of an instance not in known.
func newestInstance(t *testing.T, vl *teststack.VictoriaLogs, known []string) string {
	t.Helper()
	rows := vl.WaitFor(t, `event_name:="connaudit.agent.start"`, len(known)+1, arrivalTimeout)
	for _, r := range rows {
		id := r[string(trail.KeyServiceInstanceID)]
		isNew := true
		for _, k := range known {
			isNew = isNew && k != id
		}
		if isNew {
			return id
		}
	}
	t.Fatalf("no new agent start among %v", rows)
	return ""
}

// TestCoverageHeartbeats: an idle agent's checkpoints are its heartbeat, so
// coverage counts it as watching up to the window's end; once it is killed
// (no stop record) and its heartbeats stop, the rest of the window is a gap.
// verify says the same of its tail.
func TestCoverageHeartbeats(t *testing.T) {
	s := startStack(t, "CONNAUDIT_HEARTBEAT_INTERVAL=1s")
	id := s.instance(t)
	beats := s.vl.WaitFor(t, `event_name:="connaudit.checkpoint" service.instance.id:=`+strconv.Quote(id), 3, arrivalTimeout)
	sort.Slice(beats, func(i, j int) bool { return seqOf(beats[i]) < seqOf(beats[j]) })
	start := firstOfEvent(s.vl.WaitFor(t, `event_name:="connaudit.agent.start"`, 1, arrivalTimeout), trail.EventAgentStart)["_time"]
	lastBeat, _ := time.Parse(time.RFC3339Nano, beats[len(beats)-1]["_time"])
	to := lastBeat.Add(time.Second).UTC().Format(time.RFC3339Nano)
	res := runConnaudit(t, nil, "coverage", "--server", s.vl.URL(), "--node", "test-node", "--from", start, "--to", to, "--strict", "-o", "json")
	if res.code != 0 {
		t.Fatalf("coverage of an idle, live agent: exit %d: %s %s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, `"heartbeat_seconds":1`) {
		t.Errorf("coverage does not show the promised heartbeat: %s", res.stdout)
	}

	s.agent.Kill()
	// The window reaches into the future: the agent's silence is a gap once
	// its heartbeat is overdue (two intervals), and verify calls its tail
	// truncated once it is overdue beyond doubt (three intervals and 30 s).
	later := time.Now().Add(5 * time.Minute).UTC().Format(time.RFC3339Nano)
	if !pollUntil(arrivalTimeout, func() bool {
		res = runConnaudit(t, nil, "coverage", "--server", s.vl.URL(), "--node", "test-node", "--from", start, "--to", later, "--strict", "-o", "json")
		return res.code == 3 && strings.Contains(res.stdout, "heartbeats stopped")
	}) {
		t.Errorf("coverage after kill -9: exit %d, want 3 and a gap where the heartbeats stopped: %s %s", res.code, res.stdout, res.stderr)
	}
	var rep verifyReport
	pollUntil(arrivalTimeout, func() bool {
		r := runConnaudit(t, nil, "verify", "--server", s.vl.URL(), "--node", "test-node", "--from", start, "--to", later, "-o", "json")
		if r.code != 3 {
			time.Sleep(time.Second)
		}
		return r.code == 3
	})
	rep = runVerify(t, s.vl.URL(), []string{"--node", "test-node", "--from", start, "--to", later, "-o", "json"}, 3)
	wantFinding(t, rep, id, "truncated")
}

func latestTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// writeKeyPair writes an Ed25519 key pair as openssl writes them (PKCS #8
// and PKIX PEM) and returns the private and public key files.
func writeKeyPair(t *testing.T) (private, public string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(priv)
	pk, _ := x509.MarshalPKIXPublicKey(pub)
	dir := t.TempDir()
	private, public = filepath.Join(dir, "key.pem"), filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(private, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(public, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pk}), 0o644); err != nil {
		t.Fatal(err)
	}
	return private, public
}

// runInstances runs n agent instances one after the other on s, the first
// already started, each storing 120 connects to target before it stops, and returns
// their ids, oldest first.
func runInstances(t *testing.T, s *stack, target *connectTarget, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		if i > 0 {
			s.agent.Start()
		}
		ids = append(ids, newestInstance(t, s.vl, ids))
		target.connect(120)
		waitConnects(t, s.vl, target.port, 120*(i+1), arrivalTimeout)
		s.agent.Stop()
	}
	return ids
}
