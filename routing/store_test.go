package routing_test

import (
	"testing"

	"github.com/openmeshd/meshd/routing"
	"github.com/openmeshd/meshd/routing/storetest"
)

func TestMemStoreConformance(t *testing.T) {
	var s *routing.MemStore
	storetest.Run(t, func(t *testing.T, reopen bool) routing.Store {
		if !reopen || s == nil {
			s = routing.NewMemStore()
		} else {
			s.Reopen()
		}
		return s
	})
}
