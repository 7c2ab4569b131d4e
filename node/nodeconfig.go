package node

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/openmeshd/meshd/fapp"
	"github.com/openmeshd/meshd/node/config"
)

// DefaultPort is the TCP port meshd listens on for mesh links.
const DefaultPort = 4731

// ConfigFile is the config file's name in the data directory (or /etc/meshd
// for a system service).
const ConfigFile = "meshd.conf"

// EnvPrefix prefixes environment overrides: MESHD_LISTEN, MESHD_LORA_REGION…
const EnvPrefix = "MESHD_"

// Config is the daemon's configuration. The `key` tag is the config file
// key (a nested struct is a [section]); the `doc` tag is its documentation,
// shown by `meshd init` and in docs/configuration.md. Every zero value is
// documented; Defaults returns what a node runs with when nothing is set.
type Config struct {
	Name    string `key:"name" doc:"Display name sent in announces. Others see it marked as unverified: it is whatever this node claims. Empty: none."`
	DataDir string `key:"data_dir" doc:"Where the identity key, the store and the API socket live. Empty: $MESHD_DATA, else /var/lib/meshd as root, else ~/.local/share/meshd."`

	TCP struct {
		Listen     string   `key:"listen" doc:"Address to accept mesh links on (host:port; \":4731\" is every interface). Empty: accept none, dial out only."`
		Peers      []string `key:"peers" doc:"Static peers, always kept linked: \"host:port\", or \"host:port#ADDRESS\" to pin the peer's 32-hex-digit meshd address (a different key there is refused)."`
		MDNS       bool     `key:"mdns" doc:"Find and link up with other meshd nodes on the local networks by mDNS (_meshd._tcp), and answer their queries."`
		NetworkKey string   `key:"network_key" doc:"Private mesh: 64 hex digits every member holds (meshd keygen writes one). Nodes without it cannot link. Empty: an open mesh."`
		PQ         bool     `key:"pq" doc:"Hybrid post-quantum handshake (X25519 + ML-KEM-768) with peers that support it."`
	} `key:"tcp"`

	LoRa struct {
		Device    string  `key:"device" doc:"Serial port of an RNode LoRa radio, e.g. /dev/ttyUSB0 (meshd radio list shows candidates). Empty: no LoRa."`
		Region    string  `key:"region" doc:"Regulatory region (EU868, US915, ...; meshd radio regions lists them). Required before meshd transmits at all: it sets the legal duty cycle."`
		Frequency int     `key:"frequency" doc:"Centre frequency in Hz. 0: the region's default mesh channel."`
		Bandwidth int     `key:"bandwidth" doc:"Bandwidth in Hz (125000, 250000, 500000). 0: 125000."`
		SF        int     `key:"spreading_factor" doc:"Spreading factor 7-12. 0: 9."`
		CR        int     `key:"coding_rate" doc:"Coding rate 5-8 (4/5 ... 4/8). 0: 5."`
		TxPower   int     `key:"tx_power" doc:"Transmit power in dBm. 0: the region's limit, capped at 14 dBm."`
		DutyCycle float64 `key:"duty_cycle" doc:"Share of airtime meshd may use, below the region's legal limit (0.01 = 1%). 0: the legal limit."`
	} `key:"lora"`

	Libp2p struct {
		Enabled   bool     `key:"enabled" doc:"Bridge this node's mesh to other islands over the internet with libp2p (GossipSub floods, rendezvous by signed peer records on GossipSub, envelope streams). Off by default: it costs memory and traffic a pure radio or LAN node does not need. Routers built with -tags router have no libp2p at all."`
		Listen    []string `key:"listen" doc:"libp2p listen multiaddrs. Empty: dial out only."`
		Bootstrap []string `key:"bootstrap" doc:"Bootstrap peers: multiaddrs ending in /p2p/PEER_ID (a node logs its peer_id at start: \"libp2p enabled\"). Any meshd node with libp2p on can serve. Empty: none (peers come from mDNS and from the peer records of nodes already connected)."`
		MDNS      bool     `key:"mdns" doc:"Also find libp2p peers on the local networks by mDNS (_meshd-libp2p._udp). Off by default: tcp.mdns already links meshd nodes on a LAN. Only in builds with -tags libp2pmdns (it costs 1 MB): elsewhere true is an error at start."`
		QUIC      bool     `key:"quic" doc:"Also listen on and dial QUIC (add a /udp/PORT/quic-v1 address to libp2p.listen). Only in amd64 and arm64 builds with -tags quic (it costs 1.6 MB): elsewhere true is an error at start."`
		DHTClient bool     `key:"dht_client" doc:"Query the DHT without serving it (for nodes that others cannot reach). Only builds with -tags dht have a DHT (it costs 2.9 MB; release builds have none): elsewhere true is an error at start."`
		MaxMemory int      `key:"max_memory" doc:"Bytes the libp2p resource manager may reserve for connections and streams (upper bounds of buffers, not resident memory; one peer may reserve a twelfth)."`
		MaxConns  int      `key:"max_conns" doc:"Open libp2p connections at most."`
		ConnsLow  int      `key:"conns_low" doc:"Connection manager low watermark: trimming stops here."`
		ConnsHigh int      `key:"conns_high" doc:"Connection manager high watermark: above it the least useful connections are closed (those carrying links last)."`
	} `key:"libp2p"`

	API struct {
		Socket    string `key:"socket" doc:"Unix socket of the local API (mode 0660). Empty: meshd.sock in the data directory."`
		Listen    string `key:"listen" doc:"Also serve the API on this TCP address (host:port), with a bearer token. Empty: unix socket only."`
		TokenFile string `key:"token_file" doc:"File holding the bearer token for api.listen (created with a random token if missing). Empty: api.token in the data directory."`
	} `key:"api"`

	Web struct {
		Listen  string   `key:"listen" doc:"Serve the web UI (and the API behind its login) on this address, e.g. \"0.0.0.0:8080\". Empty: off. The operator sets the login password with meshd web passwd (docs/webui.md)."`
		TLS     bool     `key:"tls" doc:"Serve the web UI over HTTPS. Without tls_cert and tls_key a self-signed certificate is generated on first start (web-tls.crt and web-tls.key in the data directory; its fingerprint is logged). Off: plain HTTP, readable by anyone on the network (docs/webui.md). Not in the router build (-tags router) nor with -tags nowebtls: there true is an error at start."`
		TLSCert string   `key:"tls_cert" doc:"Certificate file (PEM) for web.tls, e.g. one your own CA issued. Empty: the self-signed one."`
		TLSKey  string   `key:"tls_key" doc:"Private key file (PEM) of web.tls_cert. Empty: the self-signed one."`
		Hosts   []string `key:"hosts" doc:"Host names the web UI answers to besides IP addresses, localhost, single-label names and names under .lan, .local, .home.arpa and .internal; other Host headers are refused (DNS-rebinding protection). Empty: just those."`
	} `key:"web"`

	Routing struct {
		AnnounceInterval time.Duration `key:"announce_interval" doc:"Base time between this node's announces. Radio links stretch it to stay within announce_share."`
		AnnounceShare    float64       `key:"announce_share" doc:"Share of a radio link's airtime that announces, path finding and flood relays may use."`
		MaxHops          int           `key:"max_hops" doc:"How far announces travel and the TTL of what this node sends (1-255)."`
		MessageTTL       time.Duration `key:"message_ttl" doc:"How long an undelivered message is retried and a held message kept."`
		HeldBytes        int           `key:"held_bytes" doc:"Bytes of other nodes' messages this node holds for store-and-forward."`
		CommitDelay      time.Duration `key:"commit_delay" doc:"Groups store writes: at most one transaction per this interval (flash wear). Acknowledgements wait for the commit."`
	} `key:"routing"`

	Log struct {
		Level  string `key:"level" doc:"debug, info, warn or error."`
		Format string `key:"format" doc:"text or json."`
	} `key:"log"`

	Messages struct {
		MaxText int `key:"max_text" doc:"Longest direct message accepted, in bytes of UTF-8."`
	} `key:"messages"`

	// FAPP is the free-appointment application (docs/fapp.md). Every node
	// caches and relays therapists' slot announces and answers searches
	// whatever its role.
	FAPP struct {
		Role             string        `key:"role" doc:"What this node's users may do with FAPP: any (default), therapist (announce slots and answer reservations, no patient operations), patient (search and reserve, no therapist operations: e.g. a router whose web UI patients use), relay (neither; cache, relay and answer searches only). Local search works in every role."`
		Anchors          []string      `key:"anchors" doc:"Trust anchors whose endorsements mark a therapist as verified: \"KEY NAME\", the anchor's public key (64 hex digits, meshd id shows it) and the name shown to patients, e.g. \"3b6a...e1 Psychotherapeutenkammer Bayern\". Empty: every therapist shows as unverified."`
		QueryBits        int           `key:"query_bits" doc:"Proof-of-work difficulty (leading zero bits) this node puts on its network searches and requires of others' (1-28). Every node of a mesh should use the same: a node requiring more drops the others' searches."`
		ReserveBits      int           `key:"reserve_bits" doc:"Proof-of-work difficulty of reservations (1-28): put on this node's reservations and required of reservations a therapist's node receives."`
		CacheEntries     int           `key:"cache_entries" doc:"Announce pages the cache keeps (each at most one LoRa frame)."`
		CacheBytes       int           `key:"cache_bytes" doc:"Memory bound of the announce cache in bytes (wire bytes plus 256 per page)."`
		QueryTTL         int           `key:"query_ttl" doc:"How many hops a network search travels (1-32)."`
		AnnounceBudget   int           `key:"announce_budget" doc:"Largest own announce in bytes (at most 254); slots beyond it go to further pages. 240 keeps one announce in one LoRa frame on air."`
		AnnounceLifetime time.Duration `key:"announce_lifetime" doc:"How long this therapist's announces live (at most 7 days); they are refreshed at half of it."`
		PublishDelay     time.Duration `key:"publish_delay" doc:"Slot and profile changes within this delay go out in one announce."`
		AutoConfirm      bool          `key:"auto_confirm" doc:"Therapist: confirm the first valid reservation of a free slot at once instead of waiting for meshd fapp confirm."`
		AnswerSpread     time.Duration `key:"answer_spread" doc:"Answers to others' network searches go out at a random instant within this long, so that a patient's neighbours do not all transmit at once. 0: 20s when a LoRa radio is configured (lora.device), else at once."`
	} `key:"fapp"`
}

