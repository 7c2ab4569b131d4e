package node

// FAPP (free appointment propagation, docs/fapp.md) wired into the node:
// the fapp core (sans-IO) runs on the node's loop like every app. This file
// persists the core's state when it asks to (one record in the node's
// bbolt file, written before any action that depends on it), hands it the
// router's topic-1 floods and queries (its verdict is the flood filter's),
// the anonymous messages on port 2 and the anon-replies on its own tokens,
// carries its network actions to the router, publishes its updates on the
// event stream and serves the /v1/fapp API. Proof-of-work stamps are
// solved off the loop, on the API request's goroutine with the request's
// context, and handed back to the loop with n.call.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	http "github.com/openmeshd/meshd/node/httpd"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/fapp"
	"github.com/openmeshd/meshd/routing"
)

// The FAPP roles (config key fapp.role).
const (
	FAPPRoleAny       = "any"
	FAPPRoleTherapist = "therapist"
	FAPPRolePatient   = "patient"
	FAPPRoleRelay     = "relay"
)

// The FAPP app's bucket in the node's bbolt file: "state" holds the core's
// MarshalState (patients' contact details on a therapist's node, one-time
// private keys on a patient's: as secret as the identity, in the 0600
// store); a state that no longer loads is kept aside as "corrupt-<unix>".
var (
	bucketFAPP   = []byte("fapp")
	keyFAPPState = []byte("state")
)

// Errors of the FAPP API besides the fapp package's sentinels.
var (
	// ErrFAPPRole: the operation is not allowed by this node's fapp.role.
	ErrFAPPRole = errors.New("not allowed by this node's fapp.role")
	// ErrUnknownSearch: no network search with that id (or it was
	// forgotten: results are kept an hour after the search ended).
	ErrUnknownSearch = errors.New("unknown search")
)

const (
	// maxFAPPWait bounds how long one API call waits for answers.
	maxFAPPWait = 5 * time.Minute
	// maxSearchRecords bounds the network searches whose results the API
	// keeps; searchRecordLife is how long after its end one is kept.
	maxSearchRecords = 16
	searchRecordLife = time.Hour
	// minAnnounceBudget is the smallest announce that carries a slot: an
	// unendorsed one-language profile with one slot (docs/fapp.md, Sizes).
	minAnnounceBudget = 143
)

// validateFAPP checks the [fapp] section.
func validateFAPP(c *Config, bad func(key, format string, args ...any) error) error {
	f := c.FAPP
	switch f.Role {
	case FAPPRoleAny, FAPPRoleTherapist, FAPPRolePatient, FAPPRoleRelay:
	default:
		return bad("fapp.role", "%q is not any, therapist, patient or relay", f.Role)
	}
	if _, err := parseAnchors(f.Anchors); err != nil {
		return bad("fapp.anchors", "%v", err)
	}
	if f.QueryBits < 1 || f.QueryBits > fapp.MaxBits {
		return bad("fapp.query_bits", "%d is not in 1..%d", f.QueryBits, fapp.MaxBits)
	}
	if f.ReserveBits < 1 || f.ReserveBits > fapp.MaxBits {
		return bad("fapp.reserve_bits", "%d is not in 1..%d", f.ReserveBits, fapp.MaxBits)
	}
	if f.CacheEntries < 1 || f.CacheEntries > 1<<20 {
		return bad("fapp.cache_entries", "%d is not in 1..%d", f.CacheEntries, 1<<20)
	}
	if f.CacheBytes < 4096 || f.CacheBytes > 1<<30 {
		return bad("fapp.cache_bytes", "%d is not in 4096..%d", f.CacheBytes, 1<<30)
	}
	if f.QueryTTL < 1 || f.QueryTTL > 32 {
		return bad("fapp.query_ttl", "%d is not in 1..32", f.QueryTTL)
	}
	if f.AnnounceBudget < minAnnounceBudget || f.AnnounceBudget > fapp.MaxAnnounceSize {
		return bad("fapp.announce_budget", "%d is not in %d..%d", f.AnnounceBudget, minAnnounceBudget, fapp.MaxAnnounceSize)
	}
	if f.AnnounceLifetime < 10*time.Minute || f.AnnounceLifetime > fapp.MaxLifetime {
		return bad("fapp.announce_lifetime", "%s is not in 10m..%s", f.AnnounceLifetime, fapp.MaxLifetime)
	}
	if f.PublishDelay <= 0 || f.PublishDelay > time.Hour {
		return bad("fapp.publish_delay", "%s is not in (0, 1h]", f.PublishDelay)
	}
	if f.AnswerSpread < 0 || f.AnswerSpread > 2*time.Minute {
		return bad("fapp.answer_spread", "%s is not in 0..2m", f.AnswerSpread)
	}
	return nil
}

// radioAnswerSpread is fapp.answer_spread's automatic value on a node with
// a LoRa radio (meshsim's fapp-200 measured it; docs/fapp.md).
const radioAnswerSpread = 20 * time.Second

// parseAnchors reads fapp.anchors: "KEY NAME" each, KEY 64 hex digits.
func parseAnchors(list []string) ([]fapp.Anchor, error) {
	var out []fapp.Anchor
	for _, s := range list {
		k, name, _ := strings.Cut(strings.TrimSpace(s), " ")
		name = strings.TrimSpace(name)
		b, err := hex.DecodeString(k)
		if err != nil || len(b) != envelope.PublicKeySize {
			return nil, fmt.Errorf("%q: want \"KEY NAME\" with KEY 64 hex digits", s)
		}
		key, err := envelope.ParsePublicKey(b)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", s, err)
		}
		if name == "" || len(name) > 64 || !utf8.ValidString(name) || !utfPrintable(name) {
			return nil, fmt.Errorf("%q: the anchor needs a name of 1-64 printable characters after the key", s)
		}
		for _, a := range out {
			if a.Key == key {
				return nil, fmt.Errorf("anchor key %s listed twice", k)
			}
		}
		out = append(out, fapp.Anchor{Name: name, Key: key})
	}
	return out, nil
}

// fappApp is the FAPP core on the node's loop. Every field but ctx is used
// on the loop only (API handlers go through n.call).
type fappApp struct {
	n       *Node
	core    *fapp.Core
	err     error // the store could not be opened: every request fails with it
	role    string
	anchors []fapp.Anchor

	// ctx ends when the node stops: proof-of-work solving and API waits
	// observe it besides their request's context.
	ctx    context.Context
	cancel context.CancelFunc

	// pending holds what the core asked for inside the router's flood
	// filter (answers to a query), where the router must not be called
	// again; it is carried out right after the router's event (Flood, or
	// the next Tick, which NextWake makes immediate).
	pending   []fapp.Action
	pendingAt time.Time

	searches map[fapp.SearchID]*searchRecord

	// waiting holds reservations (anon envelopes) for therapists this
	// node has no route to yet. The router would hold them and send a path
	// request naming this node and the therapist: a neighbour could then
	// link the patient's node to the reservation. They wait here instead
	// until the therapist's announce brings a route (checked every
	// waitCheck; the core resends under fresh tokens meanwhile).
	waiting   []waitingAnon
	waitCheck time.Time
}

