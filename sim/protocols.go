package sim

// Protocols returns the protocols meshsim can run, by name: "router" is
// meshd's router core (router_adapter.go) and "flood" the Meshtastic-like
// managed-flooding baseline. A fresh map each call: there is no
// package-level registry to mutate. Each call also gives fresh router
// factories, whose in-memory stores belong to one run.
func Protocols() map[string]Factory {
	return map[string]Factory{
		"router": NewRouterFactory(),
		"flood":  NewFlood,
	}
}
