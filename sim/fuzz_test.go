package sim

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseScenario: scenario files come from outside; every malformed one
// must be an error, never a panic.
func FuzzParseScenario(f *testing.F) {
	files, _ := filepath.Glob("scenarios/*.json")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"duration":"1h","groups":[{"count":2,"layout":{"kind":"line","spacing_m":10}}],"events":[{"at":"1m","kind":"link_up","link":3}]}`))
	f.Add([]byte(`{"duration":1e300,"groups":[{"count":1,"layout":{"kind":"positions","positions":[[0,0]]}}],"traffic":[{"kind":"pairs","pairs":[["a:1",0]],"interval":"1s"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sc, err := ParseScenario(b)
		if err != nil {
			return
		}
		// A valid scenario resolves its references without panicking.
		for _, tr := range sc.Traffic {
			_, _ = sc.members(tr.From)
			_, _ = sc.members(tr.To)
			for _, p := range tr.Pairs {
				_, _ = sc.resolve(p[0])
				_, _ = sc.resolve(p[1])
			}
		}
		for _, e := range sc.Events {
			_, _ = sc.members(e.Nodes)
			for _, side := range e.Sides {
				_, _ = sc.members(side)
			}
		}
		_ = sc.End()
	})
}

// FuzzDecodeFlood: the baseline's frame decoder never panics.
func FuzzDecodeFlood(f *testing.F) {
	n := &floodNode{self: 1}
	f.Add(n.encode(&floodPkt{to: 2, from: 1, id: 3, hopLimit: 3, hopStart: 3, wantAck: true, pki: true, port: floodPortText, payload: []byte("hello")}))
	f.Add(n.encode(&floodPkt{to: 2, from: 1, id: 4, hopLimit: 1, hopStart: 3, port: floodPortRouting, requestID: 3}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeFlood(b)
		if err == nil && len(p.payload) > len(b) {
			t.Fatalf("payload longer than the frame")
		}
	})
}
