package node

// Read-only views the web UI needs besides the CLI's endpoints: the radio's
// airtime budget, and direct messages grouped by peer (docs/api.md, "Views").

import (
	"fmt"
	http "github.com/openmeshd/meshd/node/httpd"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/openmeshd/meshd/envelope"
)

func (n *Node) viewRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/radio", n.apiRadio)
	mux.HandleFunc("GET /v1/conversations", n.apiConversations)
	mux.HandleFunc("GET /v1/conversations/{peer}", n.apiConversation)
}

// RadioView is the LoRa radio's configuration and duty-cycle budget.
type RadioView struct {
	Present      bool    `json:"present"` // a LoRa device is configured
	Connected    bool    `json:"connected"`
	Device       string  `json:"device,omitempty"`
	Region       string  `json:"region,omitempty"`
	FrequencyHz  uint32  `json:"frequency_hz,omitempty"`
	BandwidthHz  uint32  `json:"bandwidth_hz,omitempty"`
	SF           int     `json:"spreading_factor,omitempty"`
	DutyCycle    float64 `json:"duty_cycle"`            // share of airtime allowed (0: none configured, listen only)
	AirtimeUsed  float64 `json:"airtime_used_seconds"`  // in the rolling window
	AirtimeLimit float64 `json:"airtime_limit_seconds"` // per window
	Window       float64 `json:"window_seconds"`
	AirtimeTotal float64 `json:"airtime_total_seconds"` // since start
	Deferred     uint64  `json:"deferred"`              // frames that waited for budget
	Disconnects  uint64  `json:"disconnects"`
}

func (n *Node) apiRadio(w http.ResponseWriter, r *http.Request) {
	var v RadioView
	// On the loop: the transports are built after the API starts.
	err := n.call(r.Context(), func(time.Time) {
		if n.lora == nil || n.radio == nil {
			return
		}
		st := n.lora.Stats()
		o := n.radio.opts
		v = RadioView{Present: true, Connected: st.Connected, Device: o.Port, Region: o.Region, FrequencyHz: o.FrequencyHz,
			BandwidthHz: o.BandwidthHz, SF: o.SF, DutyCycle: n.radio.dutyCycle,
			AirtimeUsed: st.Budget.Used.Seconds(), AirtimeLimit: st.Budget.Limit.Seconds(), Window: st.Budget.Window.Seconds(),
			AirtimeTotal: st.Budget.Total.Seconds(), Disconnects: st.Disconnects}
		for _, d := range st.Budget.Deferred {
			v.Deferred += d
		}
	})
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// ConversationView summarises the direct messages exchanged with one peer.
type ConversationView struct {
	Peer     string      `json:"peer"`                   // address
	Name     string      `json:"name,omitempty"`         // contact petname
	Claimed  string      `json:"claimed_name,omitempty"` // self-chosen, unverified
	Verified bool        `json:"verified"`               // contact's safety number compared
	Messages int         `json:"messages"`
	Unread   int         `json:"unread"`
	Last     ConvMessage `json:"last"`
}

// ConvMessage is one direct message in a conversation, either direction.
type ConvMessage struct {
	Dir    string    `json:"dir"`           // "in" or "out"
	ID     uint64    `json:"id,omitempty"`  // outbox id (out)
	Seq    uint64    `json:"seq,omitempty"` // inbox seq (in)
	Text   string    `json:"text"`
	Time   time.Time `json:"time"`             // received (in) or created (out)
	State  string    `json:"state,omitempty"`  // out: accepted ... delivered, expired, failed
	Reason string    `json:"reason,omitempty"` // out: why expired or failed
	Read   bool      `json:"read,omitempty"`   // in
}

// conversations reads the whole inbox and outbox once, grouped by peer
// address, each oldest first.
func (n *Node) conversations() (map[string][]ConvMessage, map[string]string, error) {
	byPeer := map[string][]ConvMessage{}
	claimed := map[string]string{}
	err := n.app.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
			var m OutMessage
			if err := decodeRecord(k, v, &m); err != nil {
				return err
			}
			byPeer[m.To] = append(byPeer[m.To], ConvMessage{Dir: "out", ID: m.ID, Text: m.Text, Time: m.Created, State: m.State, Reason: m.Reason})
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketInbox).ForEach(func(k, v []byte) error {
			var m InMessage
			if err := decodeRecord(k, v, &m); err != nil {
				return err
			}
			byPeer[m.From] = append(byPeer[m.From], ConvMessage{Dir: "in", Seq: m.Seq, Text: m.Text, Time: m.Received, Read: m.Read})
			if m.Claimed != "" {
				claimed[m.From] = m.Claimed
			}
			return nil
		})
	})
	for _, ms := range byPeer {
		sort.SliceStable(ms, func(i, j int) bool { return ms[i].Time.Before(ms[j].Time) })
	}
	return byPeer, claimed, err
}

func (n *Node) apiConversations(w http.ResponseWriter, r *http.Request) {
	byPeer, claimed, err := n.conversations()
	if err != nil {
		fail(w, err)
		return
	}
	cs, err := n.app.contacts()
	if err != nil {
		fail(w, err)
		return
	}
	contact := map[string]Contact{}
	for _, c := range cs {
		contact[c.Address] = c
	}
	out := make([]ConversationView, 0, len(byPeer))
	for peer, ms := range byPeer {
		v := ConversationView{Peer: peer, Name: contact[peer].Name, Verified: contact[peer].Verified, Claimed: claimed[peer], Messages: len(ms), Last: ms[len(ms)-1]}
		for _, m := range ms {
			if m.Dir == "in" && !m.Read {
				v.Unread++
			}
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Last.Time.Equal(out[j].Last.Time) {
			return out[i].Last.Time.After(out[j].Last.Time)
		}
		return out[i].Peer < out[j].Peer
	})
	writeJSON(w, http.StatusOK, out)
}

// apiConversation lists the newest ?limit=N (default 200, at most 10000)
// messages with one peer, oldest first; {peer} is an address, a public key
// or a contact name.
func (n *Node) apiConversation(w http.ResponseWriter, r *http.Request) {
	limit, err := queryInt(r, "limit", 200)
	if err != nil {
		fail(w, err)
		return
	}
	peer := strings.TrimSpace(r.PathValue("peer"))
	addr := ""
	if a, err := envelope.ParseAddress(peer); err == nil {
		addr = a.String()
	} else if k, err := parseKeyHex(peer); err == nil {
		addr = k.Address().String()
	} else if c, err := n.app.contact(peer); err == nil {
		addr = c.Address
	} else {
		fail(w, fmt.Errorf("%w: %q is not an address, key or contact name", ErrNotFound, peer))
		return
	}
	byPeer, _, err := n.conversations()
	if err != nil {
		fail(w, err)
		return
	}
	ms := byPeer[addr]
	if l := int(min(limit, 10000)); len(ms) > l {
		ms = ms[len(ms)-l:]
	}
	if ms == nil {
		ms = []ConvMessage{}
	}
	writeJSON(w, http.StatusOK, ms)
}