// waitingAnon is a reservation attempt waiting for a route.
type waitingAnon struct {
	act   *fapp.SendAnon
	since time.Time
}

const (
	// maxWaitingAnon bounds the attempts waiting for a route (the oldest go
	// first); maxAnonWait is how long one waits (the core's resends replace
	// it); anonWaitCheck is how often routes are looked at.
	maxWaitingAnon = 32
	maxAnonWait    = 24 * time.Hour
	anonWaitCheck  = 5 * time.Second
)

// searchRecord is what the API keeps of a network search: the results so
// far (local and network, deduplicated by the core) and whether it runs.
type searchRecord struct {
	id       fapp.SearchID
	started  time.Time
	queryPLZ string
	results  []fapp.Result
	running  bool
	ended    time.Time
	done     chan struct{} // closed when the search stops collecting
}

// newFAPPApp builds the app and restores the core's state from the store.
// A state that does not load is kept aside and FAPP starts afresh (the
// node still starts; the log says so).
func newFAPPApp(n *Node) *fappApp {
	a := &fappApp{n: n, role: n.cfg.FAPP.Role, searches: map[fapp.SearchID]*searchRecord{}}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	anchors, err := parseAnchors(n.cfg.FAPP.Anchors)
	if err != nil {
		a.err = fmt.Errorf("%w: fapp.anchors: %w", ErrConfig, err)
		return a
	}
	a.anchors = anchors
	var blob []byte
	err = n.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketFAPP)
		if err != nil {
			return err
		}
		if v := b.Get(keyFAPPState); v != nil {
			blob = slices.Clone(v)
		}
		return nil
	})
	if err != nil {
		a.err = fmt.Errorf("fapp store: %w", err)
		n.log.Error("FAPP disabled", "err", a.err)
		return a
	}
	o := a.options()
	core, err := fapp.New(o, blob)
	if err != nil {
		aside := fmt.Appendf(nil, "corrupt-%d", n.clk.Now().Unix())
		n.log.Error("the stored FAPP state does not load; it is kept aside and FAPP starts afresh", "err", err, "kept_as", string(aside))
		_ = n.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketFAPP).Put(aside, blob) })
		if core, err = fapp.New(o, nil); err != nil {
			a.err = err
			return a
		}
	}
	a.core = core
	_ = core.Actions()
	return a
}

// options maps the [fapp] section onto the core's options.
func (a *fappApp) options() fapp.Options {
	c := a.n.cfg.FAPP
	o := fapp.Options{
		Logger:           a.n.log.With("component", "fapp"),
		Anchors:          a.anchors,
		CacheEntries:     c.CacheEntries,
		CacheBytes:       c.CacheBytes,
		QueryBits:        c.QueryBits,
		ReserveBits:      c.ReserveBits,
		QueryTTL:         uint8(c.QueryTTL),
		AnnounceBudget:   c.AnnounceBudget,
		AnnounceLifetime: c.AnnounceLifetime,
		PublishDelay:     c.PublishDelay,
		AutoConfirm:      c.AutoConfirm,
		AnswerSpread:     c.AnswerSpread,
	}
	if o.AnswerSpread == 0 && a.n.cfg.LoRa.Device != "" {
		o.AnswerSpread = radioAnswerSpread
	}
	// Only a node that may act as a therapist hands the core its identity:
	// a patient's or relay's core cannot sign an announce at all.
	if a.role == FAPPRoleAny || a.role == FAPPRoleTherapist {
		o.Identity = a.n.id
	}
	return o
}

func (a *fappApp) Name() string   { return "fapp" }
func (a *fappApp) Ports() []uint8 { return []uint8{fapp.Port} }

// Deliver takes an anonymous message on port 2: a reservation for this
// therapist. FAPP never uses signed messages on its port; those are
// acknowledged and ignored.
func (a *fappApp) Deliver(now time.Time, d *routing.Deliver) {
	if !d.Anonymous {
		a.n.ackDelivery(now, d.ID)
		return
	}
	if a.core == nil {
		return
	}
	if err := a.core.OnAnon(now, d.Payload, d.ReplyTo); err != nil {
		a.n.log.Debug("FAPP reservation refused", "reason", fapp.Reason(err), "err", err)
	}
	_ = a.flush(now)
}

// Filter claims topic-1 floods (slot announces) and queries (network
// searches): the core checks them, caches announces, answers queries, and
// its verdict is the router's.
func (a *fappApp) Filter(now time.Time, e *envelope.Envelope, link routing.LinkID, from string) (routing.FloodVerdict, bool) {
	if e.Topic != fapp.Topic || (e.Kind != envelope.KindFlood && e.Kind != envelope.KindQuery) || a.core == nil {
		return 0, false
	}
	if e.Kind == envelope.KindQuery {
		a.core.SetNeighbours(a.neighbourCount(now, link))
	}
	v, err := a.core.OnFlood(now, a.neighbour(link, from), e.Raw())
	if acts := a.core.Actions(); len(acts) > 0 {
		if len(a.pending) == 0 {
			a.pendingAt = now
		}
		a.pending = append(a.pending, acts...)
	}
	switch {
	case v == fapp.Relay:
		return routing.FloodRelay, true
	case v == fapp.Keep:
		return routing.FloodKeep, true
	}
	_ = err // the core counts and logs refusals (Stats, once a minute per reason)
	return routing.FloodDrop, true
}

// neighbour names the sender for the per-neighbour query limit: the peer's
// key on links whose handshake proves it (it survives reconnecting), else
// the link and the link-layer address.
func (a *fappApp) neighbour(link routing.LinkID, from string) fapp.Neighbour {
	if ls := a.n.links[link]; ls != nil && ls.info.HasPeer {
		return fapp.Neighbour("peer:" + ls.info.Peer.String())
	}
	return fapp.Neighbour(string(link) + "|" + hex.EncodeToString([]byte(from)))
}

// neighbourCount is how many neighbours this node heard on link in the
// last hour (1 on a point-to-point link): the core's answer fan-out.
func (a *fappApp) neighbourCount(now time.Time, link routing.LinkID) int {
	k := 0
	for _, nb := range a.n.router.Neighbours() {
		if nb.Link == link && now.Sub(nb.LastHeard) < time.Hour {
			k++
		}
	}
	return k
}

// Flood: the core saw topic-1 envelopes in the filter already; what it
// asked for there (answers) is carried out now.
func (a *fappApp) Flood(now time.Time, f *routing.FloodReceived) {
	if len(a.pending) > 0 {
		_ = a.flush(now)
	}
}

// AnonReply takes answers to this node's searches and reservations (and
// only those: channels use anon-replies too).
func (a *fappApp) AnonReply(now time.Time, r *routing.AnonReplyReceived) bool {
	if a.core == nil || !a.core.OwnsToken(r.Token) {
		return false
	}
	if err := a.core.OnAnonReply(now, r.Token, r.Data); err != nil {
		a.n.log.Debug("FAPP answer refused", "reason", fapp.Reason(err), "err", err)
	}
	_ = a.flush(now)
	return true
}

