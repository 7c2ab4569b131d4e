package boltstore_test

import (
	"path/filepath"
	"testing"

	"github.com/openmeshd/meshd/routing"
	"github.com/openmeshd/meshd/routing/boltstore"
	"github.com/openmeshd/meshd/routing/storetest"
)

func TestConformance(t *testing.T) {
	var dir string
	storetest.Run(t, func(t *testing.T, reopen bool) routing.Store {
		if !reopen {
			dir = t.TempDir()
		}
		s, err := boltstore.Open(filepath.Join(dir, "routing.db"), 0)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
