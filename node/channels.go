package node

// Broadcast channels wired into the node: the broadcast core (sans-IO) runs
// on the node's loop like every app; this file persists what it asks to
// (its own buckets of the node's bbolt file), carries its network actions to
// the router, publishes deliveries and events on the event stream and serves
// the /v1/channels API. docs/channels.md ("Wiring") describes the contract.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	http "github.com/openmeshd/meshd/node/httpd"
	"strings"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"github.com/openmeshd/meshd/broadcast"
	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/routing"
)

// The channels app's buckets in the node's bbolt file.
var (
	bucketChanState = []byte("channels/state")    // channel id → the core's channel record (secret: 0600 file)
	bucketChanMeta  = []byte("channels/meta")     // "history" → the core's history cache record
	bucketChanMsgs  = []byte("channels/messages") // channel id ‖ seq → ChannelMessage (JSON)
	keyChanHistory  = []byte("history")
)

// catchUpDelay is how long after the first link comes up (the node is back
// online, or just started) the app asks its neighbours for missed channel
// history: long enough for the other static peers' links to come up too, so
// that one request reaches them all.
const catchUpDelay = 2 * time.Second

// maxJoinWait bounds how long a join request may wait for the inviter's
// answer inside one API call.
const maxJoinWait = 5 * time.Minute

// Errors of the channels API (besides the broadcast package's).
var (
	// ErrAmbiguousChannel: a name names several channels; use the id.
	ErrAmbiguousChannel = errors.New("channel name is ambiguous")
	// ErrUnknownMember: a member reference that is neither a key, a contact
	// with a known key, nor the address of a member or requester.
	ErrUnknownMember = errors.New("unknown member")
)

// ChannelView is a channel as the API shows it.
type ChannelView struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Policy string `json:"policy"`
	// Private is false for open channels: their key is derived from the
	// name, anyone who knows it reads and writes.
	Private   bool   `json:"private"`
	Signed    bool   `json:"signed"`
	Announce  bool   `json:"announce"`
	Status    string `json:"status"` // joining, active, removed
	Role      string `json:"role,omitempty"`
	Epoch     uint32 `json:"epoch"`
	EpochHash string `json:"epoch_hash,omitempty"`
	Members   int    `json:"members"`
	// EpochSince is when this node adopted the current epoch.
	EpochSince   time.Time `json:"epoch_since,omitzero"`
	JoinRequests int       `json:"join_requests"`
}

// MemberView is a roster entry or a pending join request.
type MemberView struct {
	Address     string `json:"address"`
	PublicKey   string `json:"public_key"`
	Fingerprint string `json:"fingerprint"`
	Name        string `json:"name,omitempty"` // local petname
	Role        string `json:"role"`
	Self        bool   `json:"self"`
}

// InviteView is an issued invite code.
type InviteView struct {
	Channel string `json:"channel"`
	// Code is the code to paste: "MESHD:JOIN:" and 117 base32 characters,
	// all in the QR alphanumeric set (a QR encoder stores it compactly).
	Code string `json:"code"`
	// Grouped is the same code in groups of five, for reading aloud or
	// typing; join accepts either form.
	Grouped string    `json:"grouped"`
	Expires time.Time `json:"expires"`
	Uses    int       `json:"uses"`
	Role    string    `json:"role"`
	Approve bool      `json:"approve"`
}

// ChannelMessage is a channel message this node delivered or sent.
type ChannelMessage struct {
	Seq         uint64 `json:"seq"`
	Channel     string `json:"channel"`
	ChannelName string `json:"channel_name"`
	// From is the author's address and key; empty for unsigned open
	// channels, where nobody can tell.
	From     string `json:"from,omitempty"`
	FromKey  string `json:"from_key,omitempty"`
	FromName string `json:"from_name,omitempty"` // local petname
	// Verified: an Ed25519 signature proves the author. Without it the
	// channel key proves only that a member wrote it.
	Verified bool   `json:"verified"`
	Private  bool   `json:"private"`
	Epoch    uint32 `json:"epoch"`
	Text     string `json:"text"`
	// Time is when the message reached the mesh as far as this node can
	// tell (for caught-up messages: now minus the age the responder
	// reported); Received when this node stored it.
	Time     time.Time `json:"time"`
	Received time.Time `json:"received"`
	// History: it came from a history catch-up, not live.
	History bool `json:"history"`
	// Own: this node sent it.
	Own bool `json:"own"`
}

// ChannelEventView is the data of a "channel-event" event.
type ChannelEventView struct {
	Channel     string `json:"channel"`
	ChannelName string `json:"channel_name,omitempty"`
	Type        string `json:"type"`
	Member      string `json:"member,omitempty"` // address
	MemberKey   string `json:"member_key,omitempty"`
	Role        string `json:"role,omitempty"`
	Epoch       uint32 `json:"epoch"`
	Error       string `json:"error,omitempty"`
}

