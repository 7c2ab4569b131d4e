package routing

import (
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// DropReason says why the router discarded a frame or message.
type DropReason uint8

// Drop reasons.
const (
	DropMalformed     DropReason = iota // did not parse
	DropDuplicate                       // seen before (dedup cache)
	DropHops                            // hop limit reached
	DropTTL                             // TTL exhausted, not relayed
	DropStale                           // announce sequence not newer
	DropVerifyBudget                    // too many signatures to check right now
	DropSignature                       // bad signature or key
	DropOwn                             // our own envelope came back
	DropNoRoute                         // no route and not holdable
	DropHeldQuota                       // store-and-forward quota reached
	DropUndecryptable                   // addressed to us, no key opens it
	DropReplayStale                     // counter below the replay window
	DropBudget                          // control airtime budget exhausted
	DropSuppressed                      // flood relay cancelled: enough relays heard
	DropUnknownLink                     // event for a link that is not up
	DropQueueFull                       // duty-cycle queue full
	DropExpired                         // held message expired
	DropFiltered                        // FloodFilter said drop
	DropLinkDown                        // queued for a link that went down
	DropHeldGivenUp                     // held, forwarded maxHeldTries times, never confirmed
	numDropReasons
)

var dropNames = [numDropReasons]string{"malformed", "duplicate", "hops", "ttl", "stale", "verify-budget",
	"signature", "own", "no-route", "held-quota", "undecryptable", "replay-stale", "budget", "suppressed",
	"unknown-link", "queue-full", "expired", "filtered", "link-down", "held-given-up"}

func (d DropReason) String() string {
	if d < numDropReasons {
		return dropNames[d]
	}
	return "drop?"
}

// NumDropReasons is the number of DropReason values, for iterating.
const NumDropReasons = int(numDropReasons)

// NumKinds is the number of envelope kinds counted in Stats.
const NumKinds = 11

// Stats is a snapshot of the router's counters and sizes.
type Stats struct {
	// FramesIn and FramesOut count frames by envelope kind (index: Kind).
	FramesIn, FramesOut [NumKinds]uint64
	BytesIn, BytesOut   uint64
	// Drops counts discarded frames and messages by reason (index:
	// DropReason).
	Drops [NumDropReasons]uint64

	// Relayed counts envelopes forwarded for others (unicast and floods).
	Relayed uint64
	// Delivered counts messages handed to the application (first time);
	// DeliveredHops sums the relays their Data envelopes went through.
	Delivered, DeliveredHops uint64
	// Duplicates counts Data envelopes for us already delivered (re-acked).
	Duplicates uint64
	// Acked counts own messages acknowledged end to end; Expired those that
	// gave up; Retries the retransmissions of own messages.
	Acked, Expired, Retries uint64
	// RetriesDeferred counts retries (end-to-end, or of a held envelope)
	// postponed by the retry budget of a radio node.
	RetriesDeferred uint64
	// HopRetries counts frames sent again to a neighbour (or another) when
	// no passive hop acknowledgement was heard.
	HopRetries uint64
	// HopGiveUps counts frames whose passive acknowledgement never came
	// and that were not sent again (tries exhausted, or no route).
	HopGiveUps uint64
	// Echoes counts duplicates sent back to a neighbour that missed us
	// passing them on; AckReplays Acks a relay answered a Data envelope
	// with because it had carried that Ack already.
	Echoes, AckReplays uint64
	// HeldNotices counts held notices this node sent for envelopes it
	// holds; HeldNoticed those that reached it for its own messages.
	HeldNotices, HeldNoticed uint64
	// Loops counts unicast envelopes that came back after going further
	// than this node sent them (the route taken is then forgotten).
	Loops uint64
	// PathRequests counts path requests originated; PathReplies those
	// answered.
	PathRequests, PathReplies uint64
	// Overheard counts frames heard that were addressed to others.
	Overheard uint64
	// Verifications counts signature checks performed.
	Verifications uint64

	Peers, Routes int
	Outbox        int
	Held          int
	HeldBytes     int
	DedupEntries  int
	Breadcrumbs   int

	// ControlAirtime is the airtime spent on announces, path finding and
	// flood relays on budgeted links; DataAirtime the rest (estimates).
	ControlAirtime, DataAirtime time.Duration

	// StoreCommits counts Store.Apply calls; StoreErrors the failed ones.
	StoreCommits, StoreErrors uint64
}

func (s *Stats) in(k envelope.Kind, n int) {
	if int(k) < NumKinds {
		s.FramesIn[k]++
	}
	s.BytesIn += uint64(n)
}
