package advise

import (
	"strings"

	"github.com/connaudit/connaudit/trail"
)

// unstableLabels change with every rollout, revision, pod or job run, so a
// selector on them would stop matching the workload's next pods.
var unstableLabels = map[string]bool{
	"pod-template-hash":                        true,
	"controller-revision-hash":                 true,
	"pod-template-generation":                  true,
	"statefulset.kubernetes.io/pod-name":       true,
	"apps.kubernetes.io/pod-index":             true,
	"batch.kubernetes.io/controller-uid":       true,
	"batch.kubernetes.io/job-name":             true,
	"controller-uid":                           true,
	"job-name":                                 true,
	"batch.kubernetes.io/job-completion-index": true,
}

// StableLabels returns the labels of a pod that identify its workload over
// time.
func StableLabels(labels map[string]string) map[string]string {
	out := make(map[string]string, len(labels))
	for k, v := range labels {
		if !unstableLabels[k] {
			out[k] = v
		}
	}
	return out
}

// labelSet is the intersection of the stable labels of every pod seen for
// one workload: a selector on it matches all of them.
type labelSet struct {
	labels map[string]string
	seen   bool
}

func (s *labelSet) add(labels map[string]string) {
	stable := StableLabels(labels)
	if !s.seen {
		s.labels, s.seen = stable, true
		return
	}
	for k, v := range s.labels {
		if stable[k] != v {
			delete(s.labels, k)
		}
	}
}

// subsetOf reports whether every label of selector is in labels: a Service
// selector matches the workload.
func subsetOf(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// normalizeKind maps kubectl's names and short names of workload kinds to the
// records' lower-case kind; another kind is only lower-cased.
func normalizeKind(kind string) string {
	if k, ok := trail.ParseWorkloadKind(kind); ok {
		return string(k)
	}
	return strings.ToLower(kind)
}