// channelsApp is the broadcast core on the node's loop. Every field is used
// on the loop only (API handlers go through n.call).
type channelsApp struct {
	n    *Node
	core *broadcast.Core
	err  error // the store could not be opened: every request fails with it

	links     int
	catchUpAt time.Time
	// joins are API calls waiting for the outcome of a join request.
	joins map[broadcast.ChannelID][]chan joinOutcome
}

type joinOutcome struct {
	joined bool
	err    error
}

// newChannelsApp builds the channels app and restores its channels and
// history cache from the store. A record that does not load is logged and
// left in place (never deleted): the node still starts.
func newChannelsApp(n *Node) *channelsApp {
	a := &channelsApp{n: n, joins: map[broadcast.ChannelID][]chan joinOutcome{}}
	core, err := broadcast.New(broadcast.Options{Identity: n.id, Logger: n.log.With("component", "channels")})
	if err != nil {
		a.err = err
		return a
	}
	a.core = core
	now := n.clk.Now()
	a.err = n.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketChanState, bucketChanMeta, bucketChanMsgs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if a.err != nil {
		a.err = fmt.Errorf("channels store: %w", a.err)
		n.log.Error("channels disabled", "err", a.err)
		return a
	}
	_ = n.db.View(func(tx *bolt.Tx) error {
		_ = tx.Bucket(bucketChanState).ForEach(func(k, v []byte) error {
			if _, err := core.Load(now, v); err != nil {
				n.log.Error("a stored channel does not load; it is kept but ignored", "channel", hex.EncodeToString(k), "err", err)
			}
			return nil
		})
		if h := tx.Bucket(bucketChanMeta).Get(keyChanHistory); h != nil {
			if err := core.LoadHistory(now, h); err != nil {
				n.log.Warn("the stored channel history cache does not load; starting with an empty one", "err", err)
			}
		}
		return nil
	})
	// Load produces no actions worth carrying out; drop any.
	_ = core.Actions()
	return a
}

func (a *channelsApp) Name() string   { return "channels" }
func (a *channelsApp) Ports() []uint8 { return []uint8{broadcast.PortControl} }

// Deliver takes a control message (port 1) and acknowledges it to the
// router once what it changed is stored.
func (a *channelsApp) Deliver(now time.Time, d *routing.Deliver) {
	if d.Anonymous || a.core == nil {
		if !d.Anonymous {
			a.n.ackDelivery(now, d.ID)
		}
		return
	}
	if err := a.core.HandleControl(now, d.From, d.Payload); err != nil {
		a.n.log.Debug("channel control message refused", "from", d.From.Address(), "err", err)
	}
	if err := a.apply(now, nil); err != nil {
		// Not acknowledged: the router delivers it again after a restart.
		a.n.log.Error("storing a channel control message's effects", "err", err)
		return
	}
	a.n.ackDelivery(now, d.ID)
}

// Filter claims channel envelopes and history requests. Relays keep
// flooding channel traffic they cannot read (the router's flood budget
// bounds it): a mesh needs every node to relay, members or not. Envelopes
// too short to be what they claim are dropped, so they cost no airtime.
func (a *channelsApp) Filter(now time.Time, e *envelope.Envelope, _ routing.LinkID, _ string) (routing.FloodVerdict, bool) {
	switch {
	case e.Kind == envelope.KindChannel:
		// Body: type and sender (2), generation (3), AEAD tag (16).
		if len(e.Body) < 5+envelope.TagSize {
			return routing.FloodDrop, true
		}
		return routing.FloodRelay, true
	case e.Kind == envelope.KindQuery && e.Topic == broadcast.TopicHistory:
		// Version 1, reply key (32), max age (4), tag count (1), a tag (4),
		// have count (1).
		if len(e.Body) < 1+32+4+1+4+1 || e.Body[0] != 1 {
			return routing.FloodDrop, true
		}
		return routing.FloodRelay, true
	}
	return 0, false
}

// Flood hands channel messages and history requests to the core.
func (a *channelsApp) Flood(now time.Time, f *routing.FloodReceived) {
	if a.core == nil {
		return
	}
	var err error
	switch f.Kind {
	case envelope.KindChannel:
		err = a.core.HandleChannel(now, f.Data)
		if errors.Is(err, broadcast.ErrUnknownEpoch) || errors.Is(err, broadcast.ErrReplay) {
			err = nil // foreign channels (relays see them all), echoes
		}
	case envelope.KindQuery:
		e, perr := envelope.Parse(f.Data)
		if perr != nil || e.Topic != broadcast.TopicHistory {
			return
		}
		err = a.core.HandleQuery(now, f.Data)
	default:
		return
	}
	if err != nil {
		a.n.log.Debug("channel envelope refused", "kind", f.Kind, "link", f.Link, "err", err)
	}
	if err := a.apply(now, nil); err != nil {
		a.n.log.Error("storing a channel message", "err", err)
	}
}