// Defaults returns the embedded defaults: a node that needs no config file.
func Defaults() Config {
	var c Config
	c.TCP.Listen = fmt.Sprintf(":%d", DefaultPort)
	c.TCP.Peers = []string{}
	c.TCP.MDNS = true
	c.TCP.PQ = true
	c.Libp2p.Listen = []string{"/ip4/0.0.0.0/tcp/4732", "/ip6/::/tcp/4732"}
	c.Libp2p.Bootstrap = []string{}
	c.Libp2p.MaxMemory = 48 << 20
	c.Libp2p.MaxConns = 64
	c.Libp2p.ConnsLow = 16
	c.Libp2p.ConnsHigh = 40
	c.Routing.AnnounceInterval = time.Hour
	c.Routing.AnnounceShare = 0.02
	c.Routing.MaxHops = 16
	c.Routing.MessageTTL = 24 * time.Hour
	c.Routing.HeldBytes = 256 << 10
	c.Routing.CommitDelay = 2 * time.Second
	c.Log.Level = "info"
	c.Log.Format = "text"
	c.Messages.MaxText = 4000
	c.FAPP.Role = FAPPRoleAny
	c.FAPP.Anchors = []string{}
	c.FAPP.QueryBits = fapp.DefaultQueryBits
	c.FAPP.ReserveBits = fapp.DefaultReserveBits
	c.FAPP.CacheEntries = 1024
	c.FAPP.CacheBytes = 512 << 10
	c.FAPP.QueryTTL = 6
	c.FAPP.AnnounceBudget = fapp.DefaultAnnounceBudget
	c.FAPP.AnnounceLifetime = 24 * time.Hour
	c.FAPP.PublishDelay = 30 * time.Second
	return c
}

