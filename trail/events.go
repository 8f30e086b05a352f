package trail

// Event is a record's OTLP EventName (VictoriaLogs' event_name).
type Event string

const (
	EventConnect    Event = "tcp.connect"
	EventDNSAnswer  Event = "dns.answer"
	EventAgentStart Event = "connaudit.agent.start"
	EventAgentStop  Event = "connaudit.agent.stop"
	EventLoss       Event = "connaudit.loss"
	EventDegraded   Event = "connaudit.degraded"
	EventCheckpoint Event = "connaudit.checkpoint"
)

// Events lists every event name, in README's order.
var Events = []Event{EventConnect, EventAgentStart, EventAgentStop, EventDNSAnswer, EventLoss, EventDegraded, EventCheckpoint}
