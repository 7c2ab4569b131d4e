package fapp_test

import (
	"context"
	"fmt"
	"time"

	"github.com/openmeshd/meshd/envelope"
	"github.com/openmeshd/meshd/envelope/clock"
	"github.com/openmeshd/meshd/fapp"
)

// Example shows the whole flow between a therapist's and a patient's core,
// with the node's part (performing actions) done by hand: the therapist
// publishes, the patient finds the slot locally, reserves it, the therapist
// confirms. A real node hands Originate/SendAnon/SendReply to the router.
func Example() {
	now := clock.Epoch()
	therapistID, _ := envelope.GenerateIdentity(zeros{})
	therapist, _ := fapp.New(fapp.Options{Identity: therapistID, ReserveBits: 8}, nil)
	patient, _ := fapp.New(fapp.Options{ReserveBits: 8}, nil)

	att, _ := fapp.NewAttestation(zeros{}, []byte("Approbation …"))
	therapist.SetProfile(now, fapp.Profile{
		Verfahren: fapp.Verhaltenstherapie, Altersgruppen: fapp.Erwachsene, Settings: fapp.Einzel,
		Kostentraeger: fapp.GKV, Modalitaeten: fapp.Praxis, PLZ: "80331", Languages: []string{"de"},
	}, fapp.Credentials{Attestation: att})
	therapist.AddSlot(now, fapp.Slot{Type: fapp.Sprechstunde, Start: now.Add(26 * time.Hour), Duration: 50 * time.Minute})
	therapist.Publish(now)

	// The node floods what the core originates; the patient's node gets it.
	for _, a := range therapist.Actions() {
		if o, ok := a.(*fapp.Originate); ok {
			v, err := patient.OnFlood(now, "link0", o.Raw)
			fmt.Println("announce:", v, err)
		}
	}
	// Local search: no traffic.
	res, _ := patient.Search(now, fapp.Filter{PLZPrefix: "803", Verfahren: fapp.Verhaltenstherapie})
	fmt.Println("found:", len(res), res[0].Slot.Type, "verified:", res[0].Trust.Verified)

	// Reserve: the node routes the sealed anon envelope to the therapist,
	// whose router opens it and delivers the payload on port 2.
	id, _ := patient.Reserve(context.Background(), now, res[0].Ref, "Erika, 0151 2345678")
	for _, a := range patient.Actions() {
		if s, ok := a.(*fapp.SendAnon); ok {
			e, _ := envelope.Parse(s.Raw)
			payload, _, reply, _ := therapistID.OpenAnonymous(&e)
			fmt.Println("request:", therapist.OnAnon(now, payload, reply))
		}
	}
	therapist.Confirm(now, id, "Sendlinger Str. 1")
	for _, a := range therapist.Actions() {
		if r, ok := a.(*fapp.SendReply); ok {
			patient.OnAnonReply(now, r.Token, r.Raw)
		}
	}
	st := patient.Reservations()[0]
	fmt.Println("reservation:", st.Outcome, st.Message)
	// Output:
	// announce: relay <nil>
	// found: 1 sprechstunde verified: false
	// request: <nil>
	// reservation: confirmed Sendlinger Str. 1
}

// zeros is a deterministic entropy source for the example only.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 7
	}
	return len(p), nil
}
