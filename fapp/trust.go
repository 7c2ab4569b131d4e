package fapp

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io"
	"time"

	"github.com/openmeshd/meshd/envelope"
)

// Trust: every announce binds the therapist's key to an Approbation
// attestation by a hash commitment, and may carry endorsements: signatures
// by trust-anchor keys (a Psychotherapeutenkammer, a community verifier)
// over the therapist's key, the commitment and the qualifications the
// anchor checked. Which anchors a node believes is its operator's choice
// (Options.Anchors). docs/fapp.md, "Trust", explains the model.

// Domain-separation tags of FAPP's hashes and signatures.
const (
	tagCommit   = "meshd/v1/fapp/approbation\x00"
	tagEndorse  = "meshd/v1/fapp/endorse\x00"
	tagAnchorID = "meshd/v1/fapp/anchor\x00"
)

// Sizes of trust material on the wire.
const (
	CommitmentSize  = 16
	SaltSize        = 16
	AnchorIDSize    = 4
	endorsementSize = AnchorIDSize + 1 + 2 + envelope.SignatureSize // 71
	// MaxEndorsements bounds the endorsements of one announce. On a LoRa
	// frame only one fits next to the profile; see docs/fapp.md.
	MaxEndorsements = 2
	// MaxDocument bounds the attestation document a therapist keeps.
	MaxDocument = 1024
)

// Commitment is the first 16 bytes of SHA-256(tag ‖ therapist key ‖ salt ‖
// document). Hiding: the 128-bit random salt keeps anyone without the
// document from confirming a guess of it. Binding: to the therapist key
// and, at 64-bit collision resistance, to the document; the patient relies
// on the anchor's signature, which covers the commitment, not on the
// commitment alone (docs/fapp.md explains why 16 bytes suffice).
type Commitment [CommitmentSize]byte

// Attestation is what the therapist keeps private and shows a trust anchor
// out of band: the Approbation document (text naming the Approbation, the
// issuing authority, its date and number) and the salt of the commitment.
type Attestation struct {
	Salt     [SaltSize]byte
	Document []byte
}

// NewAttestation draws a salt from rand and returns the attestation of
// document.
func NewAttestation(rand io.Reader, document []byte) (Attestation, error) {
	var a Attestation
	if len(document) == 0 || len(document) > MaxDocument {
		return a, fmt.Errorf("%w: attestation document is %d bytes (1–%d)", ErrInvalid, len(document), MaxDocument)
	}
	if _, err := io.ReadFull(rand, a.Salt[:]); err != nil {
		return a, fmt.Errorf("fapp: reading randomness: %w", err)
	}
	a.Document = append([]byte(nil), document...)
	return a, nil
}

// Commit returns the commitment binding therapist to the attestation.
func (a *Attestation) Commit(therapist envelope.PublicKey) Commitment {
	h := sha256.New()
	h.Write([]byte(tagCommit))
	h.Write(therapist[:])
	h.Write(a.Salt[:])
	h.Write(a.Document)
	var c Commitment
	copy(c[:], h.Sum(nil))
	return c
}

// AnchorID is the first 4 bytes of SHA-256(tag ‖ anchor key): enough to
// pick the anchor key among the few a node is configured with. A collision
// costs one more signature check, never a false acceptance.
type AnchorID [AnchorIDSize]byte

// IDOf returns the anchor id of key.
func IDOf(key envelope.PublicKey) AnchorID {
	h := sha256.Sum256(append([]byte(tagAnchorID), key[:]...))
	var id AnchorID
	copy(id[:], h[:])
	return id
}

// Anchor is a trust anchor a node operator configures.
type Anchor struct {
	// Name is shown next to verified results ("Psychotherapeutenkammer
	// Bayern").
	Name string
	Key  envelope.PublicKey
}

// Endorsement is an anchor's signature over (therapist key, commitment,
// qualifications, valid until).
type Endorsement struct {
	Anchor AnchorID
	// Verfahren and Altersgruppen are the qualifications (Fachkunde) the
	// anchor checked. A profile claiming more is shown as unverified.
	Verfahren     Verfahren
	Altersgruppen Altersgruppe
	// ValidUntil is the last day (UTC) the endorsement holds.
	ValidUntil time.Time
	Sig        [envelope.SignatureSize]byte
}

// Endorse is the anchor's tool: it signs therapist's commitment and
// qualifications until validUntil (rounded down to its day).
func Endorse(anchor *envelope.Identity, therapist envelope.PublicKey, c Commitment, v Verfahren, a Altersgruppe, validUntil time.Time) (Endorsement, error) {
	if v == 0 || v&^allVerfahren != 0 || a == 0 || a&^allAltersgruppen != 0 {
		return Endorsement{}, fmt.Errorf("%w: qualifications %s / %s", ErrInvalid, v, a)
	}
	d, ok := toDays(validUntil)
	if !ok {
		return Endorsement{}, fmt.Errorf("%w: valid-until %s out of range", ErrInvalid, validUntil)
	}
	e := Endorsement{Anchor: IDOf(anchor.PublicKey()), Verfahren: v, Altersgruppen: a, ValidUntil: fromDays(d)}
	copy(e.Sig[:], anchor.Sign(e.signed(therapist, c)))
	return e, nil
}

// signed is the message an endorsement signs.
func (e *Endorsement) signed(therapist envelope.PublicKey, c Commitment) []byte {
	d, _ := toDays(e.ValidUntil)
	m := make([]byte, 0, len(tagEndorse)+envelope.PublicKeySize+CommitmentSize+3)
	m = append(m, tagEndorse...)
	m = append(m, therapist[:]...)
	m = append(m, c[:]...)
	m = append(m, uint8(e.Verfahren)<<4|uint8(e.Altersgruppen)<<2)
	return append(m, byte(d>>8), byte(d))
}

