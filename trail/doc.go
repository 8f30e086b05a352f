// Package trail is the record schema of README.md ("Record schema") in
// code: the event names, the attribute keys and the values of the enumerated
// attributes, and the rules that read them back (which owner names a source
// workload, which attribute names a peer). Every stage that writes or reads
// records refers to these names, so that a key is spelled once and the
// compiler links its writers and readers. A test keeps README's tables equal
// to Schema.
//
// It depends on nothing of connaudit's: every other package may import it.
package trail
