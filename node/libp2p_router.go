//go:build router

package node

// The router build (-tags router) carries no libp2p: these are no-ops, and
// a configuration that enables it is refused loudly.

const libp2pBuilt = false

func validateLibp2p(c *Config, bad func(key, format string, args ...any) error) error {
	if c.Libp2p.Enabled {
		return bad("libp2p.enabled", "this meshd was built for routers (-tags router) and has no libp2p")
	}
	return nil
}

func (n *Node) addLibp2p() error { return nil }

func (n *Node) libp2pMetrics() []sample { return nil }
