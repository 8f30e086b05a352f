package deploy

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/connaudit/connaudit/internal/teststack"
)

// dockerStage is one FROM of the Dockerfile.
type dockerStage struct {
	name, from string
	makes      []string          // targets of RUN make
	copies     []dockerCopy      // COPY instructions
	entrypoint []string          // ENTRYPOINT, exec form
	labels     map[string]string // LABEL keys
}

type dockerCopy struct {
	from      string // stage, or "" for the build context
	src, dest string
}

func parseDockerfile(t *testing.T, path string) []*dockerStage {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err, "read Dockerfile")
	// Join continuation lines, drop comments.
	var lines []string
	var cur strings.Builder
	for line := range strings.SplitSeq(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if body, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	var stages []*dockerStage
	for _, line := range lines {
		inst, rest, _ := strings.Cut(line, " ")
		f := strings.Fields(rest)
		if strings.ToUpper(inst) == "FROM" {
			st := &dockerStage{from: f[0], labels: map[string]string{}}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile: %s before FROM", inst)
		}
		st := stages[len(stages)-1]
		switch strings.ToUpper(inst) {
		case "RUN":
			if f[0] == "make" {
				for _, a := range f[1:] {
					if !strings.Contains(a, "=") {
						st.makes = append(st.makes, a)
					}
				}
			}
		case "COPY":
			var c dockerCopy
			args := f
			for len(args) > 0 && strings.HasPrefix(args[0], "--") {
				if v, ok := strings.CutPrefix(args[0], "--from="); ok {
					c.from = v
				}
				args = args[1:]
			}
			c.dest = args[len(args)-1]
			for _, src := range args[:len(args)-1] {
				c.src = src
				st.copies = append(st.copies, c)
			}
		case "ENTRYPOINT":
			must(t, json.Unmarshal([]byte(rest), &st.entrypoint), "ENTRYPOINT %s (use the exec form)", rest)
		case "LABEL":
			for _, kv := range regexp.MustCompile(`([\w.-]+)="[^"]*"`).FindAllStringSubmatch(rest, -1) {
				st.labels[kv[1]] = ""
			}
		}
	}
	return stages
}

