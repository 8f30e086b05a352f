package k8s

import (
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

// The enricher's codecs decode what it watches, watch events and the API
// server's Status errors, and nothing else.
func TestAPISchemeHoldsTheWatchedTypesOnly(t *testing.T) {
	dec := codecs.UniversalDeserializer()
	for _, tc := range []struct {
		doc   string
		known bool
	}{
		{`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}}`, true},
		{`{"apiVersion":"v1","kind":"PodList","items":[]}`, true},
		{`{"apiVersion":"v1","kind":"Service"}`, true},
		{`{"apiVersion":"v1","kind":"Node"}`, true},
		{`{"apiVersion":"apps/v1","kind":"ReplicaSet"}`, true},
		{`{"apiVersion":"batch/v1","kind":"Job"}`, true},
		{`{"apiVersion":"v1","kind":"Status","status":"Failure","reason":"Forbidden"}`, true},
		{`{"apiVersion":"v1","kind":"ConfigMap"}`, false},
		{`{"apiVersion":"apps/v1","kind":"Deployment"}`, false},
		{`{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice"}`, false},
	} {
		_, _, err := dec.Decode([]byte(tc.doc), nil, nil)
		if (err == nil) != tc.known {
			t.Errorf("%s: decode error %v; want known %v", tc.doc, err, tc.known)
		}
	}
}

func TestNewAPIChecksTheRateLimit(t *testing.T) {
	_, err := NewAPI(&rest.Config{Host: "https://127.0.0.1:1", QPS: 5})
	if err == nil || !strings.Contains(err.Error(), "burst") {
		t.Errorf("QPS without burst: %v; want an error naming the burst", err)
	}
	if _, err := NewAPI(&rest.Config{Host: "https://127.0.0.1:1", QPS: 5, Burst: 10}); err != nil {
		t.Errorf("QPS 5, burst 10: %v", err)
	}
}