// ErrConfig wraps every configuration problem.
var ErrConfig = errors.New("configuration")

// LoadConfig reads the config file at path onto the defaults, then applies
// environment overrides (lookup is os.LookupEnv in production). A missing
// file is fine when optional is true (the embedded defaults apply); an
// unreadable or invalid one is always an error.
func LoadConfig(path string, optional bool, lookup func(string) (string, bool)) (Config, error) {
	c := Defaults()
	if path != "" {
		b, err := readLimited(path, config.MaxFileSize)
		switch {
		case err == nil:
			if err := config.Decode(b, &c); err != nil {
				return c, fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
			}
		case optional && errors.Is(err, fs.ErrNotExist):
		default:
			return c, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	if lookup != nil {
		if _, err := config.ApplyEnv(EnvPrefix, lookup, &c); err != nil {
			return c, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	return c, c.Validate()
}

// LoadConfigBytes decodes a config file's content onto the defaults.
func LoadConfigBytes(b []byte) (Config, error) {
	c := Defaults()
	if err := config.Decode(b, &c); err != nil {
		return c, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return c, c.Validate()
}

func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s is a directory", path)
	}
	if st.Size() > max {
		return nil, fmt.Errorf("%s: %w", path, config.ErrTooLarge)
	}
	b := make([]byte, st.Size())
	_, err = f.ReadAt(b, 0)
	if err != nil && st.Size() > 0 {
		return nil, err
	}
	return b, nil
}

// Validate checks values that parse but make no sense.
func (c *Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, key, fmt.Sprintf(format, args...))
	}
	if a := c.TCP.Listen; a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return bad("tcp.listen", "%q is not host:port", a)
		}
	}
	for _, p := range c.TCP.Peers {
		if _, _, err := ParsePeer(p); err != nil {
			return bad("tcp.peers", "%v", err)
		}
	}
	if c.TCP.NetworkKey != "" {
		if _, err := c.NetworkKeyBytes(); err != nil {
			return bad("tcp.network_key", "%v", err)
		}
	}
	if c.API.Listen != "" {
		if _, _, err := net.SplitHostPort(c.API.Listen); err != nil {
			return bad("api.listen", "%q is not host:port", c.API.Listen)
		}
	}
	if c.Web.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Web.Listen); err != nil {
			return bad("web.listen", "%q is not host:port", c.Web.Listen)
		}
	}
	if (c.Web.TLSCert == "") != (c.Web.TLSKey == "") {
		return bad("web.tls_cert", "web.tls_cert and web.tls_key go together")
	}
	if c.Routing.MaxHops < 1 || c.Routing.MaxHops > 255 {
		return bad("routing.max_hops", "%d is not in 1..255", c.Routing.MaxHops)
	}
	if c.Routing.AnnounceShare <= 0 || c.Routing.AnnounceShare > 0.5 {
		return bad("routing.announce_share", "%g is not in (0, 0.5]", c.Routing.AnnounceShare)
	}
	if c.Routing.HeldBytes < 0 {
		return bad("routing.held_bytes", "negative")
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		return bad("log.level", "%q is not debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return bad("log.format", "%q is not text or json", c.Log.Format)
	}
	if c.Messages.MaxText < 1 || c.Messages.MaxText > 60000 {
		return bad("messages.max_text", "%d is not in 1..60000", c.Messages.MaxText)
	}
	if len(c.Name) > 64 {
		return bad("name", "longer than 64 bytes")
	}
	if c.LoRa.Device != "" && c.LoRa.SF != 0 && (c.LoRa.SF < 7 || c.LoRa.SF > 12) {
		return bad("lora.spreading_factor", "%d is not in 7..12", c.LoRa.SF)
	}
	if c.LoRa.CR != 0 && (c.LoRa.CR < 5 || c.LoRa.CR > 8) {
		return bad("lora.coding_rate", "%d is not in 5..8", c.LoRa.CR)
	}
	if c.LoRa.DutyCycle < 0 || c.LoRa.DutyCycle > 1 {
		return bad("lora.duty_cycle", "%g is not a share in [0, 1]", c.LoRa.DutyCycle)
	}
	if err := validateFAPP(c, bad); err != nil {
		return err
	}
	return validateLibp2p(c, bad)
}