func (a *fappApp) Tick(now time.Time) {
	if a.core == nil {
		return
	}
	if w := a.core.NextWake(); !w.IsZero() && !now.Before(w) {
		a.core.Tick(now)
	}
	_ = a.flush(now)
	a.retryWaiting(now)
	a.pruneSearches(now)
}

func (a *fappApp) NextWake() time.Time {
	if a.core == nil {
		return time.Time{}
	}
	if len(a.pending) > 0 {
		return a.pendingAt
	}
	w := a.core.NextWake()
	if !a.waitCheck.IsZero() && (w.IsZero() || a.waitCheck.Before(w)) {
		w = a.waitCheck
	}
	return w
}

// Close ends proof-of-work searches and waits still running in API calls.
func (a *fappApp) Close() { a.cancel() }

// flush carries out what the core asked for: pending actions from the
// flood filter, then the core's new ones.
func (a *fappApp) flush(now time.Time) error {
	acts := append(a.pending, a.core.Actions()...)
	a.pending = nil
	return a.apply(now, acts)
}

// apply carries out actions in order, the way the core's contract asks: at
// a SaveState the state is written (once per batch: MarshalState is the
// newest) before anything after it; if that fails, nothing after it is
// sent or published (an announce whose sequence number is not on disk never
// goes on the air).
func (a *fappApp) apply(now time.Time, acts []fapp.Action) error {
	saved := false
	for i, act := range acts {
		switch act := act.(type) {
		case *fapp.SaveState:
			if saved {
				continue
			}
			if err := a.save(); err != nil {
				a.n.log.Error("storing FAPP state; not sending what depends on it", "err", err, "dropped_actions", len(acts)-i-1)
				return err
			}
			saved = true
		case *fapp.Originate:
			if err := a.n.router.Originate(now, act.Raw); err != nil {
				a.n.log.Warn("FAPP: flooding", "kind", act.Kind, "err", err)
			}
		case *fapp.SendAnon:
			a.sendAnon(now, act)
		case *fapp.SendReply:
			if err := a.n.router.ReplyRaw(now, act.Raw); err != nil {
				a.n.log.Debug("FAPP: sending an answer", "err", err)
			}
		case *fapp.SearchUpdate:
			a.onSearchUpdate(now, act)
		case *fapp.RequestUpdate:
			a.n.hub.publish("fapp-request", now, requestView(act.Request))
			a.n.log.Info("FAPP reservation request", "id", act.Request.ID, "slot", act.Request.Slot, "outcome", act.Request.Outcome)
		case *fapp.ReservationUpdate:
			a.n.hub.publish("fapp-reservation", now, reservationView(act.Reservation))
			a.n.log.Info("FAPP reservation", "id", act.Reservation.ID, "outcome", act.Reservation.Outcome)
		}
	}
	return nil
}

// sendAnon hands a reservation to the router when it has a route to the
// therapist, else keeps it waiting for one (see fappApp.waiting).
func (a *fappApp) sendAnon(now time.Time, act *fapp.SendAnon) {
	if !a.reachable(act.To) {
		if len(a.waiting) >= maxWaitingAnon {
			a.waiting = a.waiting[1:]
		}
		a.waiting = append(a.waiting, waitingAnon{act: act, since: now})
		if a.waitCheck.IsZero() {
			a.waitCheck = now.Add(anonWaitCheck)
		}
		a.n.log.Info("FAPP: no route to the therapist yet; the reservation waits for its announce (asking for a path would name this node)",
			"therapist", act.To.Address())
		return
	}
	if err := a.n.router.SendAnonRaw(now, act.To, act.Raw); err != nil {
		a.n.log.Warn("FAPP: sending a reservation", "err", err)
	}
}

func (a *fappApp) reachable(k envelope.PublicKey) bool {
	info, ok := a.n.router.Peer(k.Address())
	return ok && info.Reachable
}

// retryWaiting sends the waiting reservations whose therapist is now
// reachable and forgets those waiting too long.
func (a *fappApp) retryWaiting(now time.Time) {
	if len(a.waiting) == 0 || now.Before(a.waitCheck) {
		return
	}
	keep := a.waiting[:0]
	for _, x := range a.waiting {
		switch {
		case now.Sub(x.since) > maxAnonWait:
		case a.reachable(x.act.To):
			if err := a.n.router.SendAnonRaw(now, x.act.To, x.act.Raw); err != nil {
				a.n.log.Warn("FAPP: sending a reservation", "err", err)
			}
		default:
			keep = append(keep, x)
		}
	}
	a.waiting, a.waitCheck = keep, time.Time{}
	if len(keep) > 0 {
		a.waitCheck = now.Add(anonWaitCheck)
	}
}

func (a *fappApp) save() error {
	blob, err := a.core.MarshalState()
	if err != nil {
		return err
	}
	return a.n.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketFAPP).Put(keyFAPPState, blob) })
}

func (a *fappApp) onSearchUpdate(now time.Time, u *fapp.SearchUpdate) {
	rec := a.searches[u.ID]
	if rec != nil {
		rec.results = append(rec.results, u.New...)
		if u.Done && rec.running {
			rec.running, rec.ended = false, now
			close(rec.done)
		}
	}
	ev := FAPPSearchEvent{ID: uint64(u.ID), Done: u.Done, New: resultViews(u.New)}
	a.n.hub.publish("fapp-search", now, ev)
}

// pruneSearches forgets ended searches after searchRecordLife, and the
// oldest ended ones beyond maxSearchRecords.
func (a *fappApp) pruneSearches(now time.Time) {
	var ended []*searchRecord
	for id, r := range a.searches {
		if r.running {
			continue
		}
		if now.Sub(r.ended) > searchRecordLife {
			delete(a.searches, id)
			continue
		}
		ended = append(ended, r)
	}
	slices.SortFunc(ended, func(x, y *searchRecord) int { return x.ended.Compare(y.ended) })
	for len(a.searches) > maxSearchRecords && len(ended) > 0 {
		delete(a.searches, ended[0].id)
		ended = ended[1:]
	}
}

// ---- views ----

// FAPPSlotView is a slot as the API shows it.
type FAPPSlotView struct {
	ID              int             `json:"id"`
	Type            fapp.SlotType   `json:"type"`
	Start           time.Time       `json:"start"`
	DurationMinutes int             `json:"duration_minutes"`
	Setting         fapp.Setting    `json:"setting"`
	Modalitaet      fapp.Modalitaet `json:"modalitaet"`
}

func slotView(s fapp.Slot) FAPPSlotView {
	return FAPPSlotView{ID: int(s.ID), Type: s.Type, Start: s.Start.UTC(), DurationMinutes: int(s.Duration / time.Minute),
		Setting: s.Setting, Modalitaet: s.Modalitaet}
}

// FAPPOwnSlotView is one of the therapist's slots.
type FAPPOwnSlotView struct {
	FAPPSlotView
	Booked  bool `json:"booked"`
	Pending int  `json:"pending"`
}

