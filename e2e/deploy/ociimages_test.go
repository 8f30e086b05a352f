package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/connaudit/connaudit/internal/teststack"
	corev1 "k8s.io/api/core/v1"
)

// ociImage is an image archive as a container runtime reads it.
type ociImage struct {
	name     string // io.containerd.image.name of index.json
	repoTags []string
	config   struct {
		OS, Architecture string
		Config           struct {
			User         string
			Entrypoint   []string
			Cmd          []string
			ExposedPorts map[string]struct{}
			Labels       map[string]string
		}
	}
	rootfs string
	files  []string // regular files of the rootfs, absolute
}

// readOCIArchive reads an OCI image archive the way `ctr images import` does
// (index.json, then the manifest, its config and layers, each checked
// against its digest) and unpacks the layers into a directory.
func readOCIArchive(t *testing.T, archive string) *ociImage {
	t.Helper()
	f, err := os.Open(archive)
	must(t, err, "open %s", archive)
	defer f.Close()
	entries := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err, "read %s", archive)
		data, err := io.ReadAll(tr)
		must(t, err, "read %s of %s", h.Name, archive)
		entries[h.Name] = data
	}
	blob := func(digest string) []byte {
		hexDigest, ok := strings.CutPrefix(digest, "sha256:")
		data, found := entries["blobs/sha256/"+hexDigest]
		if !ok || !found {
			t.Fatalf("%s: no blob %s", archive, digest)
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != hexDigest {
			t.Fatalf("%s: blob %s does not match its digest", archive, digest)
		}
		return data
	}
	var ociLayout struct{ ImageLayoutVersion string }
	if err := json.Unmarshal(entries["oci-layout"], &ociLayout); err != nil || ociLayout.ImageLayoutVersion != "1.0.0" {
		t.Errorf("%s: oci-layout %q", archive, entries["oci-layout"])
	}
	var index struct {
		Manifests []struct {
			MediaType, Digest string
			Annotations       map[string]string
		}
	}
	must(t, json.Unmarshal(entries["index.json"], &index), "%s: index.json", archive)
	if len(index.Manifests) != 1 || index.Manifests[0].MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Fatalf("%s: index.json holds %+v; want one image manifest", archive, index.Manifests)
	}
	img := &ociImage{name: index.Manifests[0].Annotations["io.containerd.image.name"], rootfs: t.TempDir()}
	must(t, os.Chmod(img.rootfs, 0o755), "open the root to every user") // as a runtime's rootfs is
	var manifest struct {
		Config struct{ MediaType, Digest string }
		Layers []struct{ MediaType, Digest string }
	}
	must(t, json.Unmarshal(blob(index.Manifests[0].Digest), &manifest), "%s: manifest", archive)
	must(t, json.Unmarshal(blob(manifest.Config.Digest), &img.config), "%s: config", archive)
	var docker []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	must(t, json.Unmarshal(entries["manifest.json"], &docker), "%s: manifest.json", archive)
	if len(docker) != 1 || docker[0].Config != "blobs/sha256/"+strings.TrimPrefix(manifest.Config.Digest, "sha256:") || len(docker[0].Layers) != len(manifest.Layers) {
		t.Errorf("%s: manifest.json %+v does not describe the OCI manifest's image", archive, docker)
	} else {
		img.repoTags = docker[0].RepoTags
	}

	for _, l := range manifest.Layers {
		if l.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
			t.Fatalf("%s: layer media type %s", archive, l.MediaType)
		}
		zr, err := gzip.NewReader(bytes.NewReader(blob(l.Digest)))
		must(t, err, "%s: layer %s", archive, l.Digest)
		lr := tar.NewReader(zr)
		for {
			h, err := lr.Next()
			if err == io.EOF {
				break
			}
			must(t, err, "%s: layer %s", archive, l.Digest)
			if h.Uid != 0 || h.Gid != 0 {
				t.Errorf("%s: %s owned by %d:%d; COPY makes root's files", archive, h.Name, h.Uid, h.Gid)
			}
			target := filepath.Join(img.rootfs, filepath.Clean("/"+h.Name))
			switch h.Typeflag {
			case tar.TypeDir:
				must(t, os.MkdirAll(target, fs.FileMode(h.Mode)), "mkdir %s", h.Name)
			case tar.TypeReg:
				data, err := io.ReadAll(lr)
				must(t, err, "read %s", h.Name)
				must(t, os.MkdirAll(filepath.Dir(target), 0o755), "mkdir for %s", h.Name)
				must(t, os.WriteFile(target, data, fs.FileMode(h.Mode)), "write %s", h.Name)
				img.files = append(img.files, "/"+path.Clean(h.Name))
			default:
				t.Errorf("%s: %s has tar type %c", archive, h.Name, h.Typeflag)
			}
		}
	}
	slices.Sort(img.files)
	return img
}

