package trail

// Event is a record's OTLP EventName (VictoriaLogs' event_name).
type Event string

const (
	EventConnect   Event = "tcp.connect"
	EventDNSAnswer Event = "dns.answer"
	// EventDNSRejected is a DNS answer a process received that answered no
	// query its socket had sent: it named nothing. Forged answers show here.
	EventDNSRejected Event = "dns.rejected"
	EventAgentStart  Event = "connaudit.agent.start"
	EventAgentStop   Event = "connaudit.agent.stop"
	EventLoss        Event = "connaudit.loss"
	EventDegraded    Event = "connaudit.degraded"
	EventCheckpoint  Event = "connaudit.checkpoint"
)

// Events lists every event name, in README's order.
var Events = []Event{EventConnect, EventAgentStart, EventAgentStop, EventDNSAnswer, EventDNSRejected, EventLoss, EventDegraded, EventCheckpoint}
