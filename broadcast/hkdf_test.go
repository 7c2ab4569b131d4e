package broadcast

import (
	"crypto/hkdf"
	"crypto/sha256"
	"testing"
)

func checkHKDF(t *testing.T) {
	secret := []byte("some input keying material, 32b!")
	prk := hkdfExtract("salt", secret)
	want, err := hkdf.Extract(sha256.New, secret, []byte("salt"))
	if err != nil || string(want) != string(prk[:]) {
		t.Fatalf("extract differs")
	}
	for _, n := range []int{16, 32} {
		got := hkdfExpand(&prk, "info/", []byte("part"))
		w, err := hkdf.Expand(sha256.New, prk[:], "info/part", n)
		if err != nil || string(w) != string(got[:n]) {
			t.Fatalf("expand %d differs", n)
		}
	}
}
