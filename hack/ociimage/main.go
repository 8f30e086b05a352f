// Command ociimage builds the image of one Dockerfile target without a
// container engine, for `make image`: it reads the same Dockerfile that
// `docker build` reads, and writes an OCI image archive that `ctr images
// import`, `docker load`, `kind load image-archive`, `minikube image load`,
// `skopeo copy oci-archive:…` and `crane push` accept.
//
// The Dockerfile's image stages only COPY files onto scratch and set
// metadata; the build stages run Makefile targets. ociimage runs nothing: a
// file that a build stage makes under its WORKDIR is taken from the same path
// of the context, where `make` has built it on this machine, and any other
// file of a build stage (the CA bundle of its Debian base) from the same path
// of this machine. An instruction it cannot honour this way (RUN in an image
// stage, ADD, …) is an error naming it.
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type buildArgs map[string]string

func (b buildArgs) String() string { return fmt.Sprint(map[string]string(b)) }
func (b buildArgs) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("--build-arg %q: want NAME=value", s)
	}
	b[k] = v
	return nil
}

func main() {
	var (
		dockerfile = flag.String("f", "Dockerfile", "the Dockerfile")
		contextDir = flag.String("context", ".", "the build context: the repository, with `make build` done")
		target     = flag.String("target", "", "the Dockerfile stage to build")
		tag        = flag.String("t", "", "the image name and tag, e.g. ghcr.io/connaudit/connaudit:v0.1.0")
		out        = flag.String("o", "", "the OCI archive to write")
		args       = buildArgs{}
	)
	flag.Var(args, "build-arg", "NAME=value for an ARG (repeatable)")
	flag.Parse()
	if *target == "" || *tag == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: ociimage -target STAGE -t NAME:TAG -o FILE.tar [-f Dockerfile] [-context DIR] [--build-arg NAME=value]")
		os.Exit(2)
	}
	if err := run(*dockerfile, *contextDir, *target, *tag, *out, args); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

func run(dockerfile, contextDir, target, tag, out string, args buildArgs) error {
	if !strings.Contains(path.Base(tag), ":") {
		return fmt.Errorf("-t %q: want NAME:TAG", tag)
	}
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		return err
	}
	df, err := parse(string(data))
	if err != nil {
		return fmt.Errorf("%s: %w", dockerfile, err)
	}
	img, err := build(df, contextDir, target, args)
	if err != nil {
		return fmt.Errorf("%s, target %s: %w", dockerfile, target, err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return writeArchive(img, tag, out)
}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case
	args string
}

type stage struct {
	name, from string
	body       []instruction
}

type dockerfile struct {
	globalArgs []instruction
	stages     []*stage
}

func parse(text string) (*dockerfile, error) {
	df := &dockerfile{}
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		if body, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, rest, _ := strings.Cut(cur.String(), " ")
		in := instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(rest)}
		cur.Reset()
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			st := &stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			} else if len(f) != 1 {
				return nil, fmt.Errorf("line %d: FROM %s: want FROM IMAGE [AS NAME]", in.line, in.args)
			}
			df.stages = append(df.stages, st)
			continue
		}
		if len(df.stages) == 0 {
			if in.cmd != "ARG" {
				return nil, fmt.Errorf("line %d: %s before FROM", in.line, in.cmd)
			}
			df.globalArgs = append(df.globalArgs, in)
			continue
		}
		st := df.stages[len(df.stages)-1]
		st.body = append(st.body, in)
	}
	return df, nil
}

func (df *dockerfile) stage(name string) *stage {
	for _, st := range df.stages {
		if st.name == name {
			return st
		}
	}
	return nil
}

// chain returns name's stage and the stages it is built FROM, base first;
// base is the image of the first one (scratch for ours).
func (df *dockerfile) chain(name string) (stages []*stage, base string) {
	for st := df.stage(name); st != nil; st = df.stage(st.from) {
		stages = append([]*stage{st}, stages...)
		base = st.from
	}
	return stages, base
}

// workdir is the WORKDIR a stage builds in, inherited from its bases.
func (df *dockerfile) workdir(name string) string {
	stages, _ := df.chain(name)
	dir := "/"
	for _, st := range stages {
		for _, in := range st.body {
			if in.cmd == "WORKDIR" {
				dir = path.Join(dir, in.args)
			}
		}
	}
	return dir
}