// The Dockerfile builds with the Makefile targets CI runs, from paths that
// exist, on pinned bases; `make image` builds its targets under the image
// names the manifests use; and each workload runs the binary its image has.
func TestDockerfile(t *testing.T) {
	root := teststack.RepoRoot(t)
	stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	byName := map[string]*dockerStage{}
	for _, st := range stages {
		if st.name != "" {
			byName[st.name] = st
		}
	}

	// What `make build` (a prerequisite of `make test`, which CI runs) builds.
	buildTargets := makePrereqs(t, root, "build")
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	must(t, err, "read go.mod")
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)[1]

	for _, st := range stages {
		if _, ok := byName[st.from]; !ok && st.from != "scratch" {
			if !regexp.MustCompile(`:(\d+\.\d+\.\d+)[\w.-]*(@sha256:[0-9a-f]{64})?$|@sha256:[0-9a-f]{64}$`).MatchString(st.from) {
				t.Errorf("stage %s: base %s is not pinned to an exact version or digest", st.name, st.from)
			}
			if strings.HasPrefix(st.from, "golang:") && !strings.HasPrefix(st.from, "golang:"+string(goVersion)+"-") {
				t.Errorf("stage %s: %s, but go.mod wants go %s", st.name, st.from, goVersion)
			}
		}
		for _, target := range st.makes {
			if !slices.Contains(buildTargets, target) {
				t.Errorf("stage %s: make %s is not a target of `make build` %v, which CI runs", st.name, target, buildTargets)
			}
		}
		for _, c := range st.copies {
			switch {
			case c.from == "":
				if _, err := os.Stat(filepath.Join(root, c.src)); err != nil {
					t.Errorf("stage %s: COPY %s: not in the repository", st.name, c.src)
				}
				if ignored(t, root, c.src) {
					t.Errorf("stage %s: COPY %s, but .dockerignore leaves it out of the build context", st.name, c.src)
				}
			case byName[c.from] == nil:
				t.Errorf("stage %s: COPY --from=%s: no such stage", st.name, c.from)
			case strings.HasPrefix(c.src, "/src/"):
				rel := strings.TrimPrefix(c.src, "/src/")
				if !slices.Contains(makesOf(byName, c.from), rel) {
					t.Errorf("stage %s: COPY --from=%s %s: that stage does not make %s", st.name, c.from, c.src, rel)
				}
			case c.src != "/etc/ssl/certs/ca-certificates.crt":
				t.Errorf("stage %s: COPY --from=%s %s: unexpected path", st.name, c.from, c.src)
			}
		}
	}

	// `make image-docker`: which target becomes which image (`make image`
	// builds the same without Docker: TestImages).
	out, err := exec.Command("make", "-s", "-n", "-C", root, "image-docker", "VERSION=v0.0.0-test").Output()
	must(t, err, "make -n image-docker")
	images := map[string]string{} // image name without tag -> Dockerfile target
	tags := map[string]string{}   // image name -> tag `make image` gives it
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		target := regexp.MustCompile(`--target (\S+)`).FindStringSubmatch(line)
		tag := regexp.MustCompile(` -t (\S+):(\S+) `).FindStringSubmatch(line)
		if !strings.HasPrefix(line, "docker build ") || target == nil || tag == nil {
			t.Fatalf("make image-docker runs %q; want docker build --target T -t NAME:TAG", line)
		}
		st := byName[target[1]]
		if st == nil {
			t.Fatalf("make image-docker builds --target %s: no such stage", target[1])
		}
		if len(st.entrypoint) == 0 || !slices.ContainsFunc(st.copies, func(c dockerCopy) bool { return c.dest == st.entrypoint[0] }) {
			t.Errorf("target %s: ENTRYPOINT %v is not a file the stage copies in", st.name, st.entrypoint)
		}
		for _, l := range []string{"org.opencontainers.image.title", "org.opencontainers.image.source", "org.opencontainers.image.version"} {
			if _, ok := st.labels[l]; !ok {
				t.Errorf("target %s has no label %s", st.name, l)
			}
		}
		images[tag[1]] = target[1]
		tags[tag[1]] = tag[2]
	}

	// The manifests run those images, and each workload the binary it expects.
	wantBinary := map[string]string{"agent": "connaudit-agent", "collector": "otelcol-connaudit", "victorialogs": "victoria-logs-prod"}
	for _, dir := range overlays {
		for name, spec := range render(t, dir).podSpecs() {
			for _, c := range spec.Containers {
				ref, tag, _ := strings.Cut(c.Image, ":")
				target, ok := images[ref]
				if !ok {
					t.Errorf("%s: %s runs %s, which `make image-docker` does not build (%v)", dir, name, c.Image, images)
					continue
				}
				// The release tag is chosen at release; VictoriaLogs' is its version.
				if target == "victorialogs" && tag != tags[ref] {
					t.Errorf("%s: %s runs %s; make image tags it %s", dir, name, c.Image, tags[ref])
				}
				if ep := byName[target].entrypoint; filepath.Base(ep[0]) != wantBinary[target] {
					t.Errorf("%s: %s runs image target %s, whose ENTRYPOINT is %v", dir, name, target, ep)
				}
			}
		}
	}
	if len(images) != len(wantBinary) {
		t.Errorf("make image-docker builds %v; want the agent, collector and victorialogs targets", images)
	}
}

// makesOf returns the make targets of a stage and of the stages it is built FROM.
func makesOf(byName map[string]*dockerStage, name string) []string {
	var all []string
	for st := byName[name]; st != nil; st = byName[st.from] {
		all = append(all, st.makes...)
	}
	return all
}

// makePrereqs returns the prerequisites of a Makefile rule.
func makePrereqs(t *testing.T, root, rule string) []string {
	t.Helper()
	out, err := exec.Command("make", "-s", "-p", "-n", "-C", root, "-f", "Makefile", rule).Output()
	must(t, err, "make -p %s", rule)
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if deps, ok := strings.CutPrefix(sc.Text(), rule+": "); ok {
			return strings.Fields(deps)
		}
	}
	t.Fatalf("no rule %s in the Makefile", rule)
	return nil
}

// ignored reports whether .dockerignore leaves path (relative) out.
func ignored(t *testing.T, root, path string) bool {
	data, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	must(t, err, "read .dockerignore")
	if path == "." {
		return false
	}
	for p := range strings.SplitSeq(string(data), "\n") {
		p = strings.TrimSuffix(strings.TrimSpace(p), "/")
		if p != "" && (path == p || strings.HasPrefix(path, p+"/")) {
			return true
		}
	}
	return false
}