// FAPPEndorsementView is an endorsement in the therapist's profile.
type FAPPEndorsementView struct {
	Anchor        string            `json:"anchor"` // anchor id, 8 hex digits
	AnchorName    string            `json:"anchor_name,omitempty"`
	Verfahren     fapp.Verfahren    `json:"verfahren"`
	Altersgruppen fapp.Altersgruppe `json:"altersgruppen"`
	ValidUntil    time.Time         `json:"valid_until"`
	Encoded       string            `json:"encoded"`
}

// FAPPProfileView is the therapist's profile.
type FAPPProfileView struct {
	Therapist string       `json:"therapist"` // this node's key
	Address   string       `json:"address"`
	Profile   fapp.Profile `json:"profile"`
	// Commitment is what a trust anchor endorses (with the document,
	// shown to it out of band).
	Commitment   string                `json:"commitment"`
	Document     string                `json:"document"`
	Endorsements []FAPPEndorsementView `json:"endorsements"`
	Slots        int                   `json:"slots"`
	FreeSlots    int                   `json:"free_slots"`
}

// FAPPResultView is a slot found by a search.
type FAPPResultView struct {
	// Slot is what `meshd fapp reserve` takes: therapist key / slot id.
	Slot      string       `json:"slot"`
	Therapist string       `json:"therapist"`
	Verified  bool         `json:"verified"`
	Anchor    string       `json:"anchor,omitempty"`
	TrustNote string       `json:"trust_note,omitempty"`
	Profile   fapp.Profile `json:"profile"`
	FAPPSlotView
	AnnounceExpires time.Time `json:"announce_expires"`
}

func resultViews(rs []fapp.Result) []FAPPResultView {
	out := make([]FAPPResultView, 0, len(rs))
	for _, r := range rs {
		out = append(out, FAPPResultView{Slot: r.Ref.String(), Therapist: r.Ref.Therapist.String(), Verified: r.Trust.Verified,
			Anchor: r.Trust.Anchor, TrustNote: r.Trust.Note, Profile: r.Profile, FAPPSlotView: slotView(r.Slot),
			AnnounceExpires: r.Expires.UTC()})
	}
	return out
}

// FAPPSearchView is a search's results.
type FAPPSearchView struct {
	// ID names a network search (GET /v1/fapp/searches/{id}); 0 for a
	// local search.
	ID      uint64 `json:"id,omitempty"`
	Network bool   `json:"network"`
	Running bool   `json:"running"`
	// QueryPLZ is the PLZ prefix the network query carried (at most 3
	// digits; "" for any).
	QueryPLZ string           `json:"query_plz,omitempty"`
	Results  []FAPPResultView `json:"results"`
}

// FAPPSearchEvent is the data of a "fapp-search" event.
type FAPPSearchEvent struct {
	ID   uint64           `json:"id"`
	New  []FAPPResultView `json:"new"`
	Done bool             `json:"done"`
}

// FAPPRequestView is a reservation request as the therapist sees it.
type FAPPRequestView struct {
	ID        string    `json:"id"`
	Slot      int       `json:"slot"`
	SlotStart time.Time `json:"slot_start"`
	Contact   string    `json:"contact,omitempty"`
	Received  time.Time `json:"received"`
	Outcome   string    `json:"outcome"` // pending, confirmed, declined, taken, gone
	Decided   time.Time `json:"decided,omitzero"`
	Message   string    `json:"message,omitempty"`
}

func requestView(r fapp.Request) FAPPRequestView {
	v := FAPPRequestView{ID: r.ID.String(), Slot: int(r.Slot), SlotStart: r.SlotStart.UTC(), Contact: r.Contact,
		Received: r.Received.UTC(), Outcome: r.Outcome.String(), Message: r.Message}
	if !r.Decided.IsZero() {
		v.Decided = r.Decided.UTC()
	}
	return v
}

// FAPPReservationView is a patient's reservation.
type FAPPReservationView struct {
	ID        string    `json:"id"`
	Slot      string    `json:"slot"`
	Therapist string    `json:"therapist"`
	SlotStart time.Time `json:"slot_start"`
	Outcome   string    `json:"outcome"` // pending, confirmed, declined, taken, gone, expired
	Message   string    `json:"message,omitempty"`
	Created   time.Time `json:"created"`
	Updated   time.Time `json:"updated"`
	Attempts  int       `json:"attempts"`
}

func reservationView(r fapp.Reservation) FAPPReservationView {
	return FAPPReservationView{ID: r.ID.String(), Slot: r.Slot.String(), Therapist: r.Slot.Therapist.String(),
		SlotStart: r.SlotStart.UTC(), Outcome: r.Outcome.String(), Message: r.Message, Created: r.Created.UTC(),
		Updated: r.Updated.UTC(), Attempts: r.Attempts}
}

// FAPPStatsView is the core's counters.
type FAPPStatsView struct {
	Role             string            `json:"role"`
	CacheTherapists  int               `json:"cache_therapists"`
	CachePages       int               `json:"cache_pages"`
	CacheBytes       int               `json:"cache_bytes"`
	Accepted         uint64            `json:"accepted"`
	Evicted          uint64            `json:"evicted"`
	Expired          uint64            `json:"expired"`
	Rejected         map[string]uint64 `json:"rejected"`
	QueriesAnswered  uint64            `json:"queries_answered"`
	QueriesLeft      uint64            `json:"queries_left_to_others"`
	RepliesSent      uint64            `json:"replies_sent"`
	RecordsSent      uint64            `json:"records_sent"`
	LocalSearches    uint64            `json:"local_searches"`
	NetworkSearches  uint64            `json:"network_searches"`
	ResultsReceived  uint64            `json:"results_received"`
	Published        uint64            `json:"published"`
	RequestsReceived uint64            `json:"requests_received"`
	Confirmed        uint64            `json:"confirmed"`
	Declined         uint64            `json:"declined"`
	AnswersSent      uint64            `json:"answers_sent"`
	ReservationsSent uint64            `json:"reservations_sent"`
	ReservationRetry uint64            `json:"reservation_resends"`
	AnswersReceived  uint64            `json:"answers_received"`
}

// FAPPAnchorView is a configured trust anchor.
type FAPPAnchorView struct {
	Name string `json:"name"`
	Key  string `json:"key"`
	ID   string `json:"id"`
}

// ---- API ----

