//go:build !router

package libp2p

import (
	"context"

	"github.com/openmeshd/meshd/transport"
)

// onlyStreams runs a Transport but hides its gossip link from the handler,
// so that the conformance suite sees only envelope-stream links.
type onlyStreams struct{ t *Transport }

func (o onlyStreams) Run(ctx context.Context, h transport.Handler) error {
	return o.t.Run(ctx, filterHandler{h})
}

type filterHandler struct{ h transport.Handler }

func isGossip(l transport.Link) bool { _, ok := l.(*gossipLink); return ok }

func (f filterHandler) LinkUp(l transport.Link) {
	if !isGossip(l) {
		f.h.LinkUp(l)
	}
}
func (f filterHandler) Receive(l transport.Link, d []byte, m transport.Meta) {
	if !isGossip(l) {
		f.h.Receive(l, d, m)
	}
}
func (f filterHandler) LinkDown(l transport.Link, err error) {
	if !isGossip(l) {
		f.h.LinkDown(l, err)
	}
}
