package k8s

import (
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A pod with 2,000 labels would make a record of more than 1,000 fields,
// which VictoriaLogs drops while answering 200: the record carries the
// first MaxLabels labels in key order and the count of the others, for the
// connecting pod (resource) and for a peer pod alike.
func TestLabelsAreBounded(t *testing.T) {
	labels := map[string]string{}
	for i := range 2000 {
		labels[fmt.Sprintf("l%04d", i)] = "v"
	}
	var keys keyInterner
	for _, tc := range []struct {
		name, prefix, dropped string
		attrs                 map[string]string
	}{
		{"pod", "k8s.pod.label.", "connaudit.k8s.pod.labels.dropped",
			attrMap(t, newWorkload(&podMeta{namespace: "ns", name: "p", uid: "u", labels: labels}, "c", "", "", &keys).Attrs)},
		{"peer", "connaudit.peer.k8s.pod.label.", "connaudit.peer.k8s.pod.labels.dropped",
			attrMap(t, newPodPeer(&peerPod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", Labels: labels}}, Owner{}, &keys).Attrs)},
	} {
		n := 0
		for k := range tc.attrs {
			if strings.HasPrefix(k, tc.prefix) {
				n++
			}
		}
		if n != MaxLabels || tc.attrs[tc.dropped] != "1936" || tc.attrs[tc.prefix+"l0000"] != "v" || tc.attrs[tc.prefix+"l0063"] != "v" {
			t.Errorf("%s: %d labels, %s=%q; want the first %d and 1936 dropped", tc.name, n, tc.dropped, tc.attrs[tc.dropped], MaxLabels)
		}
	}
	small := attrMap(t, newWorkload(&podMeta{namespace: "ns", name: "p", uid: "u", labels: map[string]string{"app": "web"}}, "c", "", "", &keys).Attrs)
	if small["k8s.pod.label.app"] != "web" || small["connaudit.k8s.pod.labels.dropped"] != "" {
		t.Errorf("a pod with one label: %v", small)
	}
}
