package kubenode

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// startDetached starts a component in its own session, with its output in
// logs/NAME.log and its pid in pids/NAME, so that it outlives the process
// that started it (make node-up) and Down finds it from the state directory.
func (n *Node) startDetached(name, path string, args []string, env []string) error {
	// /proc/PID/exe names the resolved file; Down compares with it.
	path, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	logf, err := os.OpenFile(filepath.Join(n.dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	// Reap it if it exits while we run; Down finds it by its pid file otherwise.
	go func() { _ = cmd.Wait() }()
	if err := os.WriteFile(filepath.Join(n.dir, "pids", name), []byte(strconv.Itoa(pid)+" "+path), 0o644); err != nil {
		return fmt.Errorf("start %s: record pid: %w", name, err)
	}
	return nil
}

// running reports whether the component recorded under pids/NAME runs.
func running(dir, name string) bool {
	pid, path, err := readPid(dir, name)
	return err == nil && alive(pid, path)
}

func readPid(dir, name string) (int, string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "pids", name))
	if err != nil {
		return 0, "", err
	}
	pidStr, path, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	pid, err := strconv.Atoi(pidStr)
	if err != nil {
		return 0, "", fmt.Errorf("pid file %s: %w", name, err)
	}
	return pid, path, nil
}

// alive reports whether pid runs the executable path (not a reused pid).
func alive(pid int, path string) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// A zombie (state Z) has exited.
		if i := strings.LastIndexByte(string(st), ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
			return false
		}
	}
	return strings.TrimSuffix(exe, " (deleted)") == path
}

// stopRecorded stops the component recorded under pids/NAME: SIGTERM, then
// SIGKILL after grace. A component that is not running is no error.
func stopRecorded(dir, name string, grace time.Duration) error {
	pid, path, err := readPid(dir, name)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	stopPid(pid, path, grace)
	return os.Remove(filepath.Join(dir, "pids", name))
}

func stopPid(pid int, path string, grace time.Duration) {
	if !alive(pid, path) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for alive(pid, path) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if alive(pid, path) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 50 && alive(pid, path); i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// pidsOfExe returns the processes whose executable is path (the runc
// shims that containerd started, which outlive it).
func pidsOfExe(path string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if alive(pid, path) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func output(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return string(out), nil
}