// Routes adds the /v1/fapp endpoints (docs/api.md, "FAPP").
func (a *fappApp) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/fapp/profile", a.apiProfile)
	mux.HandleFunc("PUT /v1/fapp/profile", a.apiSetProfile)
	mux.HandleFunc("GET /v1/fapp/slots", a.apiSlots)
	mux.HandleFunc("POST /v1/fapp/slots", a.apiAddSlot)
	mux.HandleFunc("DELETE /v1/fapp/slots/{id}", a.apiRemoveSlot)
	mux.HandleFunc("POST /v1/fapp/publish", a.apiPublish)
	mux.HandleFunc("GET /v1/fapp/requests", a.apiRequests)
	mux.HandleFunc("POST /v1/fapp/requests/{id}/confirm", a.apiDecide(true))
	mux.HandleFunc("POST /v1/fapp/requests/{id}/decline", a.apiDecide(false))
	mux.HandleFunc("POST /v1/fapp/search", a.apiSearch)
	mux.HandleFunc("GET /v1/fapp/searches/{id}", a.apiSearchResults)
	mux.HandleFunc("POST /v1/fapp/reservations", a.apiReserve)
	mux.HandleFunc("GET /v1/fapp/reservations", a.apiReservations)
	mux.HandleFunc("GET /v1/fapp/reservations/{id}", a.apiReservation)
	mux.HandleFunc("GET /v1/fapp/stats", a.apiStats)
	mux.HandleFunc("GET /v1/fapp/anchors", a.apiAnchors)
	mux.HandleFunc("POST /v1/fapp/endorse", a.apiEndorse)
}

// failFAPP maps the fapp errors to statuses; the rest goes to fail.
func failFAPP(w http.ResponseWriter, err error) {
	type m struct {
		err    error
		status int
		code   string
	}
	for _, c := range []m{
		{fapp.ErrPrecision, http.StatusBadRequest, "precision"},
		{fapp.ErrInvalid, http.StatusBadRequest, "bad_request"},
		{fapp.ErrMalformed, http.StatusBadRequest, "bad_request"},
		{fapp.ErrOversize, http.StatusRequestEntityTooLarge, "too_large"},
		{ErrFAPPRole, http.StatusForbidden, "role"},
		{fapp.ErrNotTherapist, http.StatusConflict, "not_therapist"},
		{fapp.ErrUnknownSlot, http.StatusNotFound, "unknown_slot"},
		{fapp.ErrUnknownRequest, http.StatusNotFound, "unknown_request"},
		{ErrUnknownSearch, http.StatusNotFound, "unknown_search"},
		{fapp.ErrSlotTaken, http.StatusConflict, "slot_taken"},
		{fapp.ErrDecided, http.StatusConflict, "decided"},
		{fapp.ErrDuplicate, http.StatusConflict, "duplicate"},
		{fapp.ErrEndorsement, http.StatusUnprocessableEntity, "endorsement"},
		{fapp.ErrRateLimited, http.StatusTooManyRequests, "rate_limited"},
	} {
		if errors.Is(err, c.err) {
			writeError(w, c.status, c.code, err)
			return
		}
	}
	fail(w, err)
}

// do runs f on the loop with the core, then carries out the core's
// actions; f's error is returned as is (the core changed nothing then).
func (a *fappApp) do(ctx context.Context, f func(now time.Time) error) error {
	if a.err != nil {
		return a.err
	}
	var ferr error
	err := a.n.call(ctx, func(now time.Time) {
		ferr = f(now)
		if err := a.flush(now); err != nil && ferr == nil {
			ferr = fmt.Errorf("storing FAPP state: %w", err)
		}
	})
	if err != nil {
		return err
	}
	return ferr
}

