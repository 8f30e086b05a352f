package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// What ociimage cannot build the way docker build would is an error that
// says what and why, never a different image.
func TestRefusals(t *testing.T) {
	ctx := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctx, "plain.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	head := "FROM golang:1.26.8-bookworm AS build\nWORKDIR /src\nFROM build AS build-bin\nRUN make bin/tool\n"
	for _, tc := range []struct{ dockerfile, target, want string }{
		{"FROM scratch AS img\nRUN echo hi\n", "img", "line 2: RUN in an image stage needs a container engine"},
		{"FROM debian:12 AS img\nCOPY plain.txt /x\n", "img", "only images FROM scratch"},
		{head + "FROM scratch AS img\nCOPY --from=build-bin /src/bin/tool /tool\n", "img", "run `make build` first"},
		{"FROM scratch AS img\nCOPY --from=nowhere /x /x\n", "img", "--from=nowhere: no such stage"},
		{"FROM scratch AS img\nCOPY --from=img /bin/true /true\n", "img", "dynamically linked"},
		{"FROM scratch AS img\nENTRYPOINT /bin/sh -c x\n", "img", "only the exec form"},
		{"FROM scratch AS img\nLABEL a=\"b\n", "img", "unterminated quote"},
		{"FROM scratch AS img\n", "other", "no stage named other"},
	} {
		path := filepath.Join(t.TempDir(), "Dockerfile")
		if err := os.WriteFile(path, []byte(tc.dockerfile), 0o644); err != nil {
			t.Fatal(err)
		}
		err := run(path, ctx, tc.target, "example.com/img:v1", filepath.Join(t.TempDir(), "out.tar"), buildArgs{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v; want %q", tc.dockerfile, err, tc.want)
		}
	}
}

func TestFullName(t *testing.T) {
	for in, want := range map[string]string{
		"victoriametrics/victoria-logs:v1.52.1": "docker.io/victoriametrics/victoria-logs:v1.52.1",
		"busybox:1.36":                          "docker.io/library/busybox:1.36",
		"ghcr.io/connaudit/connaudit:v0.1.0":    "ghcr.io/connaudit/connaudit:v0.1.0",
		"localhost/x:1":                         "localhost/x:1",
		"registry:5000/x:1":                     "registry:5000/x:1",
	} {
		if got := fullName(in); got != want {
			t.Errorf("fullName(%q) = %q; want %q", in, got, want)
		}
	}
}
