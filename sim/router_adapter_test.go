package sim

import (
	"encoding/json"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/openmeshd/meshd/routing"
)

// TestRouterScenarioFile runs the scenario named by $MESHD_SCENARIO with the
// meshd router and prints the result (a development aid; skipped without
// the variable).
func TestRouterScenarioFile(t *testing.T) {
	path := os.Getenv("MESHD_SCENARIO")
	if path == "" {
		t.Skip("set MESHD_SCENARIO to a scenario file")
	}
	sc, err := LoadScenario(path)
	if err != nil {
		t.Fatal(err)
	}
	var ro RunOptions
	if d := os.Getenv("MESHD_DURATION"); d != "" {
		v, err := time.ParseDuration(d)
		if err != nil {
			t.Fatal(err)
		}
		ro.Duration = v
	}
	var nodes []*routerNode
	var logger *slog.Logger
	if f := os.Getenv("MESHD_TRACE"); f != "" {
		w, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	res, err := Run(sc, "router", newRouterFactory(func(n *routerNode) { nodes = append(nodes, n) }, logger), ro)
	if err != nil {
		t.Fatal(err)
	}
	var sum routing.Stats
	for _, n := range nodes {
		s := n.r.Stats()
		for i := range s.FramesIn {
			sum.FramesIn[i] += s.FramesIn[i]
			sum.FramesOut[i] += s.FramesOut[i]
		}
		for i := range s.Drops {
			sum.Drops[i] += s.Drops[i]
		}
		sum.Relayed += s.Relayed
		sum.Retries += s.Retries
		sum.HopRetries += s.HopRetries
		sum.HopGiveUps += s.HopGiveUps
		sum.Delivered += s.Delivered
		sum.DeliveredHops += s.DeliveredHops
		sum.Acked += s.Acked
		sum.Expired += s.Expired
		sum.Echoes += s.Echoes
		sum.AckReplays += s.AckReplays
		sum.Loops += s.Loops
		sum.Overheard += s.Overheard
		sum.PathRequests += s.PathRequests
		sum.PathReplies += s.PathReplies
		sum.Verifications += s.Verifications
		sum.Routes += s.Routes
		sum.Peers += s.Peers
		sum.Held += s.Held
		sum.Duplicates += s.Duplicates
		sum.StoreCommits += s.StoreCommits
		sum.RetriesDeferred += s.RetriesDeferred
	}
	t.Logf("router totals: out %v in %v overheard %d relayed %d retries %d hopretries %d pathreq %d pathrep %d verif %d routes/node %d peers/node %d held %d dups %d",
		sum.FramesOut, sum.FramesIn, sum.Overheard, sum.Relayed, sum.Retries, sum.HopRetries, sum.PathRequests, sum.PathReplies, sum.Verifications,
		sum.Routes/max(1, len(nodes)), sum.Peers/max(1, len(nodes)), sum.Held, sum.Duplicates)
	t.Logf("store commits per node: %d, retries deferred %d", sum.StoreCommits/uint64(max(1, len(nodes))), sum.RetriesDeferred)
	t.Logf("delivered %d, mean relays per delivered Data %.2f (ideal path: %.2f radio hops), hop give-ups %d, acked %d, expired %d, echoes %d, ack replays %d, loops %d",
		sum.Delivered, float64(sum.DeliveredHops)/float64(max(1, sum.Delivered))+1,
		res.IdealAirtimePerDelivered/(res.Radio.DataFrameAirtimeS+res.Radio.AckFrameAirtimeS), sum.HopGiveUps, sum.Acked, sum.Expired, sum.Echoes, sum.AckReplays, sum.Loops)
	for i, d := range sum.Drops {
		if d > 0 {
			t.Logf("drop %s: %d", routing.DropReason(i), d)
		}
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("%s", b)
	if bad := sc.Check(res); len(bad) > 0 {
		t.Errorf("bounds: %v", bad)
	}
}
