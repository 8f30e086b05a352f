package teststack

// Small accessors for the fault tests in e2e/faults_test.go.

// Healthy reports whether the agent's /healthz answers 200: the process is
// alive and serving, whatever the state of capture and export.
func (a *Agent) Healthy() bool { _, err := a.get("/healthz"); return err == nil }

// Running reports whether the agent process is running (has not exited).
func (a *Agent) Running() bool { return a.proc.running() }

// ExitErr says why the agent process exited, or nil while it runs.
func (a *Agent) ExitErr() error { return a.proc.exitErr() }