// NetworkKeyBytes decodes tcp.network_key (nil when unset).
func (c *Config) NetworkKeyBytes() ([]byte, error) {
	if c.TCP.NetworkKey == "" {
		return nil, nil
	}
	k, err := hex.DecodeString(strings.TrimSpace(c.TCP.NetworkKey))
	if err != nil || len(k) != 32 {
		return nil, errors.New("want 64 hex digits")
	}
	return k, nil
}

// ParsePeer splits "host:port" or "host:port#ADDRESS".
func ParsePeer(s string) (endpoint string, addr string, err error) {
	endpoint, addr, _ = strings.Cut(s, "#")
	if _, _, err := net.SplitHostPort(endpoint); err != nil {
		return "", "", fmt.Errorf("peer %q is not host:port[#address]", s)
	}
	if addr != "" && (len(addr) != 32 || strings.Trim(strings.ToLower(addr), "0123456789abcdef") != "") {
		return "", "", fmt.Errorf("peer %q: address must be 32 hex digits", s)
	}
	return endpoint, addr, nil
}

// Paths resolves where things live, given the data directory.
type Paths struct {
	Data, Identity, Store, Socket, Token string
}

// ResolvePaths fills in the default locations.
func (c *Config) ResolvePaths() (Paths, error) {
	dir := c.DataDir
	if dir == "" {
		d, err := DefaultDataDir()
		if err != nil {
			return Paths{}, err
		}
		dir = d
	}
	p := Paths{Data: dir, Identity: filepath.Join(dir, IdentityFile), Store: filepath.Join(dir, "meshd.db"),
		Socket: c.API.Socket, Token: c.API.TokenFile}
	if p.Socket == "" {
		p.Socket = filepath.Join(dir, SocketFile)
	}
	if p.Token == "" {
		p.Token = filepath.Join(dir, "api.token")
	}
	return p, nil
}

// SocketFile is the API socket's name in the data directory.
const SocketFile = "meshd.sock"

// Template is the commented config file `meshd init` writes.
func Template(c Config) ([]byte, error) {
	d := Defaults()
	return config.Template(`meshd configuration. Every key is optional: a commented-out key shows the
built-in default. Environment variables override the file: MESHD_<SECTION>_<KEY>,
e.g. MESHD_TCP_LISTEN=":4731", MESHD_LORA_REGION=EU868.
Reference: docs/configuration.md`, &c, &d)
}