// file is one file of a layer.
type file struct {
	src  string // on this machine
	dest string // absolute, in the image
}

func build(df *dockerfile, contextDir, target string, buildArgs buildArgs) (v1.Image, error) {
	stages, base := df.chain(target)
	if len(stages) == 0 {
		return nil, fmt.Errorf("no stage named %s", target)
	}
	if base != "scratch" {
		return nil, fmt.Errorf("built FROM %s: only images FROM scratch can be built without a container engine", base)
	}
	vars := map[string]string{}
	declare := func(in instruction) {
		name, def, _ := strings.Cut(in.args, "=")
		if v, ok := buildArgs[name]; ok {
			vars[name] = v
		} else {
			vars[name] = def
		}
	}
	for _, in := range df.globalArgs {
		declare(in)
	}
	expand := func(s string) string { return os.Expand(s, func(k string) string { return vars[k] }) }

	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	cfg := v1.Config{Labels: map[string]string{}}
	for _, st := range stages {
		for _, in := range st.body {
			switch in.cmd {
			case "ARG":
				declare(in)
			case "LABEL":
				kvs, err := keyValues(expand(in.args))
				if err != nil {
					return nil, fmt.Errorf("line %d: LABEL: %w", in.line, err)
				}
				for _, kv := range kvs {
					cfg.Labels[kv[0]] = kv[1]
				}
			case "ENV":
				kvs, err := keyValues(expand(in.args))
				if err != nil {
					return nil, fmt.Errorf("line %d: ENV: %w", in.line, err)
				}
				for _, kv := range kvs {
					cfg.Env = append(cfg.Env, kv[0]+"="+kv[1])
				}
			case "USER":
				cfg.User = expand(in.args)
			case "WORKDIR":
				cfg.WorkingDir = path.Join("/", cfg.WorkingDir, expand(in.args))
			case "EXPOSE":
				if cfg.ExposedPorts == nil {
					cfg.ExposedPorts = map[string]struct{}{}
				}
				for _, p := range strings.Fields(expand(in.args)) {
					if !strings.Contains(p, "/") {
						p += "/tcp"
					}
					cfg.ExposedPorts[p] = struct{}{}
				}
			case "ENTRYPOINT", "CMD":
				var argv []string
				if err := json.Unmarshal([]byte(in.args), &argv); err != nil {
					return nil, fmt.Errorf("line %d: %s %s: only the exec form (a JSON array) is supported", in.line, in.cmd, in.args)
				}
				if in.cmd == "ENTRYPOINT" {
					cfg.Entrypoint, cfg.Cmd = argv, nil // as Docker: a new ENTRYPOINT resets CMD
				} else {
					cfg.Cmd = argv
				}
			case "COPY":
				files, err := copySources(df, contextDir, expand(in.args))
				if err != nil {
					return nil, fmt.Errorf("line %d: COPY %s: %w", in.line, in.args, err)
				}
				layer, err := tarLayer(files)
				if err != nil {
					return nil, fmt.Errorf("line %d: COPY %s: %w", in.line, in.args, err)
				}
				if img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer,
					History: v1.History{CreatedBy: "COPY " + in.args, Created: v1.Time{Time: epoch}}}); err != nil {
					return nil, err
				}
			default:
				return nil, fmt.Errorf("line %d: %s in an image stage needs a container engine; build it with `make image-docker`", in.line, in.cmd)
			}
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = runtime.GOARCH, "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

// epoch is every time stamp of the image, so that the same files make the
// same image.
var epoch = time.Unix(0, 0).UTC()

// keyValues splits `k1="v 1" k2=v2` into pairs.
func keyValues(s string) ([][2]string, error) {
	var out [][2]string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		k, rest, ok := strings.Cut(s, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("%q: want KEY=VALUE pairs", s)
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := 1
			for end < len(rest) && (rest[end] != '"' || rest[end-1] == '\\') {
				end++
			}
			if end == len(rest) {
				return nil, fmt.Errorf("%q: unterminated quote", s)
			}
			v = strings.ReplaceAll(rest[1:end], `\"`, `"`)
			rest = rest[end+1:]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		out = append(out, [2]string{k, v})
		s = rest
	}
	return out, nil
}

// copySources resolves the sources of one COPY to files of this machine.
func copySources(df *dockerfile, contextDir, args string) ([]file, error) {
	f := strings.Fields(args)
	from := ""
	for len(f) > 0 && strings.HasPrefix(f[0], "--") {
		v, ok := strings.CutPrefix(f[0], "--from=")
		if !ok {
			return nil, fmt.Errorf("option %s is not supported", f[0])
		}
		from = v
		f = f[1:]
	}
	if len(f) < 2 {
		return nil, errors.New("want SOURCE... DEST")
	}
	dest, srcs := f[len(f)-1], f[:len(f)-1]
	if len(srcs) > 1 && !strings.HasSuffix(dest, "/") {
		return nil, fmt.Errorf("several sources need a DEST ending in /")
	}
	var files []file
	for _, src := range srcs {
		if strings.ContainsAny(src, "*?[") {
			return nil, fmt.Errorf("%s: wildcards are not supported", src)
		}
		local := filepath.Join(contextDir, src)
		if from != "" {
			if df.stage(from) == nil {
				return nil, fmt.Errorf("--from=%s: no such stage", from)
			}
			// What the build stage made in its WORKDIR is the context's,
			// where `make` built it; the rest is its base system's, this
			// machine's (Debian, as the build image is).
			local = src
			if rel, ok := strings.CutPrefix(src, df.workdir(from)+"/"); ok {
				local = filepath.Join(contextDir, rel)
			}
		}
		info, err := os.Stat(local)
		if err != nil {
			hint := ""
			if from != "" {
				hint = " (stage " + from + " makes it: run `make build` first)"
			}
			return nil, fmt.Errorf("%s: %w%s", src, err, hint)
		}
		if !info.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: only regular files are supported", src)
		}
		if err := static(local); err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		d := dest
		if strings.HasSuffix(d, "/") {
			d = path.Join(d, path.Base(src))
		}
		files = append(files, file{src: local, dest: path.Clean("/" + d)})
	}
	return files, nil
}