// Verify checks the signature against the anchor key.
func (e *Endorsement) Verify(anchor envelope.PublicKey, therapist envelope.PublicKey, c Commitment) bool {
	return IDOf(anchor) == e.Anchor && ed25519.Verify(anchor[:], e.signed(therapist, c), e.Sig[:])
}

func appendEndorsement(b []byte, e *Endorsement) []byte {
	d, _ := toDays(e.ValidUntil)
	b = append(b, e.Anchor[:]...)
	b = append(b, uint8(e.Verfahren)<<4|uint8(e.Altersgruppen)<<2)
	b = append(b, byte(d>>8), byte(d))
	return append(b, e.Sig[:]...)
}

func decodeEndorsement(r *reader) Endorsement {
	var e Endorsement
	r.copyTo(e.Anchor[:])
	q := r.u8()
	d := r.u16()
	r.copyTo(e.Sig[:])
	if r.err != nil {
		return e
	}
	e.Verfahren, e.Altersgruppen = Verfahren(q>>4), Altersgruppe(q>>2&3)
	if q&3 != 0 || e.Verfahren == 0 || e.Altersgruppen == 0 {
		r.fail("endorsement qualifications")
	}
	e.ValidUntil = fromDays(d)
	return e
}

// EndorsementSize is the wire size of an endorsement (anchor id 4,
// qualifications 1, valid until 2, signature 64): the form an anchor hands
// to a therapist (MarshalBinary, ParseEndorsement).
const EndorsementSize = endorsementSize

// MarshalBinary returns the endorsement's 71-byte wire form.
func (e Endorsement) MarshalBinary() ([]byte, error) {
	if e.Verfahren == 0 || e.Verfahren&^allVerfahren != 0 || e.Altersgruppen == 0 || e.Altersgruppen&^allAltersgruppen != 0 {
		return nil, fmt.Errorf("%w: endorsement qualifications %s / %s", ErrInvalid, e.Verfahren, e.Altersgruppen)
	}
	if _, ok := toDays(e.ValidUntil); !ok {
		return nil, fmt.Errorf("%w: endorsement validity %s", ErrInvalid, e.ValidUntil)
	}
	return appendEndorsement(make([]byte, 0, endorsementSize), &e), nil
}

// ParseEndorsement reads an endorsement's wire form (what MarshalBinary
// writes). It checks the form only; whether the signature verifies depends
// on the therapist and commitment it is used with (Endorsement.Verify).
func ParseEndorsement(b []byte) (Endorsement, error) {
	r := &reader{b: b, what: "endorsement"}
	e := decodeEndorsement(r)
	if err := r.end(); err != nil {
		return Endorsement{}, err
	}
	return e, nil
}

// Credentials are the trust material a therapist publishes.
type Credentials struct {
	// Attestation is kept by the therapist's node; only its commitment is
	// published. Required.
	Attestation Attestation
	// Endorsements as received from anchors.
	Endorsements []Endorsement
}

// Trust is how this node judges an announce's therapist.
type Trust struct {
	// Verified is true only when an endorsement by one of this node's
	// anchors verifies, is unexpired and covers the profile's Verfahren and
	// Altersgruppen.
	Verified bool `json:"verified"`
	// Anchor names the endorsing anchor when Verified.
	Anchor string `json:"anchor,omitempty"`
	// Note says why an entry is unverified: "no endorsement", "endorsed
	// only by anchors this node does not know", "endorsement expired",
	// "profile claims more than the endorsement covers".
	Note string `json:"note,omitempty"`
}

// Trust notes.
const (
	noteNone    = "no endorsement"
	noteUnknown = "endorsed only by anchors this node does not know"
	noteExpired = "endorsement expired"
	noteExceeds = "profile claims more than the endorsement covers"
)

// checkEndorsements verifies every endorsement made by an anchor in
// anchors; one that does not verify is ErrEndorsement. It returns, per
// endorsement, the index of the anchor that signed it, or -1.
func checkEndorsements(anchors []Anchor, a *Announce) ([]int, error) {
	by := make([]int, len(a.Endorsements))
	for i := range a.Endorsements {
		e := &a.Endorsements[i]
		by[i] = -1
		tried := false
		for j := range anchors {
			if IDOf(anchors[j].Key) != e.Anchor {
				continue
			}
			tried = true
			if e.Verify(anchors[j].Key, a.Therapist, a.Commitment) {
				by[i] = j
				break
			}
		}
		if tried && by[i] < 0 {
			return nil, fmt.Errorf("%w: endorsement %d (anchor %x) for therapist %s", ErrEndorsement, i, e.Anchor[:], a.Therapist.Address())
		}
	}
	return by, nil
}

// judge decides the Trust of an announce at time now, given which anchor
// signed each endorsement (from checkEndorsements).
func judge(anchors []Anchor, a *Announce, by []int, now time.Time) Trust {
	if len(a.Endorsements) == 0 {
		return Trust{Note: noteNone}
	}
	note := noteUnknown
	for i := range a.Endorsements {
		if i >= len(by) || by[i] < 0 {
			continue
		}
		e := &a.Endorsements[i]
		if !now.Before(e.ValidUntil.Add(24 * time.Hour)) {
			note = noteExpired
			continue
		}
		if a.Profile.Verfahren&^e.Verfahren != 0 || a.Profile.Altersgruppen&^e.Altersgruppen != 0 {
			note = noteExceeds
			continue
		}
		return Trust{Verified: true, Anchor: anchors[by[i]].Name}
	}
	return Trust{Note: note}
}
