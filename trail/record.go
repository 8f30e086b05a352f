package trail

// RecordKey identifies a record of the trail: the service.instance.id of
// the agent instance that wrote it and its connaudit.seq, as text. A
// replayed copy (at-least-once delivery) has the same key, so a reader that
// keeps one record per key removes the duplicates.
type RecordKey struct{ Instance, Seq string }

// RecordKeyOf is the key of a record whose attributes get returns ("" when
// absent); a record without either has none (ok false) and is never a
// duplicate.
func RecordKeyOf(get func(Key) string) (k RecordKey, ok bool) {
	k = RecordKey{Instance: get(KeyServiceInstanceID), Seq: get(KeySeq)}
	return k, k.Instance != "" && k.Seq != ""
}