// run starts argv in the image's rootfs as uid:gid, as a runtime would
// start the container's process, and returns its output.
func (img *ociImage) run(t *testing.T, uid, gid uint32, argv ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: img.rootfs, Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// `make image` and `make image-victorialogs` build, without a container
// engine, the images k8s/deploy runs, under the names it renders; each image
// holds exactly its files, and its entrypoint, started in its root as the
// user the workload runs as, is the binary the workload expects.
func TestImages(t *testing.T) {
	root := teststack.RepoRoot(t)
	// The release the kustomization names.
	var agentImage string
	for _, c := range render(t, "k8s/deploy").daemonSet(t, "connaudit-agent").Spec.Template.Spec.Containers {
		agentImage = c.Image
	}
	registry, version := path.Dir(agentImage), agentImage[strings.LastIndex(agentImage, ":")+1:]
	cmd := exec.Command("make", "-s", "-C", root, "image", "image-victorialogs", "IMAGE_REGISTRY="+registry, "VERSION="+version)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix:///nonexistent") // no engine, as on this machine
	out, err := cmd.CombinedOutput()
	must(t, err, "make image image-victorialogs: %s", out)

	images := map[string]*ociImage{} // by name as the manifests render it
	for _, file := range []string{"connaudit.tar", "otelcol-connaudit.tar", "victoria-logs.tar"} {
		img := readOCIArchive(t, filepath.Join(root, "bin", "images", file))
		if len(img.repoTags) != 1 || fullImageName(img.repoTags[0]) != img.name {
			t.Errorf("%s: named %s in index.json, %v in manifest.json", file, img.name, img.repoTags)
		}
		if img.config.OS != "linux" || img.config.Architecture == "" {
			t.Errorf("%s: platform %s/%s", file, img.config.OS, img.config.Architecture)
		}
		images[img.name] = img
	}

	type want struct {
		files    []string
		user     string
		check    []string // arguments after the entrypoint, and what the output must hold
		contains string
	}
	wants := map[string]want{
		"connaudit": {files: []string{"/etc/ssl/certs/ca-certificates.crt", "/usr/local/bin/connaudit-agent"}, user: "0:0",
			check: []string{"version"}, contains: version},
		"otelcol-connaudit": {files: []string{"/etc/otelcol-connaudit/config.yaml", "/etc/ssl/certs/ca-certificates.crt", "/usr/local/bin/otelcol-connaudit"}, user: "10001:10001",
			check: []string{"validate", "--config=/etc/otelcol-connaudit/config.yaml"}},
		"victoria-logs": {files: []string{"/etc/ssl/certs/ca-certificates.crt", "/victoria-logs-prod"}, user: "",
			check: []string{"-help"}, contains: "victoria-logs is a log management"}, // -version prints nothing in a build from source
	}
	seen := map[string]bool{}
	for _, dir := range overlays {
		for workload, spec := range render(t, dir).podSpecs() {
			for _, c := range spec.Containers {
				img := images[fullImageName(c.Image)]
				if img == nil {
					t.Errorf("%s: %s runs %s, which make image does not build", dir, workload, c.Image)
					continue
				}
				if seen[c.Image] {
					continue
				}
				seen[c.Image] = true
				w := wants[strings.TrimSuffix(path.Base(img.name), ":"+img.name[strings.LastIndex(img.name, ":")+1:])]
				if !slices.Equal(img.files, w.files) {
					t.Errorf("%s holds %v; want %v", c.Image, img.files, w.files)
				}
				if img.config.Config.User != w.user {
					t.Errorf("%s: USER %q; want %q", c.Image, img.config.Config.User, w.user)
				}
				if len(c.Command) > 0 || len(img.config.Config.Entrypoint) == 0 {
					t.Errorf("%s: %s sets command %v over ENTRYPOINT %v", dir, workload, c.Command, img.config.Config.Entrypoint)
					continue
				}
				// The image's USER, unless the pod's or the container's
				// securityContext says otherwise.
				var uid, gid int64
				if u, g, ok := strings.Cut(img.config.Config.User, ":"); ok {
					uid, _ = strconv.ParseInt(u, 10, 32)
					gid, _ = strconv.ParseInt(g, 10, 32)
				}
				for _, sc := range []*corev1.SecurityContext{podLevel(spec.SecurityContext), c.SecurityContext} {
					if sc != nil && sc.RunAsUser != nil {
						uid = *sc.RunAsUser
					}
					if sc != nil && sc.RunAsGroup != nil {
						gid = *sc.RunAsGroup
					}
				}
				out, err := img.run(t, uint32(uid), uint32(gid), append([]string{img.config.Config.Entrypoint[0]}, w.check...)...)
				if err != nil || !strings.Contains(out, w.contains) {
					t.Errorf("%s: %v %v as %d:%d: %v\n%s", c.Image, img.config.Config.Entrypoint, w.check, uid, gid, err, out)
				}
			}
		}
	}
	if len(seen) != len(images) {
		t.Errorf("the manifests run %v; make image builds %d images", seen, len(images))
	}
}

// podLevel is the part of a pod's security context that containers inherit.
func podLevel(psc *corev1.PodSecurityContext) *corev1.SecurityContext {
	if psc == nil {
		return nil
	}
	return &corev1.SecurityContext{RunAsUser: psc.RunAsUser, RunAsGroup: psc.RunAsGroup}
}

// fullImageName is an image reference as containerd names it.
func fullImageName(ref string) string {
	first, _, hasSlash := strings.Cut(ref, "/")
	if hasSlash && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return ref
	}
	if !hasSlash {
		ref = "library/" + ref
	}
	return "docker.io/" + ref
}