// AnonReply takes history replies to the core's own requests.
func (a *channelsApp) AnonReply(now time.Time, r *routing.AnonReplyReceived) bool {
	if a.core == nil || !a.core.OwnsToken(r.Token) {
		return false
	}
	if err := a.core.HandleReply(now, r.Token, r.Data); err != nil {
		a.n.log.Debug("history reply refused", "err", err)
	}
	if err := a.apply(now, nil); err != nil {
		a.n.log.Error("storing caught-up channel messages", "err", err)
	}
	return true
}

// LinksChanged implements linkWatcher: when the first link comes up (at
// start, or back from being cut off), ask the neighbours for missed
// history shortly after.
func (a *channelsApp) LinksChanged(now time.Time, up int) {
	if up > 0 && a.links == 0 {
		a.catchUpAt = now.Add(catchUpDelay)
	}
	if up == 0 {
		a.catchUpAt = time.Time{}
	}
	a.links = up
}

func (a *channelsApp) Tick(now time.Time) {
	if a.core == nil {
		return
	}
	if !a.catchUpAt.IsZero() && !now.Before(a.catchUpAt) {
		a.catchUpAt = time.Time{}
		if len(a.core.Channels()) > 0 {
			a.n.log.Debug("asking neighbours for missed channel history")
			a.core.CatchUpAll(now)
		}
	}
	if w := a.core.NextWake(); !w.IsZero() && !now.Before(w) {
		a.core.Tick(now)
	}
	if err := a.apply(now, nil); err != nil {
		a.n.log.Error("storing channel state", "err", err)
	}
}

func (a *channelsApp) NextWake() time.Time {
	if a.core == nil {
		return time.Time{}
	}
	w := a.core.NextWake()
	if !a.catchUpAt.IsZero() && (w.IsZero() || a.catchUpAt.Before(w)) {
		w = a.catchUpAt
	}
	return w
}

