package node

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openmeshd/meshd/node/config"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md from the Config struct")

// TestConfigurationDoc keeps docs/configuration.md equal to what the Config
// struct documents.
func TestConfigurationDoc(t *testing.T) {
	d := Defaults()
	fields, err := config.Fields(&d)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	sb.WriteString(`# meshd configuration

Generated from the ` + "`Config`" + ` struct in ` + "`node/nodeconfig.go`" + ` by
` + "`go test ./node -run ConfigurationDoc -update`" + `; a test fails when it is stale.

meshd needs no configuration: every key has a built-in default. ` + "`meshd init`" + `
writes a commented file with all keys. The file is read from ` + "`--config FILE`" + `, else
` + "`/etc/meshd/meshd.conf`" + ` when running as root (a system service), else
` + "`meshd.conf`" + ` in the data directory.

The format is a strict subset of TOML: ` + "`key = value`" + ` lines, ` + "`[section]`" + `
headers, ` + "`#`" + ` comments; strings in double quotes, numbers, ` + "`true`/`false`" + `,
lists of strings (` + "`[\"a\", \"b\"]`" + `, may span lines), durations as strings
(` + "`\"90s\"`, `\"10m\"`, `\"2h\"`" + `). An unknown key, a duplicate key or a value of
the wrong type is an error naming the line (and the closest known key for a
typo): meshd never falls back to a default silently.

Every key can be overridden by an environment variable: ` + "`MESHD_`" + ` followed by
the key in capitals, dots and dashes as underscores (` + "`MESHD_TCP_LISTEN`" + `,
` + "`MESHD_LORA_REGION`" + `); lists are comma-separated. Precedence: flags (` + "`--data`" + `,
` + "`--listen`, `--peer`, `--no-mdns`" + `) over environment over file over defaults.

SIGHUP re-reads the file: ` + "`log.level`" + ` changes at once; other changes are
logged and take effect at the next restart.

| key | type | default | environment | meaning |
|---|---|---|---|---|
`)
	for _, f := range fields {
		def := f.Default
		if def == `""` || def == "[]" {
			def = "(empty)"
		}
		fmt.Fprintf(&sb, "| `%s` | %s | `%s` | `%s` | %s |\n", f.Key, f.Type, strings.ReplaceAll(def, "|", `\|`), config.EnvName(EnvPrefix, f.Key), strings.ReplaceAll(f.Doc, "|", `\|`))
	}
	want := sb.String()
	path := filepath.Join("..", "docs", "configuration.md")
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != want {
		t.Fatalf("docs/configuration.md is stale: run go test ./node -run ConfigurationDoc -update (%v)", err)
	}
}

func TestDefaultsValidate(t *testing.T) {
	c := Defaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("the embedded defaults do not validate: %v", err)
	}
	b, err := Template(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadConfigBytes(b)
	if err != nil {
		t.Fatalf("the template does not load: %v", err)
	}
	if fmt.Sprint(got) != fmt.Sprint(c) {
		t.Fatalf("template round trip:\n got %+v\nwant %+v", got, c)
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name string
		f    func(*Config)
		want string
	}{
		{"listen", func(c *Config) { c.TCP.Listen = "4731" }, "tcp.listen"},
		{"peer", func(c *Config) { c.TCP.Peers = []string{"host"} }, "tcp.peers"},
		{"peer address", func(c *Config) { c.TCP.Peers = []string{"h:1#xyz"} }, "tcp.peers"},
		{"network key", func(c *Config) { c.TCP.NetworkKey = "abcd" }, "tcp.network_key"},
		{"max hops", func(c *Config) { c.Routing.MaxHops = 0 }, "routing.max_hops"},
		{"share", func(c *Config) { c.Routing.AnnounceShare = 2 }, "routing.announce_share"},
		{"level", func(c *Config) { c.Log.Level = "loud" }, "log.level"},
		{"format", func(c *Config) { c.Log.Format = "xml" }, "log.format"},
		{"max text", func(c *Config) { c.Messages.MaxText = 0 }, "messages.max_text"},
		{"sf", func(c *Config) { c.LoRa.Device = "/dev/x"; c.LoRa.SF = 6 }, "lora.spreading_factor"},
		{"duty", func(c *Config) { c.LoRa.DutyCycle = 1.5 }, "lora.duty_cycle"},
		{"name", func(c *Config) { c.Name = strings.Repeat("n", 65) }, "name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			tc.f(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error about %s", err, tc.want)
			}
		})
	}
}
