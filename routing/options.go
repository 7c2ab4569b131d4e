package routing

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/transport"
)

// Options configure a Router. Zero values pick the documented defaults;
// config keys are given as `routing.<name>` where the node exposes one.
type Options struct {
	// Identity is the node's identity. Required.
	Identity *envelope.Identity
	// Store keeps the outbox, held messages and per-peer state. Nil: a new
	// MemStore (nothing survives the process).
	Store Store
	// Rand drives jitter and every other random choice that is not a key
	// or a nonce. Nil: seeded from Entropy.
	Rand *rand.Rand
	// Entropy is the source of keys, nonces and tokens. Nil:
	// crypto/rand.Reader. meshsim injects a seeded reader.
	Entropy io.Reader
	// Logger: nil discards.
	Logger *slog.Logger

	// Caps are the capability bits this node announces. Zero: CapRelay |
	// CapStore.
	Caps uint8
	// AppData rides in announces (≤ envelope.MaxAppData bytes, e.g. a
	// display name). Zero: none.
	AppData []byte

	// AnnounceInterval is the base time between this node's own announces
	// (routing.announce_interval). On radio links the interval
	// stretches so that all known nodes' announces together stay within
	// AnnounceShare. Zero: 2h.
	AnnounceInterval time.Duration
	// AnnounceDelay bounds the random delay of the first announce after a
	// link comes up. Zero: 10 minutes on radio links (a mesh that boots at
	// once must not flood a hundred announces into the same minute), 1s on
	// others.
	AnnounceDelay time.Duration
	// AnnounceShare is the share of a radio link's airtime that announces,
	// path requests and flood relays may use (routing.announce_share),
	// divided by known nodes/100 on radio meshes of more than 100 nodes
	// (controlShare). Zero: 0.02. A fast link (not broadcast and ≥ 1
	// Mbit/s) gets 50 frames/s.
	AnnounceShare float64
	// MaxHops bounds how far an announce travels and the TTL this node puts
	// on what it originates (routing.max_hops). Zero: 16.
	MaxHops uint8
	// SuppressAfter cancels a pending flood relay on a broadcast link once
	// this many other relays of the same envelope were heard. Zero: 2.
	SuppressAfter int

	// SNRMargin is the signal margin (dB above the weakest frame ever
	// decoded on the link, about the demodulator's limit) below which a
	// radio neighbour costs extra: up to three more hops at no margin.
	// Zero: 6.
	SNRMargin float64

	// RouteLifetime is how long a route lives without being refreshed by an
	// announce or traffic; on a radio link at least three announce
	// intervals as stretched there. Zero: 3×AnnounceInterval.
	RouteLifetime time.Duration
	// PathRequestTTL scopes a path request (hops). Zero: 8.
	PathRequestTTL uint8
	// PathRequestEvery is the least time between two path requests this
	// node originates. With a radio link it stretches with the square of
	// the known nodes beyond 50 ((n/50)²: 100 nodes ×4, 500 nodes ×100), so
	// the mesh as a whole sends a bounded number of these floods (in a
	// 500-node LoRa mesh one a minute per node saturates the channel:
	// docs/routing.md). Zero: 1 minute.
	PathRequestEvery time.Duration

	// MessageTTL is how long an own message is retried and a held message
	// kept (routing.message_ttl). Zero: 24h.
	MessageTTL time.Duration
	// RetryMin is the first end-to-end retry timeout before the per-hop
	// estimate is added. Zero: 10s.
	RetryMin time.Duration
	// RetryMax caps the retry backoff. Zero: 30 minutes.
	RetryMax time.Duration

	// MaxOutbox bounds the own messages awaiting acknowledgement (total and
	// per destination: MaxOutbox/4). Zero: 256.
	MaxOutbox int
	// HeldBytes bounds the bytes of other nodes' envelopes held for
	// store-and-forward (routing.held_bytes). Zero: 256 KiB. A quarter of it
	// at most per sender hint and per destination hint.
	HeldBytes int
	// DedupEntries sizes the duplicate cache. Zero: 4096.
	DedupEntries int
	// MaxPeers bounds the known identities. The least recently useful are
	// forgotten first. Zero: 2048.
	MaxPeers int
	// VerifyPerSecond bounds signature verifications of announces from
	// unknown keys (CPU under a flood of junk). Zero: 50, burst 200.
	VerifyPerSecond int

	// CommitDelay groups writes: state changes are committed at most this
	// long after the first one, in one Store.Apply, and acknowledgements,
	// deliveries and first transmissions wait for the commit. This bounds
	// disk writes to 3600s/CommitDelay transactions an hour
	// (routing.commit_delay). Zero: commit at the end of every event, which
	// suits MemStore; the daemon uses 2s.
	CommitDelay time.Duration

	// AlwaysSendKey puts this node's public key (FlagKey, 32 bytes) in
	// every Data envelope to a peer until the peer first acknowledges.
	// Zero (false): the key is left out when the peer's own signed announce
	// reached us, since announces flood both ways and the peer then knows
	// our key too; a peer that cannot open a message because it does not
	// know the sender asks for the sender's announce with a path request
	// and opens the retry.
	AlwaysSendKey bool

	// FloodFilter decides what happens to Channel, Flood and Query
	// envelopes: link and from name the neighbour it came from (for
	// per-neighbour limits). It runs before relaying, on the router's
	// goroutine. Nil: FloodRelay for all.
	FloodFilter func(now time.Time, link LinkID, from transport.Addr, e *envelope.Envelope) FloodVerdict
}

func (o *Options) withDefaults() {
	if o.Caps == 0 {
		o.Caps = envelope.CapRelay | envelope.CapStore
	}
	if o.AnnounceInterval <= 0 {
		o.AnnounceInterval = 2 * time.Hour
	}
	if o.AnnounceShare <= 0 {
		o.AnnounceShare = 0.02
	}
	if o.MaxHops == 0 {
		o.MaxHops = 16
	}
	if o.SuppressAfter <= 0 {
		o.SuppressAfter = 2
	}
	if o.SNRMargin <= 0 {
		o.SNRMargin = 6
	}
	if o.RouteLifetime <= 0 {
		o.RouteLifetime = 3 * o.AnnounceInterval
	}
	if o.PathRequestEvery <= 0 {
		o.PathRequestEvery = time.Minute
	}
	if o.PathRequestTTL == 0 {
		o.PathRequestTTL = 8
	}
	if o.MessageTTL <= 0 {
		o.MessageTTL = 24 * time.Hour
	}
	if o.RetryMin <= 0 {
		o.RetryMin = 10 * time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 30 * time.Minute
	}
	if o.MaxOutbox <= 0 {
		o.MaxOutbox = 256
	}
	if o.HeldBytes <= 0 {
		o.HeldBytes = 256 << 10
	}
	if o.DedupEntries <= 0 {
		o.DedupEntries = 4096
	}
	if o.MaxPeers <= 0 {
		o.MaxPeers = 2048
	}
	if o.VerifyPerSecond <= 0 {
		o.VerifyPerSecond = 50
	}
}