// static fails for a dynamically linked executable, which would not start on
// a base without a C library.
func static(p string) error {
	f, err := elf.Open(p)
	if err != nil {
		return nil // not an executable
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked, and the image has no C library: build it with CGO_ENABLED=0 (make build does)", p)
		}
	}
	return nil
}

// tarLayer is a layer of the files and their parent directories, owned by
// root as COPY makes them, with the files' modes.
func tarLayer(files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		var parents []string
		for d := path.Dir(f.dest); d != "/"; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
				return nil, err
			}
		}
		data, err := os.ReadFile(f.src)
		if err != nil {
			return nil, err
		}
		info, err := os.Stat(f.src)
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.dest, "/"), Mode: int64(info.Mode().Perm()),
			Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	raw := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// writeArchive writes img as an OCI image layout in a tar, named tag, with
// a Docker manifest.json beside it (as `docker save` writes since Docker 25),
// so that tools that read either format load it under that name.
func writeArchive(img v1.Image, tag, out string) error {
	dir, err := os.MkdirTemp("", "ociimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	full := fullName(tag)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          full,
		"org.opencontainers.image.ref.name": tag[strings.LastIndex(tag, ":")+1:],
	})); err != nil {
		return err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	manifest := []map[string]any{{"Config": "blobs/sha256/" + cfgName.Hex, "RepoTags": []string{tag}, "Layers": []string{}}}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		manifest[0]["Layers"] = append(manifest[0]["Layers"].([]string), "blobs/sha256/"+d.Hex)
	}
	mj, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), mj, 0o644); err != nil {
		return err
	}

	var names []string
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			names = append(names, rel)
		}
		return err
	}); err != nil {
		return err
	}
	slices.Sort(names)
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(data)), ModTime: epoch})
		}
		if err == nil {
			_, err = tw.Write(data)
		}
		if err != nil {
			f.Close()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// fullName is tag as containerd names images: Docker Hub's names with their
// docker.io/ (and library/) prefix.
func fullName(tag string) string {
	first, _, hasSlash := strings.Cut(tag, "/")
	if hasSlash && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return tag
	}
	if !hasSlash {
		tag = "library/" + tag
	}
	return "docker.io/" + tag
}
