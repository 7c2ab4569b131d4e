package fapp

import "errors"

// Errors. Every refused input or request wraps exactly one of these, so
// callers, tests and the Stats counters tell the reasons apart with
// errors.Is; the wrapping error says which field or value was at fault.
var (
	// ErrMalformed: bytes from outside do not decode (truncated, trailing
	// bytes, a reserved bit set, a value out of its range, a
	// non-canonical encoding).
	ErrMalformed = errors.New("fapp: malformed")
	// ErrOversize: something exceeds a size limit: an announce larger than
	// one LoRa frame, more languages, endorsements, slots, contact or
	// message bytes than allowed, a profile that leaves no room for a slot.
	ErrOversize = errors.New("fapp: too large")
	// ErrForged: not authentic: an announce signature or a sealed reply does
	// not verify.
	ErrForged = errors.New("fapp: not authentic")
	// ErrEndorsement: an endorsement by a trust anchor this node knows does
	// not verify (it was altered, or copied from another therapist). The
	// whole announce is refused: an honest therapist never sends one.
	ErrEndorsement = errors.New("fapp: endorsement does not verify")
	// ErrExpired: an announce past its expiry, or a query or reservation
	// older than its validity window.
	ErrExpired = errors.New("fapp: expired")
	// ErrFuture: issued further in the future than the allowed clock skew.
	ErrFuture = errors.New("fapp: issued in the future")
	// ErrRollback: an announce page with a lower sequence number than one
	// already accepted (or a page the therapist has since withdrawn).
	ErrRollback = errors.New("fapp: sequence rollback")
	// ErrDuplicate: an announce page already held at this sequence number.
	ErrDuplicate = errors.New("fapp: duplicate")
	// ErrRateLimited: over the rate limit of a therapist identity, a
	// neighbour, or this node's answers.
	ErrRateLimited = errors.New("fapp: rate limited")
	// ErrCacheFull: the cache is full of entries this node ranks higher.
	ErrCacheFull = errors.New("fapp: cache full")
	// ErrProofOfWork: the proof-of-work stamp is below this node's
	// difficulty.
	ErrProofOfWork = errors.New("fapp: insufficient proof of work")
	// ErrPrecision: a PLZ prefix with more than 3 digits in a network query.
	ErrPrecision = errors.New("fapp: PLZ prefix more precise than 3 digits")
	// ErrReplay: a reservation (or query) seen before.
	ErrReplay = errors.New("fapp: replayed")
	// ErrWrongTopic: an envelope that is not FAPP's (kind or topic).
	ErrWrongTopic = errors.New("fapp: not a FAPP envelope")
	// ErrUnknownToken: an anon-reply on a token this node is not waiting
	// on (expired search, finished reservation, or not ours).
	ErrUnknownToken = errors.New("fapp: unknown reply token")

	// ErrInvalid: an API argument is invalid (unknown enumeration name,
	// PLZ that is not 5 digits, slot not on the 5-minute grid, ...).
	ErrInvalid = errors.New("fapp: invalid argument")
	// ErrNotTherapist: a therapist operation on a node with no identity or
	// no profile.
	ErrNotTherapist = errors.New("fapp: no therapist profile")
	// ErrUnknownSlot: no such slot (reserve: not in the cache; therapist:
	// not among own slots).
	ErrUnknownSlot = errors.New("fapp: unknown slot")
	// ErrSlotTaken: the slot is already booked.
	ErrSlotTaken = errors.New("fapp: slot already booked")
	// ErrUnknownRequest: no such reservation request.
	ErrUnknownRequest = errors.New("fapp: unknown request")
	// ErrDecided: the request was already confirmed or declined.
	ErrDecided = errors.New("fapp: request already decided")
	// ErrCorruptState: persisted state does not decode.
	ErrCorruptState = errors.New("fapp: corrupt state")
)

// reasons names each sentinel for Stats.Rejected and logs.
var reasons = [...]struct {
	err  error
	name string
}{
	{ErrMalformed, "malformed"},
	{ErrOversize, "oversize"},
	{ErrForged, "forged"},
	{ErrEndorsement, "endorsement"},
	{ErrExpired, "expired"},
	{ErrFuture, "future"},
	{ErrRollback, "rollback"},
	{ErrDuplicate, "duplicate"},
	{ErrRateLimited, "rate_limited"},
	{ErrCacheFull, "cache_full"},
	{ErrProofOfWork, "proof_of_work"},
	{ErrPrecision, "precision"},
	{ErrReplay, "replay"},
	{ErrWrongTopic, "wrong_topic"},
	{ErrUnknownToken, "unknown_token"},
	{ErrNotTherapist, "not_therapist"},
	{ErrCorruptState, "corrupt_state"},
}

// Reason returns the short name of the sentinel err wraps ("forged",
// "rollback", ...), or "other".
func Reason(err error) string {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "other"
}
