package victorialogs

// SetScanLimits makes scanMissing count in fanout buckets and list ranges of
// at most list seqs, so that small instances take the paths of large ones;
// it returns a function that restores the defaults.
func SetScanLimits(fanout, list int64) (restore func()) {
	f, l := scanFanout, scanList
	scanFanout, scanList = fanout, list
	return func() { scanFanout, scanList = f, l }
}
