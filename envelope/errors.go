package envelope

import (
	"errors"
	"fmt"
)

// Errors returned when decoding or opening envelopes. Each names one reason
// an input was refused, so callers and counters can tell them apart with
// errors.Is; the wrapping error adds which field and sizes were involved.
var (
	// ErrTruncated: the input ends before a field its kind requires.
	ErrTruncated = errors.New("envelope: truncated")
	// ErrTooLarge: the input, or a variable field, exceeds its maximum.
	ErrTooLarge = errors.New("envelope: too large")
	// ErrVersion: the version byte is not one this code speaks.
	ErrVersion = errors.New("envelope: unsupported version")
	// ErrKind: the kind is not defined.
	ErrKind = errors.New("envelope: unknown kind")
	// ErrFlags: a flag is set that this kind does not allow.
	ErrFlags = errors.New("envelope: flags not allowed for kind")
	// ErrBadKey: a public key is not a valid, safe curve point.
	ErrBadKey = errors.New("envelope: invalid public key")
	// ErrKeyMismatch: a public key carried in the envelope does not hash to
	// the sender address (or hint) it claims.
	ErrKeyMismatch = errors.New("envelope: key does not match address")
	// ErrAuth: authentication failed: a byte was changed, or the wrong key
	// was used. Nothing about the plaintext is revealed.
	ErrAuth = errors.New("envelope: authentication failed")
	// ErrSignature: an Ed25519 signature does not verify.
	ErrSignature = errors.New("envelope: bad signature")
	// ErrReplay: this counter was already accepted from this sender.
	ErrReplay = errors.New("envelope: replayed counter")
	// ErrStale: the counter is older than the replay window; it may be a
	// replay and can no longer be told apart from one.
	ErrStale = errors.New("envelope: counter older than replay window")
	// ErrCounter: counter zero is never sent (it marks "nothing seen").
	ErrCounter = errors.New("envelope: invalid counter")
	// ErrNotForUs: the envelope is addressed to someone else, or was opened
	// with the wrong pairwise keys.
	ErrNotForUs = errors.New("envelope: not addressed to this key")
)

// FormatError locates a decoding failure: the kind being decoded and the
// field at fault. It wraps one of the sentinel errors above.
type FormatError struct {
	Kind  Kind
	Field string
	Err   error
	Need  int // bytes the field needed, when relevant
	Have  int // bytes that were left
}

func (e *FormatError) Error() string {
	if e.Need > 0 || e.Have > 0 {
		return fmt.Sprintf("%v: %s %s (need %d bytes, have %d)", e.Err, e.Kind, e.Field, e.Need, e.Have)
	}
	if e.Field != "" {
		return fmt.Sprintf("%v: %s %s", e.Err, e.Kind, e.Field)
	}
	return fmt.Sprintf("%v: %s", e.Err, e.Kind)
}

func (e *FormatError) Unwrap() error { return e.Err }
