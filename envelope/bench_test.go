package envelope

import (
	"crypto/rand"
	"testing"
)

// Run: go test ./envelope -run '^$' -bench . -benchmem

func BenchmarkSealOpen200(b *testing.B) {
	alice, bob := mustIdentity(b, "alice"), mustIdentity(b, "bob")
	ab, ba := mustPair(b, alice, bob, nil), mustPair(b, bob, alice, nil)
	payload := make([]byte, 200)
	buf := make([]byte, 0, 512)
	out := make([]byte, 0, 512)
	b.SetBytes(200)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		raw, err := ab.Seal(buf[:0], uint32(i+1), payload, SealOptions{})
		if err != nil {
			b.Fatal(err)
		}
		e, err := Parse(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := ba.Open(out[:0], &e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeal200(b *testing.B) {
	ab := mustPair(b, mustIdentity(b, "alice"), mustIdentity(b, "bob"), nil)
	payload := make([]byte, 200)
	buf := make([]byte, 0, 512)
	b.SetBytes(200)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := ab.Seal(buf[:0], uint32(i+1), payload, SealOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	raw, _ := mustPair(b, mustIdentity(b, "alice"), mustIdentity(b, "bob"), nil).Seal(nil, 1, make([]byte, 200), SealOptions{})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Parse(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewPair(b *testing.B) {
	alice, bob := mustIdentity(b, "alice"), mustIdentity(b, "bob").PublicKey()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := NewPair(alice, bob, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAnnounceSign(b *testing.B) {
	alice := mustIdentity(b, "alice")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := SignAnnounce(alice, AnnounceOptions{Seq: uint32(i), Caps: CapRelay}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAnnounceVerify(b *testing.B) {
	raw, _ := SignAnnounce(mustIdentity(b, "alice"), AnnounceOptions{Seq: 1, Caps: CapRelay})
	e, _ := Parse(raw)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := e.Verify(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAnonSealOpen200(b *testing.B) {
	bob := mustIdentity(b, "bob")
	payload := make([]byte, 200)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		raw, _, err := SealAnonymous(rand.Reader, bob.PublicKey(), Token{}, payload, AnonOptions{})
		if err != nil {
			b.Fatal(err)
		}
		e, _ := Parse(raw)
		if _, _, _, err := bob.OpenAnonymous(&e); err != nil {
			b.Fatal(err)
		}
	}
}