// Close stores the history cache (a clean shutdown; the loop has stopped).
func (a *channelsApp) Close() {
	if a.core == nil || a.err != nil {
		return
	}
	a.core.FlushHistory()
	acts := a.core.Actions()
	err := a.n.db.Update(func(tx *bolt.Tx) error {
		for _, act := range acts {
			switch act := act.(type) {
			case *broadcast.SaveHistory:
				if err := tx.Bucket(bucketChanMeta).Put(keyChanHistory, act.State); err != nil {
					return err
				}
			case *broadcast.Save:
				if err := tx.Bucket(bucketChanState).Put(act.Channel[:], act.State); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		a.n.log.Error("storing the channel history cache", "err", err)
	}
}

// apply carries out the core's pending actions the way the core's contract
// asks: every Save, Forget, SaveHistory and Deliver in one bbolt
// transaction (with extra, the caller's own writes), and only once that is
// durable the events and the network actions. If the transaction fails,
// nothing is sent: a key whose reservation is not on disk is never used on
// the air.
func (a *channelsApp) apply(now time.Time, extra func(tx *bolt.Tx) error) error {
	acts := a.core.Actions()
	if len(acts) == 0 && extra == nil {
		return nil
	}
	if a.err != nil {
		return a.err
	}
	var delivered []*ChannelMessage
	err := a.n.db.Update(func(tx *bolt.Tx) error {
		states, meta, msgs := tx.Bucket(bucketChanState), tx.Bucket(bucketChanMeta), tx.Bucket(bucketChanMsgs)
		for _, act := range acts {
			var err error
			switch act := act.(type) {
			case *broadcast.Save:
				err = states.Put(act.Channel[:], act.State)
			case *broadcast.Forget:
				err = states.Delete(act.Channel[:])
			case *broadcast.SaveHistory:
				err = meta.Put(keyChanHistory, act.State)
			case *broadcast.Deliver:
				m := a.messageView(now, act)
				if err = putChannelMessage(msgs, act.Channel, m); err == nil {
					delivered = append(delivered, m)
				}
			}
			if err != nil {
				return err
			}
		}
		if extra != nil {
			return extra(tx)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("channels store: %w", err)
	}
	for _, m := range delivered {
		a.n.hub.publish("channel-message", now, m)
	}
	for _, act := range acts {
		switch act := act.(type) {
		case *broadcast.Event:
			a.onEvent(now, act)
		case *broadcast.Flood:
			if err := a.n.router.Originate(now, act.Raw); err != nil {
				a.n.log.Warn("flooding a channel envelope", "kind", act.Kind, "err", err)
			}
		case *broadcast.SendControl:
			if _, err := a.n.router.Send(now, routing.ToKey(act.To), broadcast.PortControl, act.Payload); err != nil {
				a.n.log.Warn("sending a channel control message", "type", act.Type, "channel", act.Channel, "to", act.To.Address(), "err", err)
			}
		case *broadcast.Reply:
			if err := a.n.router.Reply(now, act.To, broadcast.PortControl, act.Payload); err != nil {
				a.n.log.Warn("answering a history request", "err", err)
			}
		}
	}
	return nil
}

func putChannelMessage(b *bolt.Bucket, id broadcast.ChannelID, m *ChannelMessage) error {
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	m.Seq = seq
	buf, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return b.Put(msgKey(id, seq), buf)
}

func msgKey(id broadcast.ChannelID, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), id[:]...), seq)
}

func (a *channelsApp) channelName(id broadcast.ChannelID) string {
	if info, err := a.core.Info(id); err == nil {
		return info.Name
	}
	return ""
}

func (a *channelsApp) messageView(now time.Time, d *broadcast.Deliver) *ChannelMessage {
	m := &ChannelMessage{Channel: d.Channel.String(), ChannelName: a.channelName(d.Channel), Verified: d.Verified,
		Private: d.Private, Epoch: d.Epoch, Text: strings.ToValidUTF8(string(d.Payload), "\uFFFD"),
		Time: d.Time.UTC(), Received: now.UTC(), History: d.History}
	if d.From != (envelope.PublicKey{}) {
		addr := d.From.Address().String()
		m.From, m.FromKey, m.FromName = addr, d.From.String(), a.n.app.contactByAddress(addr)
	}
	return m
}

func (a *channelsApp) onEvent(now time.Time, ev *broadcast.Event) {
	v := ChannelEventView{Channel: ev.Channel.String(), ChannelName: a.channelName(ev.Channel), Type: ev.Type.String(), Epoch: ev.Epoch}
	if ev.Member != (envelope.PublicKey{}) {
		v.Member, v.MemberKey, v.Role = ev.Member.Address().String(), ev.Member.String(), ev.Role.String()
	}
	if ev.Err != nil {
		v.Error = ev.Err.Error()
	}
	a.n.hub.publish("channel-event", now, v)
	a.n.log.Info("channel event", "channel", ev.Channel, "type", ev.Type, "member", v.Member, "epoch", ev.Epoch, "err", ev.Err)
	var out joinOutcome
	switch ev.Type {
	case broadcast.EventJoined:
		out.joined = true
	case broadcast.EventJoinRefused:
		out.err = fmt.Errorf("%w: %w", broadcast.ErrJoinRefused, ev.Err)
	case broadcast.EventJoinExpired:
		out.err = fmt.Errorf("%w: no welcome came: %w", broadcast.ErrJoinRefused, ev.Err)
	default:
		return
	}
	for _, c := range a.joins[ev.Channel] {
		c <- out
	}
	delete(a.joins, ev.Channel)
}

// ---- API ----

// Routes adds the /v1/channels endpoints (docs/api.md, "Channels").
func (a *channelsApp) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/channels", a.apiList)
	mux.HandleFunc("POST /v1/channels", a.apiCreate)
	mux.HandleFunc("POST /v1/channels/join", a.apiJoin)
	mux.HandleFunc("GET /v1/channels/{ch}", a.apiInfo)
	mux.HandleFunc("DELETE /v1/channels/{ch}", a.apiLeave)
	mux.HandleFunc("GET /v1/channels/{ch}/members", a.apiMembers)
	mux.HandleFunc("POST /v1/channels/{ch}/members/remove", a.apiRemove)
	mux.HandleFunc("POST /v1/channels/{ch}/members/role", a.apiRole)
	mux.HandleFunc("GET /v1/channels/{ch}/requests", a.apiRequests)
	mux.HandleFunc("POST /v1/channels/{ch}/requests/admit", a.apiAdmit)
	mux.HandleFunc("POST /v1/channels/{ch}/requests/reject", a.apiReject)
	mux.HandleFunc("POST /v1/channels/{ch}/invites", a.apiInvite)
	mux.HandleFunc("POST /v1/channels/{ch}/messages", a.apiSend)
	mux.HandleFunc("GET /v1/channels/{ch}/messages", a.apiHistory)
	mux.HandleFunc("POST /v1/channels/{ch}/catchup", a.apiCatchUp)
}

// failChannel maps the broadcast errors to statuses; the rest goes to fail.
func failChannel(w http.ResponseWriter, err error) {
	type m struct {
		err    error
		status int
		code   string
	}
	for _, c := range []m{
		{broadcast.ErrUnknownChannel, http.StatusNotFound, "unknown_channel"},
		{broadcast.ErrNoJoinRequest, http.StatusNotFound, "no_join_request"},
		{ErrUnknownMember, http.StatusUnprocessableEntity, "unknown_member"},
		{broadcast.ErrInviteCorrupt, http.StatusBadRequest, "invite_corrupt"},
		{broadcast.ErrInviteExpired, http.StatusConflict, "invite_expired"},
		{broadcast.ErrInviteUsed, http.StatusConflict, "invite_used"},
		{broadcast.ErrInviteInvalid, http.StatusConflict, "invite_invalid"},
		{broadcast.ErrJoinRefused, http.StatusConflict, "join_refused"},
		{ErrAmbiguousChannel, http.StatusConflict, "ambiguous_channel"},
		{broadcast.ErrAlreadyMember, http.StatusConflict, "already_member"},
		{broadcast.ErrLastOwner, http.StatusConflict, "last_owner"},
		{broadcast.ErrOpenChannel, http.StatusConflict, "open_channel"},
		{broadcast.ErrExhausted, http.StatusConflict, "exhausted"},
		{broadcast.ErrNotMember, http.StatusForbidden, "not_member"},
		{broadcast.ErrNotAllowed, http.StatusForbidden, "not_allowed"},
		{broadcast.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
		{broadcast.ErrRateLimited, http.StatusTooManyRequests, "rate_limited"},
		{broadcast.ErrMalformed, http.StatusBadRequest, "bad_request"},
	} {
		if errors.Is(err, c.err) {
			writeError(w, c.status, c.code, err)
			return
		}
	}
	fail(w, err)
}

// do runs f on the loop with the core, then carries out its actions; an
// error from f is returned as is (the core changed nothing then, but may
// have pending actions of earlier events, which are carried out anyway).
func (a *channelsApp) do(ctx context.Context, f func(now time.Time) error) error {
	if a.err != nil {
		return a.err
	}
	var ferr error
	err := a.n.call(ctx, func(now time.Time) {
		ferr = f(now)
		if err := a.apply(now, nil); err != nil && ferr == nil {
			ferr = err
		}
	})
	if err != nil {
		return err
	}
	return ferr
}

// resolve finds a channel by id (32 hex digits) or name, on the loop.
func (a *channelsApp) resolve(ref string) (broadcast.ChannelID, error) {
	ref = strings.TrimSpace(ref)
	if id, err := broadcast.ParseChannelID(ref); err == nil {
		if _, err := a.core.Info(id); err == nil {
			return id, nil
		}
	}
	ids := a.core.Lookup(ref)
	switch len(ids) {
	case 0:
		return broadcast.ChannelID{}, fmt.Errorf("%w: %q (not the id or name of a channel this node holds)", broadcast.ErrUnknownChannel, ref)
	case 1:
		return ids[0], nil
	}
	return broadcast.ChannelID{}, fmt.Errorf("%w: %d channels are named %q; use the id", ErrAmbiguousChannel, len(ids), ref)
}

// member finds a member or requester of a channel by key, contact name or
// address, on the loop.
func (a *channelsApp) member(id broadcast.ChannelID, ref string) (envelope.PublicKey, error) {
	ref = strings.TrimSpace(ref)
	if len(ref) == 2*envelope.PublicKeySize {
		k, err := parseKeyHex(ref)
		if err != nil {
			return k, fmt.Errorf("%w: %v", ErrUnknownMember, err)
		}
		return k, nil
	}
	if c, err := a.n.app.contact(ref); err == nil {
		if c.Key != "" {
			return parseKeyHex(c.Key)
		}
		ref = c.Address
	}
	if len(ref) == 2*envelope.AddressSize {
		members, _ := a.core.Members(id)
		members = append(members, a.core.JoinRequests(id)...)
		for _, m := range members {
			if m.Key.Address().String() == strings.ToLower(ref) {
				return m.Key, nil
			}
		}
	}
	return envelope.PublicKey{}, fmt.Errorf("%w: %q is not a key, a contact with a known key, or the address of a member or requester", ErrUnknownMember, ref)
}

func (a *channelsApp) view(info broadcast.Info) ChannelView {
	v := ChannelView{ID: info.ID.String(), Name: info.Name, Policy: info.Policy.String(), Private: info.Private,
		Signed: info.Policy.Signed(), Announce: info.Policy&broadcast.PolicyAnnounce != 0, Status: info.Status.String(),
		Epoch: info.Epoch, Members: info.Members, EpochSince: info.EpochSince.UTC(), JoinRequests: len(a.core.JoinRequests(info.ID))}
	if info.Private && info.Status != broadcast.StatusJoining {
		v.Role, v.EpochHash = info.Role.String(), info.EpochHash.String()
	}
	return v
}

func (a *channelsApp) apiList(w http.ResponseWriter, r *http.Request) {
	var out []ChannelView
	err := a.do(r.Context(), func(now time.Time) error {
		out = []ChannelView{}
		for _, info := range a.core.Channels() {
			out = append(out, a.view(info))
		}
		return nil
	})
	if err != nil {
		failChannel(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *channelsApp) apiCreate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name   string `json:"name"`
		Policy string `json:"policy"` // "", "signed", "announce"
	}
	if err := readJSON(w, r, &req); err != nil {
		fail(w, err)
		return
	}
	var policy broadcast.Policy
	switch req.Policy {
	case "", "private":
	case "signed":
		policy = broadcast.PolicySigned
	case "announce":
		policy = broadcast.PolicyAnnounce
	default:
		fail(w, fmt.Errorf("%w: policy %q is not \"\", \"signed\" or \"announce\" (open channels are joined by name: POST /v1/channels/join)", ErrBadRequest, req.Policy))
		return
	}
	if err := validChannelName(req.Name); err != nil {
		fail(w, err)
		return
	}
	var v ChannelView
	err := a.do(r.Context(), func(now time.Time) error {
		id, err := a.core.Create(now, req.Name, policy)
		if err != nil {
			return err
		}
		info, _ := a.core.Info(id)
		v = a.view(info)
		return nil
	})
	if err != nil {
		failChannel(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func validChannelName(s string) error {
	if strings.TrimSpace(s) == "" || len(s) > broadcast.MaxName || !utf8.ValidString(s) || !utfPrintable(s) {
		return fmt.Errorf("%w: a channel name is 1-%d bytes of printable UTF-8", ErrBadRequest, broadcast.MaxName)
	}
	return nil
}

func (a *channelsApp) apiJoin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Code   string `json:"code"`
		Open   string `json:"open"`   // name of an open channel instead of a code
		Signed bool   `json:"signed"` // the signed open channel of that name
		// WaitSeconds: wait this long for the inviter's welcome or refusal.
		WaitSeconds float64 `json:"wait_seconds"`
	}
	if err := readJSON(w, r, &req); err != nil {
		fail(w, err)
		return
	}
	if (req.Code == "") == (req.Open == "") {
		fail(w, fmt.Errorf("%w: give either code or open", ErrBadRequest))
		return
	}
	if req.Open != "" {
		if err := validChannelName(req.Open); err != nil {
			fail(w, err)
			return
		}
	}
	wait := time.Duration(req.WaitSeconds * float64(time.Second))
	if wait < 0 || wait > maxJoinWait {
		fail(w, fmt.Errorf("%w: wait_seconds must be within 0..%d", ErrBadRequest, int(maxJoinWait/time.Second)))
		return
	}
	var id broadcast.ChannelID
	var done chan joinOutcome
	err := a.do(r.Context(), func(now time.Time) error {
		var err error
		if req.Open != "" {
			id, err = a.core.JoinOpen(now, req.Open, req.Signed)
			return err
		}
		id, err = a.core.Join(now, req.Code)
		if err == nil && wait > 0 {
			done = make(chan joinOutcome, 1)
			a.joins[id] = append(a.joins[id], done)
		}
		return err
	})
	if err != nil {
		failChannel(w, err)
		return
	}
	if done != nil {
		t := time.NewTimer(wait)
		select {
		case out := <-done:
			if out.err != nil {
				failChannel(w, out.err)
				return
			}
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
	}
	a.writeChannel(w, r, id, http.StatusAccepted)
}

// writeChannel answers with the channel's current view.
func (a *channelsApp) writeChannel(w http.ResponseWriter, r *http.Request, id broadcast.ChannelID, status int) {
	var v ChannelView
	err := a.do(r.Context(), func(now time.Time) error {
		info, err := a.core.Info(id)
		if err != nil {
			return err
		}
		v = a.view(info)
		return nil
	})
	if err != nil {
		failChannel(w, err)
		return
	}
	writeJSON(w, status, v)
}

func (a *channelsApp) apiInfo(w http.ResponseWriter, r *http.Request) {
	var v ChannelView
	err := a.do(r.Context(), func(now time.Time) error {
		id, err := a.resolve(r.PathValue("ch"))
		if err != nil {
			return err
		}
		info, err := a.core.Info(id)
		v = a.view(info)
		return err
	})
	if err != nil {
		failChannel(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// apiLeave leaves the channel and forgets it, with the messages stored for
// it (in the same transaction as the core's Forget).
func (a *channelsApp) apiLeave(w http.ResponseWriter, r *http.Request) {
	if a.err != nil {
		failChannel(w, a.err)
		return
	}
	var lerr error
	err := a.n.call(r.Context(), func(now time.Time) {
		id, err := a.resolve(r.PathValue("ch"))
		if err != nil {
			lerr = err
			return
		}
		if err := a.core.Leave(now, id); err != nil {
			lerr = err
			_ = a.apply(now, nil)
			return
		}
		lerr = a.apply(now, func(tx *bolt.Tx) error { return deleteChannelMessages(tx.Bucket(bucketChanMsgs), id) })
	})
	if err == nil {
		err = lerr
	}
	if err != nil {
		failChannel(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func deleteChannelMessages(b *bolt.Bucket, id broadcast.ChannelID) error {
	c := b.Cursor()
	for k, _ := c.Seek(id[:]); k != nil && bytes.HasPrefix(k, id[:]); k, _ = c.Seek(id[:]) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func (a *channelsApp) memberViews(ms []broadcast.Member) []MemberView {
	self := a.n.id.PublicKey()
	out := make([]MemberView, 0, len(ms))
	for _, m := range ms {
		addr := m.Key.Address().String()
		out = append(out, MemberView{Address: addr, PublicKey: m.Key.String(), Fingerprint: m.Key.Fingerprint(),
			Name: a.n.app.contactByAddress(addr), Role: m.Role.String(), Self: m.Key == self})
	}
	return out
}

func (a *channelsApp) apiMembers(w http.ResponseWriter, r *http.Request) {
	var out []MemberView
	err := a.do(r.Context(), func(now time.Time) error {
		id, err := a.resolve(r.PathValue("ch"))
		if err != nil {
			return err
		}
		ms, err := a.core.Members(id)
		out = a.memberViews(ms)
		return err
	})
	if err != nil {
		failChannel(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *channelsApp) apiRequests(w http.ResponseWriter, r *http.Request) {
	var out []MemberView
	err := a.do(r.Context(), func(now time.Time) error {
		id, err := a.resolve(r.PathValue("ch"))
		if err != nil {
			return err
		}
		out = a.memberViews(a.core.JoinRequests(id))
		return nil
	})
	if err != nil {
		failChannel(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// membersOp reads {"members": [...]} and applies op to the resolved keys.
func (a *channelsApp) membersOp(w http.ResponseWriter, r *http.Request, op func(now time.Time, id broadcast.ChannelID, keys []envelope.PublicKey) error) {
	var req struct {
		Members []string `json:"members"`
	}
	if err := readJSON(w, r, &req); err != nil {
		fail(w, err)
		return
	}
	if len(req.Members) == 0 || len(req.Members) > broadcast.MaxMembers {
		fail(w, fmt.Errorf("%w: members must name 1-%d members", ErrBadRequest, broadcast.MaxMembers))
		return
	}
	var id broadcast.ChannelID
	err := a.do(r.Context(), func(now time.Time) error {
		var err error
		if id, err = a.resolve(r.PathValue("ch")); err != nil {
			return err
		}
		keys := make([]envelope.PublicKey, 0, len(req.Members))
		for _, m := range req.Members {
			k, err := a.member(id, m)
			if err != nil {
				return err
			}
			keys = append(keys, k)
		}
		return op(now, id, keys)
	})
	if err != nil {
		failChannel(w, err)
		return
	}
	a.writeChannel(w, r, id, http.StatusOK)
}

func (a *channelsApp) apiRemove(w http.ResponseWriter, r *http.Request) {
	a.membersOp(w, r, func(now time.Time, id broadcast.ChannelID, keys []envelope.PublicKey) error {
		return a.core.Remove(now, id, keys...)
	})
}

func (a *channelsApp) apiAdmit(w http.ResponseWriter, r *http.Request) {
	a.membersOp(w, r, func(now time.Time, id broadcast.ChannelID, keys []envelope.PublicKey) error {
		return a.core.Admit(now, id, keys...)
	})
}

func (a *channelsApp) apiReject(w http.ResponseWriter, r *http.Request) {
	a.membersOp(w, r, func(now time.Time, id broadcast.ChannelID, keys []envelope.PublicKey) error {
		for _, k := range keys {
			if err := a.core.Reject(now, id, k); err != nil {
				return err
			}
		}
		return nil
	})
}

func (a *channelsApp) apiRole(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Member string `json:"member"`
		Role   string `json:"role"`
	}
	if err := readJSON(w, r, &req); err != nil {
		fail(w, err)
		return
	}
	role, err := broadcast.ParseRole(req.Role)
	if err != nil {
		fail(w, fmt.Errorf("%w: role %q is not member, admin or owner", ErrBadRequest, req.Role))
		return
	}
	var id broadcast.ChannelID
	err = a.do(r.Context(), func(now time.Time) error {
		var err error
		if id, err = a.resolve(r.PathValue("ch")); err != nil {
			return err
		}
		k, err := a.member(id, req.Member)
		if err != nil {
			return err
		}
		return a.core.SetRole(now, id, k, role)
	})
	if err != nil {
		failChannel(w, err)
		return
	}
	a.writeChannel(w, r, id, http.StatusOK)
}

func (a *channelsApp) apiInvite(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Uses       int     `json:"uses"`
		TTLSeconds float64 `json:"ttl_seconds"`
		Role       string  `json:"role"`
		Approve    bool    `json:"approve"`
	}
	if err := readJSON(w, r, &req); err != nil {
		fail(w, err)
		return
	}
	o := broadcast.InviteOptions{MaxUses: req.Uses, TTL: time.Duration(req.TTLSeconds * float64(time.Second)), Approve: req.Approve}
	if req.Uses < 0 || req.Uses > 255 {
		fail(w, fmt.Errorf("%w: uses must be within 1..255 (0: 1)", ErrBadRequest))
		return
	}
	if req.TTLSeconds < 0 || req.TTLSeconds > 365*24*3600 {
		fail(w, fmt.Errorf("%w: ttl_seconds must be within 0..%d (0: 24 h)", ErrBadRequest, 365*24*3600))
		return
	}
	if req.Role != "" {
		role, err := broadcast.ParseRole(req.Role)
		if err != nil {
			fail(w, fmt.Errorf("%w: role %q is not member, admin or owner", ErrBadRequest, req.Role))
			return
		}
		o.Role = role
	}
	var v InviteView
	err := a.do(r.Context(), func(now time.Time) error {
		id, err := a.resolve(r.PathValue("ch"))
		if err != nil {
			return err
		}
		inv, err := a.core.Invite(now, id, o)
		if err != nil {
			return err
		}
		// a.do stores the invite before the code is shown (the core's rule).
		code := inv.Code()
		v = InviteView{Channel: id.String(), Code: code, Grouped: groupCode(code), Expires: inv.Expires.UTC(),
			Uses: max(1, o.MaxUses), Role: o.Role.String(), Approve: o.Approve}
		return nil
	})
	if err != nil {
		failChannel(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

// groupCode writes a code's base32 part in groups of five (joined by dashes,
// which parsing ignores).
func groupCode(code string) string {
	prefix, body, ok := strings.Cut(code, "JOIN:")
	if !ok {
		return code
	}
	var b strings.Builder
	b.WriteString(prefix + "JOIN:")
	for i := 0; i < len(body); i += 5 {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(body[i:min(i+5, len(body))])
	}
	return b.String()
}

func (a *channelsApp) apiSend(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Text string `json:"text"`
	}
	if err := readJSON(w, r, &req); err != nil {
		fail(w, err)
		return
	}
	if req.Text == "" || !utf8.ValidString(req.Text) {
		fail(w, fmt.Errorf("%w: text must be non-empty UTF-8", ErrBadRequest))
		return
	}
	var m *ChannelMessage
	if a.err != nil {
		failChannel(w, a.err)
		return
	}
	var serr error
	err := a.n.call(r.Context(), func(now time.Time) {
		id, err := a.resolve(r.PathValue("ch"))
		if err != nil {
			serr = err
			return
		}
		if err := a.core.Send(now, id, []byte(req.Text)); err != nil {
			serr = err
			_ = a.apply(now, nil)
			return
		}
		info, _ := a.core.Info(id)
		self := a.n.id.PublicKey()
		m = &ChannelMessage{Channel: id.String(), ChannelName: info.Name, From: self.Address().String(), FromKey: self.String(),
			Verified: info.Policy.Signed(), Private: info.Private, Epoch: info.Epoch, Text: req.Text,
			Time: now.UTC(), Received: now.UTC(), Own: true}
		serr = a.apply(now, func(tx *bolt.Tx) error { return putChannelMessage(tx.Bucket(bucketChanMsgs), id, m) })
		if serr == nil {
			a.n.hub.publish("channel-message", now, m)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		failChannel(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, m)
}

func (a *channelsApp) apiHistory(w http.ResponseWriter, r *http.Request) {
	after, err := queryInt(r, "after", 0)
	if err != nil {
		fail(w, err)
		return
	}
	limit, err := queryInt(r, "limit", 1000)
	if err != nil {
		fail(w, err)
		return
	}
	limit = min(max(limit, 1), 10000)
	var id broadcast.ChannelID
	err = a.do(r.Context(), func(now time.Time) error {
		found, err := a.resolve(r.PathValue("ch"))
		id = found
		return err
	})
	if err != nil {
		failChannel(w, err)
		return
	}
	out := []ChannelMessage{}
	err = a.n.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketChanMsgs).Cursor()
		for k, v := seekAfter(c, msgKey(id, after)); k != nil && bytes.HasPrefix(k, id[:]) && uint64(len(out)) < limit; k, v = c.Next() {
			var m ChannelMessage
			if err := decodeRecord(k, v, &m); err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *channelsApp) apiCatchUp(w http.ResponseWriter, r *http.Request) {
	var id broadcast.ChannelID
	err := a.do(r.Context(), func(now time.Time) error {
		var err error
		if id, err = a.resolve(r.PathValue("ch")); err != nil {
			return err
		}
		return a.core.CatchUp(now, id)
	})
	if err != nil {
		failChannel(w, err)
		return
	}
	a.writeChannel(w, r, id, http.StatusAccepted)
}
