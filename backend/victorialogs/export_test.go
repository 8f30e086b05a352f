package victorialogs

// SetScanLimits makes scanMissing count in fanout buckets, count distinct
// seqs span at a time and list ranges of at most list seqs, so that small
// instances take the paths of large ones; it returns a function that
// restores the defaults.
func SetScanLimits(fanout, span, list int64) (restore func()) {
	f, s, l := scanFanout, scanSpan, scanList
	scanFanout, scanSpan, scanList = fanout, span, list
	return func() { scanFanout, scanSpan, scanList = f, s, l }
}
