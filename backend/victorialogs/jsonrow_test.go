package victorialogs

import (
	"encoding/json"
	"maps"
	"testing"
)

var rowCases = []string{
	`{"_time":"2026-12-07T17:00:00Z","k8s.pod.name":"web-1","connaudit.seq":"42"}`,
	`  { "a" : "1" ,	"b":"" }  `,
	`{}`,
	`{"a":"x","a":"y"}`, // the last of a duplicate key wins, as in json
	`{"msg":"say \"hi\"\n","path":"C:\\tmp\/x"}`, // escapes
	`{"emoji":"\ud83d\ude00 ü"}`,
	"{\"bad\":\"\xff\xfe\"}", // invalid UTF-8 becomes U+FFFD, as in json
	"{\"ctl\":\"a\x01b\"}",   // a raw control character: json's error
	`{"n":1}`,                // not a string: json's error for a map of strings
	`{"a":"1"`,               // cut off
	`{"a":"1"} {"b":"2"}`,    // trailing data
	`["a","b"]`,              // not an object
	`{"a":"1",}`,             // trailing comma
	`{"a" "1"}`,              // no colon
	`{"a":null}`,             // null: json leaves "" for a map value
	`{"a":"1","nested":{"b":"2"}}`,
	`{"k\u00e9y":"v\u00e4l","k\"2":"x\ty"}`,       // escaped keys and values
	`{"_msg":"curl (pid 1) \u003e 203.0.113.80"}`, // as VictoriaLogs escapes '>'
	`{"lone":"\ud83d x","pair-bad":"\ud83d\u0041","hex":"\u00zz"}`,
	`{"a":"\q"}`,
	"{\"a\":\"\\u00e9\xff\"}", // an escape and invalid UTF-8 in one string
}

// decodeRow gives json.Unmarshal's row and error (or both no error) for
// every line.
func TestDecodeRowAgreesWithEncodingJSON(t *testing.T) {
	for _, line := range rowCases {
		checkDecodeRow(t, []byte(line))
	}
}

func FuzzDecodeRow(f *testing.F) {
	for _, line := range rowCases {
		f.Add([]byte(line))
	}
	f.Fuzz(func(t *testing.T, line []byte) { checkDecodeRow(t, line) })
}

func checkDecodeRow(t *testing.T, line []byte) {
	t.Helper()
	want := map[string]string{}
	wantErr := json.Unmarshal(line, &want)
	got := map[string]string{}
	gotErr := decodeRow(line, got, map[string]string{})
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("%q: error %v, json's %v", line, gotErr, wantErr)
	}
	if wantErr == nil && !maps.Equal(got, want) {
		t.Fatalf("%q: %v, json's %v", line, got, want)
	}
}

func BenchmarkDecodeRow(b *testing.B) {
	line := []byte(`{"_time":"2026-12-07T17:00:00.123456789Z","_stream_id":"0000000000000000f3cb799511a9a44982d71f3b070a2683","event_name":"tcp.connect","service.instance.id":"74fd6773-4086-4dd8-9e2a-1749aa966fd8","connaudit.seq":"83","connaudit.chain":"f98e48e2a9e119fd1988a4137142db5aa3c28daee40520a460afe22539bc2042","k8s.node.name":"test-node","k8s.namespace.name":"default","k8s.pod.name":"web-1","network.peer.address":"203.0.113.80","network.peer.port":"8081","connaudit.outcome":"established","process.executable.name":"curl","process.pid":"4242"}`)
	for _, decode := range []struct {
		name string
		fn   func(map[string]string) error
	}{
		{"encoding-json", func(row map[string]string) error { return json.Unmarshal(line, &row) }},
		{"flat", func(row map[string]string) error { return decodeRow(line, row, keys) }},
	} {
		b.Run(decode.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := decode.fn(map[string]string{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

var keys = map[string]string{}