// solveCtx is the context proof-of-work solving and waits run under: the
// request's, ended early when the node stops.
func (a *fappApp) solveCtx(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(a.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

func (a *fappApp) allowTherapist() error {
	if a.role != FAPPRoleAny && a.role != FAPPRoleTherapist {
		return fmt.Errorf("%w (%s): therapist operations need fapp.role any or therapist", ErrFAPPRole, a.role)
	}
	return nil
}

func (a *fappApp) allowPatient() error {
	if a.role != FAPPRoleAny && a.role != FAPPRolePatient {
		return fmt.Errorf("%w (%s): network searches and reservations need fapp.role any or patient", ErrFAPPRole, a.role)
	}
	return nil
}

func (a *fappApp) anchorName(id fapp.AnchorID) string {
	for _, an := range a.anchors {
		if fapp.IDOf(an.Key) == id {
			return an.Name
		}
	}
	return ""
}

func (a *fappApp) profileView() (FAPPProfileView, error) {
	p, cr, ok := a.core.Profile()
	if !ok {
		return FAPPProfileView{}, fmt.Errorf("%w: set one with meshd fapp profile set (PUT /v1/fapp/profile)", fapp.ErrNotTherapist)
	}
	me := a.n.id.PublicKey()
	c := cr.Attestation.Commit(me)
	v := FAPPProfileView{Therapist: me.String(), Address: me.Address().String(), Profile: p, Commitment: hex.EncodeToString(c[:]),
		Document: string(cr.Attestation.Document), Endorsements: []FAPPEndorsementView{}}
	for _, e := range cr.Endorsements {
		b, _ := e.MarshalBinary()
		v.Endorsements = append(v.Endorsements, FAPPEndorsementView{Anchor: hex.EncodeToString(e.Anchor[:]), AnchorName: a.anchorName(e.Anchor),
			Verfahren: e.Verfahren, Altersgruppen: e.Altersgruppen, ValidUntil: e.ValidUntil.UTC(), Encoded: hex.EncodeToString(b)})
	}
	for _, s := range a.core.Slots() {
		v.Slots++
		if !s.Booked {
			v.FreeSlots++
		}
	}
	return v, nil
}

// fappAnswer runs f on the loop and answers with its value and status, or
// with its error.
func fappAnswer[T any](a *fappApp, w http.ResponseWriter, r *http.Request, status int, f func(now time.Time) (T, error)) {
	var v T
	err := a.do(r.Context(), func(now time.Time) error {
		var err error
		v, err = f(now)
		return err
	})
	if err != nil {
		failFAPP(w, err)
		return
	}
	writeJSON(w, status, v)
}

func (a *fappApp) apiProfile(w http.ResponseWriter, r *http.Request) {
	fappAnswer(a, w, r, http.StatusOK, func(time.Time) (FAPPProfileView, error) { return a.profileView() })
}

// fappProfileRequest is the body of PUT /v1/fapp/profile: the profile's
// own fields (embedded, so they stand at the top level) and its credentials.
type fappProfileRequest struct {
	fapp.Profile
	// Document is the Approbation (text). Required the first time; the
	// same text again keeps the commitment (and the endorsements of it);
	// a new text makes a new commitment, and endorsements of the old one
	// are dropped.
	Document string `json:"document"`
	// Endorsements (hex, as anchors hand them out) replace the current
	// ones; absent: kept.
	Endorsements *[]string `json:"endorsements"`
}

func (a *fappApp) apiSetProfile(w http.ResponseWriter, r *http.Request) {
	var req fappProfileRequest
	if err := readJSON(w, r, &req); err != nil {
		fail(w, err)
		return
	}
	if len(req.Document) > fapp.MaxDocument || !utf8.ValidString(req.Document) {
		failFAPP(w, fmt.Errorf("%w: the document is at most %d bytes of UTF-8", fapp.ErrOversize, fapp.MaxDocument))
		return
	}
	var ends []fapp.Endorsement
	if req.Endorsements != nil {
		if len(*req.Endorsements) > fapp.MaxEndorsements {
			failFAPP(w, fmt.Errorf("%w: %d endorsements, at most %d", fapp.ErrOversize, len(*req.Endorsements), fapp.MaxEndorsements))
			return
		}
		for i, s := range *req.Endorsements {
			b, err := hex.DecodeString(strings.TrimSpace(s))
			if err != nil {
				failFAPP(w, fmt.Errorf("%w: endorsement %d is not hex", fapp.ErrInvalid, i+1))
				return
			}
			e, err := fapp.ParseEndorsement(b)
			if err != nil {
				failFAPP(w, fmt.Errorf("%w: endorsement %d: %v", fapp.ErrInvalid, i+1, err))
				return
			}
			ends = append(ends, e)
		}
	}
	p := req.Profile
	p.PLZ = strings.TrimSpace(p.PLZ)
	var v FAPPProfileView
	err := a.do(r.Context(), func(now time.Time) error {
		if err := a.allowTherapist(); err != nil {
			return err
		}
		_, cr, had := a.core.Profile()
		switch {
		case req.Document == "" && !had:
			return fmt.Errorf("%w: document is required: the Approbation (profession, issuing authority, date, number); it stays on this node", fapp.ErrInvalid)
		case req.Document != "" && (!had || req.Document != string(cr.Attestation.Document)):
			att, err := fapp.NewAttestation(rand.Reader, []byte(req.Document))
			if err != nil {
				return err
			}
			cr = fapp.Credentials{Attestation: att}
		}
		if req.Endorsements != nil {
			cr.Endorsements = ends
		}
		if err := a.core.SetProfile(now, p, cr); err != nil {
			return err
		}
		var err error
		v, err = a.profileView()
		return err
	})
	if err != nil {
		failFAPP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func ownSlotViews(ss []fapp.OwnSlot) []FAPPOwnSlotView {
	out := make([]FAPPOwnSlotView, 0, len(ss))
	for _, s := range ss {
		out = append(out, FAPPOwnSlotView{FAPPSlotView: slotView(s.Slot), Booked: s.Booked, Pending: s.Pending})
	}
	return out
}

func (a *fappApp) apiSlots(w http.ResponseWriter, r *http.Request) {
	fappAnswer(a, w, r, http.StatusOK, func(time.Time) ([]FAPPOwnSlotView, error) { return ownSlotViews(a.core.Slots()), nil })
}

func (a *fappApp) apiAddSlot(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Type            string          `json:"type"`
		Start           time.Time       `json:"start"`
		DurationMinutes int             `json:"duration_minutes"`
		Setting         fapp.Setting    `json:"setting"`
		Modalitaet      fapp.Modalitaet `json:"modalitaet"`
	}
	if err := readJSON(w, r, &req); err != nil {
		fail(w, err)
		return
	}
	typ, err := fapp.ParseSlotType(req.Type)
	if err != nil {
		failFAPP(w, fmt.Errorf("%w (type is one of sprechstunde, probatorik, akutbehandlung, therapieplatz)", err))
		return
	}
	if req.Start.IsZero() {
		failFAPP(w, fmt.Errorf("%w: start is required (RFC 3339, on the 5-minute grid)", fapp.ErrInvalid))
		return
	}
	if req.DurationMinutes <= 0 || req.DurationMinutes > int(fapp.MaxSlotDuration/time.Minute) {
		failFAPP(w, fmt.Errorf("%w: duration_minutes must be within 5..%d, a multiple of 5", fapp.ErrInvalid, int(fapp.MaxSlotDuration/time.Minute)))
		return
	}
	s := fapp.Slot{Type: typ, Start: req.Start.UTC(), Duration: time.Duration(req.DurationMinutes) * time.Minute, Setting: req.Setting, Modalitaet: req.Modalitaet}
	var v FAPPOwnSlotView
	err = a.do(r.Context(), func(now time.Time) error {
		if err := a.allowTherapist(); err != nil {
			return err
		}
		id, err := a.core.AddSlot(now, s)
		if err != nil {
			return err
		}
		for _, o := range a.core.Slots() {
			if o.ID == id {
				v = ownSlotViews([]fapp.OwnSlot{o})[0]
			}
		}
		return nil
	})
	if err != nil {
		failFAPP(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func (a *fappApp) apiRemoveSlot(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 16)
	if err != nil {
		failFAPP(w, fmt.Errorf("%w: slot id %q is not a number", fapp.ErrInvalid, r.PathValue("id")))
		return
	}
	err = a.do(r.Context(), func(now time.Time) error {
		if err := a.allowTherapist(); err != nil {
			return err
		}
		return a.core.RemoveSlot(now, fapp.SlotID(id))
	})
	if err != nil {
		failFAPP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *fappApp) apiPublish(w http.ResponseWriter, r *http.Request) {
	fappAnswer(a, w, r, http.StatusAccepted, func(now time.Time) (FAPPProfileView, error) {
		if err := a.allowTherapist(); err != nil {
			return FAPPProfileView{}, err
		}
		if err := a.core.Publish(now); err != nil {
			if errors.Is(err, fapp.ErrNotTherapist) {
				return FAPPProfileView{}, fmt.Errorf("%w: set one with meshd fapp profile set", err)
			}
			return FAPPProfileView{}, err
		}
		return a.profileView()
	})
}

func (a *fappApp) apiRequests(w http.ResponseWriter, r *http.Request) {
	fappAnswer(a, w, r, http.StatusOK, func(time.Time) ([]FAPPRequestView, error) {
		out := []FAPPRequestView{}
		for _, q := range a.core.Requests() {
			out = append(out, requestView(q))
		}
		return out, nil
	})
}

func (a *fappApp) apiDecide(confirm bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := fapp.ParseRequestID(r.PathValue("id"))
		if err != nil {
			failFAPP(w, err)
			return
		}
		var req struct {
			Message string `json:"message"`
		}
		if r.ContentLength != 0 {
			if err := readJSON(w, r, &req); err != nil {
				fail(w, err)
				return
			}
		}
		var v FAPPRequestView
		err = a.do(r.Context(), func(now time.Time) error {
			if err := a.allowTherapist(); err != nil {
				return err
			}
			var err error
			if confirm {
				err = a.core.Confirm(now, id, req.Message)
			} else {
				err = a.core.Decline(now, id, req.Message)
			}
			if err != nil {
				return err
			}
			for _, q := range a.core.Requests() {
				if q.ID == id {
					v = requestView(q)
				}
			}
			return nil
		})
		if err != nil {
			failFAPP(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

// fappSearchRequest is the body of POST /v1/fapp/search. Sets are
// comma-separated names (docs/fapp.md, Enumerations); zero fields mean any.
type fappSearchRequest struct {
	Verfahren     fapp.Verfahren     `json:"verfahren"`
	Altersgruppen fapp.Altersgruppe  `json:"altersgruppen"`
	Settings      fapp.Setting       `json:"settings"`
	Kostentraeger fapp.Kostentraeger `json:"kostentraeger"`
	Modalitaeten  fapp.Modalitaet    `json:"modalitaeten"`
	SlotTypes     fapp.SlotTypeSet   `json:"slot_types"`
	// PLZ is a prefix of 0–5 digits; a network search takes at most 3.
	PLZ string `json:"plz"`
	// From and To bound the slot start: RFC 3339 instants, or dates
	// (YYYY-MM-DD, UTC) with To inclusive.
	From     string `json:"from"`
	To       string `json:"to"`
	Language string `json:"language"`
	// Limit: announces wanted per answering node (network, 1–16).
	Limit int `json:"limit"`
	// Network sends an anonymous query into the mesh besides searching the
	// cache; WaitSeconds (≤ 300) waits that long for answers.
	Network     bool    `json:"network"`
	WaitSeconds float64 `json:"wait_seconds"`
}

// parseWhen reads an RFC 3339 instant or a date (UTC); a date as an upper
// bound means the end of that day.
func parseWhen(field, s string, upper bool) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		if upper {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%w: %s %q is neither a date (2026-12-01) nor an RFC 3339 time", fapp.ErrInvalid, field, s)
}

func (req *fappSearchRequest) filter() (fapp.Filter, error) {
	f := fapp.Filter{Verfahren: req.Verfahren, Altersgruppen: req.Altersgruppen, Settings: req.Settings,
		Kostentraeger: req.Kostentraeger, Modalitaeten: req.Modalitaeten, SlotTypes: req.SlotTypes,
		PLZPrefix: strings.TrimSpace(req.PLZ), Language: strings.ToLower(strings.TrimSpace(req.Language)), Limit: req.Limit}
	var err error
	if f.From, err = parseWhen("from", req.From, false); err != nil {
		return f, err
	}
	if f.To, err = parseWhen("to", req.To, true); err != nil {
		return f, err
	}
	if err := f.Validate(); err != nil {
		return f, err
	}
	if req.Network && len(f.PLZPrefix) > fapp.MaxQueryPLZDigits {
		// Refused rather than silently cut: the user sees exactly what
		// leaves the node. A local search may use all five digits.
		return f, fmt.Errorf("%w: a network search carries at most %d digits of the PLZ (%q: use %q); search locally for the full PLZ",
			fapp.ErrPrecision, fapp.MaxQueryPLZDigits, f.PLZPrefix, f.PLZPrefix[:fapp.MaxQueryPLZDigits])
	}
	return f, nil
}

// fappWait checks a wait_seconds before converting it: the float itself
// is bounded, so NaN and values beyond a Duration (whose conversion is
// implementation-defined) are refused rather than passed.
func fappWait(seconds float64) (time.Duration, error) {
	if !(seconds >= 0 && seconds <= maxFAPPWait.Seconds()) {
		return 0, fmt.Errorf("%w: wait_seconds must be within 0..%d", fapp.ErrInvalid, int(maxFAPPWait/time.Second))
	}
	return time.Duration(seconds * float64(time.Second)), nil
}

func (a *fappApp) apiSearch(w http.ResponseWriter, r *http.Request) {
	var req fappSearchRequest
	if err := readJSON(w, r, &req); err != nil {
		fail(w, err)
		return
	}
	f, err := req.filter()
	if err != nil {
		failFAPP(w, err)
		return
	}
	wait, err := fappWait(req.WaitSeconds)
	if err != nil {
		failFAPP(w, err)
		return
	}
	if !req.Network {
		var out []fapp.Result
		err := a.do(r.Context(), func(now time.Time) error {
			var err error
			out, err = a.core.Search(now, f)
			return err
		})
		if err != nil {
			failFAPP(w, err)
			return
		}
		writeJSON(w, http.StatusOK, FAPPSearchView{Results: resultViews(out)})
		return
	}
	var d *fapp.SearchDraft
	err = a.do(r.Context(), func(now time.Time) error {
		if err := a.allowPatient(); err != nil {
			return err
		}
		var err error
		d, err = a.core.PrepareSearch(now, f)
		return err
	})
	if err != nil {
		failFAPP(w, err)
		return
	}
	// The proof of work, off the loop.
	ctx, cancel := a.solveCtx(r)
	defer cancel()
	if err := d.Solve(ctx); err != nil {
		d.Discard()
		failFAPP(w, fmt.Errorf("proof of work: %w", err))
		return
	}
	var rec *searchRecord
	err = a.do(r.Context(), func(now time.Time) error {
		id, local, err := a.core.StartSearch(now, d)
		if err != nil {
			return err
		}
		rec = &searchRecord{id: id, started: now, results: local, running: true, done: make(chan struct{}),
			queryPLZ: f.PLZPrefix}
		a.searches[id] = rec
		a.pruneSearches(now)
		return nil
	})
	if err != nil {
		d.Discard()
		failFAPP(w, err)
		return
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-rec.done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	a.writeSearch(w, r, rec.id, http.StatusOK)
}

func (a *fappApp) writeSearch(w http.ResponseWriter, r *http.Request, id fapp.SearchID, status int) {
	fappAnswer(a, w, r, status, func(time.Time) (FAPPSearchView, error) {
		rec := a.searches[id]
		if rec == nil {
			return FAPPSearchView{}, fmt.Errorf("%w: %d", ErrUnknownSearch, id)
		}
		rs := slices.Clone(rec.results)
		sortFAPPResults(rs)
		return FAPPSearchView{ID: uint64(id), Network: true, Running: rec.running, QueryPLZ: rec.queryPLZ, Results: resultViews(rs)}, nil
	})
}

// sortFAPPResults orders results as the core's searches do: by start, then
// therapist and slot.
func sortFAPPResults(rs []fapp.Result) {
	slices.SortFunc(rs, func(x, y fapp.Result) int {
		if c := x.Slot.Start.Compare(y.Slot.Start); c != 0 {
			return c
		}
		return strings.Compare(x.Ref.String(), y.Ref.String())
	})
}

func (a *fappApp) apiSearchResults(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		failFAPP(w, fmt.Errorf("%w: search id %q is not a number", fapp.ErrInvalid, r.PathValue("id")))
		return
	}
	a.writeSearch(w, r, fapp.SearchID(id), http.StatusOK)
}

func (a *fappApp) apiReserve(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Slot    string `json:"slot"`
		Contact string `json:"contact"`
	}
	if err := readJSON(w, r, &req); err != nil {
		fail(w, err)
		return
	}
	ref, err := fapp.ParseSlotRef(req.Slot)
	if err != nil {
		failFAPP(w, err)
		return
	}
	switch {
	case strings.TrimSpace(req.Contact) == "":
		err = fmt.Errorf("%w: contact is required: how the therapist reaches you (name, phone or e-mail); only the therapist can read it", fapp.ErrInvalid)
	case len(req.Contact) > fapp.MaxContact:
		err = fmt.Errorf("%w: contact is %d bytes, at most %d", fapp.ErrOversize, len(req.Contact), fapp.MaxContact)
	case !utf8.ValidString(req.Contact):
		err = fmt.Errorf("%w: contact is not UTF-8", fapp.ErrInvalid)
	}
	if err != nil {
		failFAPP(w, err)
		return
	}
	var d *fapp.ReservationDraft
	err = a.do(r.Context(), func(now time.Time) error {
		if err := a.allowPatient(); err != nil {
			return err
		}
		var err error
		d, err = a.core.PrepareReservation(now, ref, req.Contact)
		if errors.Is(err, fapp.ErrUnknownSlot) {
			err = fmt.Errorf("%w (search first: meshd fapp search)", err)
		}
		return err
	})
	if err != nil {
		failFAPP(w, err)
		return
	}
	ctx, cancel := a.solveCtx(r)
	defer cancel()
	if err := d.Solve(ctx); err != nil {
		failFAPP(w, fmt.Errorf("proof of work: %w", err))
		return
	}
	var v FAPPReservationView
	err = a.do(r.Context(), func(now time.Time) error {
		id, err := a.core.SubmitReservation(now, d)
		if err != nil {
			return err
		}
		v, _ = a.reservation(id)
		return nil
	})
	if err != nil {
		failFAPP(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, v)
}

// reservation finds one of the core's reservations (on the loop).
func (a *fappApp) reservation(id fapp.RequestID) (FAPPReservationView, bool) {
	for _, res := range a.core.Reservations() {
		if res.ID == id {
			return reservationView(res), true
		}
	}
	return FAPPReservationView{}, false
}

func (a *fappApp) apiReservations(w http.ResponseWriter, r *http.Request) {
	fappAnswer(a, w, r, http.StatusOK, func(time.Time) ([]FAPPReservationView, error) {
		out := []FAPPReservationView{}
		for _, res := range a.core.Reservations() {
			out = append(out, reservationView(res))
		}
		return out, nil
	})
}

// apiReservation answers with one reservation; with wait_seconds it waits
// (at most that long) until the therapist's answer has come.
func (a *fappApp) apiReservation(w http.ResponseWriter, r *http.Request) {
	id, err := fapp.ParseRequestID(r.PathValue("id"))
	if err != nil {
		failFAPP(w, err)
		return
	}
	var wait time.Duration
	if s := r.URL.Query().Get("wait_seconds"); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			f = -1
		}
		if wait, err = fappWait(f); err != nil {
			failFAPP(w, err)
			return
		}
	}
	// Subscribe first, so an answer between the check and the wait is not
	// missed.
	events, unsubscribe := a.n.hub.subscribe(16)
	defer unsubscribe()
	ctx, cancel := a.solveCtx(r)
	defer cancel()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		var v FAPPReservationView
		var found bool
		err := a.do(r.Context(), func(now time.Time) error {
			v, found = a.reservation(id)
			return nil
		})
		if err == nil && !found {
			err = fmt.Errorf("%w: no reservation %s on this node", fapp.ErrUnknownRequest, id)
		}
		if err != nil {
			failFAPP(w, err)
			return
		}
		if v.Outcome != fapp.Pending.String() || wait == 0 {
			writeJSON(w, http.StatusOK, v)
			return
		}
	wake:
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					writeJSON(w, http.StatusOK, v)
					return
				}
				if ev.Type == "fapp-reservation" {
					break wake
				}
			case <-deadline.C:
				writeJSON(w, http.StatusOK, v)
				return
			case <-ctx.Done():
				writeJSON(w, http.StatusOK, v)
				return
			}
		}
	}
}

func (a *fappApp) apiStats(w http.ResponseWriter, r *http.Request) {
	var s fapp.Stats
	err := a.do(r.Context(), func(now time.Time) error {
		s = a.core.Stats()
		return nil
	})
	if err != nil {
		failFAPP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, FAPPStatsView{Role: a.role, CacheTherapists: s.CacheTherapists, CachePages: s.CachePages, CacheBytes: s.CacheBytes,
		Accepted: s.Accepted, Evicted: s.Evicted, Expired: s.Expired, Rejected: s.Rejected, QueriesAnswered: s.QueriesAnswered, QueriesLeft: s.QueriesLeft,
		RepliesSent: s.RepliesSent, RecordsSent: s.RecordsSent, LocalSearches: s.LocalSearches, NetworkSearches: s.NetworkSearches,
		ResultsReceived: s.ResultsReceived, Published: s.Published, RequestsReceived: s.RequestsReceived, Confirmed: s.Confirmed,
		Declined: s.Declined, AnswersSent: s.AnswersSent, ReservationsSent: s.ReservationsSent, ReservationRetry: s.ReservationRetry,
		AnswersReceived: s.AnswersReceived})
}

func (a *fappApp) apiAnchors(w http.ResponseWriter, r *http.Request) {
	out := make([]FAPPAnchorView, 0, len(a.anchors))
	for _, an := range a.anchors {
		id := fapp.IDOf(an.Key)
		out = append(out, FAPPAnchorView{Name: an.Name, Key: an.Key.String(), ID: hex.EncodeToString(id[:])})
	}
	writeJSON(w, http.StatusOK, out)
}

// apiEndorse is the trust anchor's tool: this node's identity endorses a
// therapist's commitment (after checking the Approbation out of band).
func (a *fappApp) apiEndorse(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Therapist     string            `json:"therapist"`
		Commitment    string            `json:"commitment"`
		Verfahren     fapp.Verfahren    `json:"verfahren"`
		Altersgruppen fapp.Altersgruppe `json:"altersgruppen"`
		ValidUntil    string            `json:"valid_until"`
	}
	if err := readJSON(w, r, &req); err != nil {
		fail(w, err)
		return
	}
	key, err := parseKeyHex(strings.TrimSpace(req.Therapist))
	if err != nil || len(strings.TrimSpace(req.Therapist)) != 2*envelope.PublicKeySize {
		failFAPP(w, fmt.Errorf("%w: therapist must be the therapist's key (64 hex digits)", fapp.ErrInvalid))
		return
	}
	var c fapp.Commitment
	cb, err := hex.DecodeString(strings.TrimSpace(req.Commitment))
	if err != nil || len(cb) != len(c) {
		failFAPP(w, fmt.Errorf("%w: commitment must be %d hex digits (meshd fapp profile shows it)", fapp.ErrInvalid, 2*len(c)))
		return
	}
	copy(c[:], cb)
	until, err := parseWhen("valid_until", req.ValidUntil, false)
	if err != nil || until.IsZero() {
		failFAPP(w, fmt.Errorf("%w: valid_until must be a date (2027-12-31)", fapp.ErrInvalid))
		return
	}
	e, err := fapp.Endorse(a.n.id, key, c, req.Verfahren, req.Altersgruppen, until)
	if err != nil {
		failFAPP(w, err)
		return
	}
	b, err := e.MarshalBinary()
	if err != nil {
		failFAPP(w, err)
		return
	}
	me := a.n.id.PublicKey()
	writeJSON(w, http.StatusCreated, map[string]string{
		"endorsement": hex.EncodeToString(b),
		// What nodes that believe this anchor put into fapp.anchors.
		"anchor": me.String(),
	})
}
