package teststack

// Small accessors for the fault tests in e2e/faults_test.go.

// Healthy reports whether the agent's /healthz answers 200: the process is
// alive and serving, whatever the state of capture and export.
func (a *Agent) Healthy() bool { _, err := a.get("/healthz"); return err == nil }

// Running reports whether the agent process is running (has not exited).
func (a *Agent) Running() bool { return a.proc.running() }

// ExitErr says why the agent process exited, or nil while it runs.
func (a *Agent) ExitErr() error { return a.proc.exitErr() }

// PID is the agent's process id, or 0 when it is not running.
func (a *Agent) PID() int { return a.proc.pid() }

// PID is the collector's process id, or 0 when it is not running.
func (c *Collector) PID() int { return c.proc.pid() }

// PID is the VictoriaLogs process id, or 0 when it is not running.
func (v *VictoriaLogs) PID() int { return v.proc.pid() }
