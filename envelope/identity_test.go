package envelope

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
)

func TestX25519IsBirationalMapOfEd25519(t *testing.T) {
	for i := 0; i < 64; i++ {
		id, err := GenerateIdentity(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		x, err := id.PublicKey().X25519()
		if err != nil {
			t.Fatal(err)
		}
		if x != id.X25519Public() {
			t.Fatalf("seed %x: map(Ed25519 pub) = %x, X25519(scalar) = %x", id.Seed(), x, id.X25519Public())
		}
	}
}

func TestParsePublicKeyRejects(t *testing.T) {
	good := mustIdentity(t, "good").PublicKey()
	tests := []struct {
		name string
		hex  string
		want error
	}{
		{"valid", hex.EncodeToString(good[:]), nil},
		{"short", "0100", ErrBadKey},
		{"long", hex.EncodeToString(good[:]) + "00", ErrBadKey},
		// Small-order points (orders 1, 2, 4, 8): a DH with them yields a
		// secret the attacker knows.
		{"identity", "0100000000000000000000000000000000000000000000000000000000000000", ErrBadKey},
		{"order 2", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", ErrBadKey},
		{"order 4", "0000000000000000000000000000000000000000000000000000000000000000", ErrBadKey},
		{"order 4 sign", "0000000000000000000000000000000000000000000000000000000000000080", ErrBadKey},
		{"order 8 a", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", ErrBadKey},
		{"order 8 b", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", ErrBadKey},
		{"order 8 c", "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", ErrBadKey},
		{"order 8 d", "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", ErrBadKey},
		// y = p+1, a non-canonical encoding of the identity.
		{"non-canonical", "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", ErrBadKey},
		// y = 2 is not on the curve.
		{"not on curve", "0200000000000000000000000000000000000000000000000000000000000000", ErrBadKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := hex.DecodeString(tc.hex)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParsePublicKey(b)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("ParsePublicKey(%s) = %v, want %v", tc.hex, err, tc.want)
			}
		})
	}
}

func TestAddressFingerprintSafetyNumber(t *testing.T) {
	a, b := mustIdentity(t, "a").PublicKey(), mustIdentity(t, "b").PublicKey()
	if a.Address() == b.Address() {
		t.Fatal("distinct keys, same address")
	}
	if h, x := a.Address().Hint(), a.Address(); !bytes.Equal(h[:], x[:HintSize]) {
		t.Fatal("hint is not the address prefix")
	}
	re := regexp.MustCompile(`^\d{5}( \d{5}){5}$`)
	if fp := a.Fingerprint(); !re.MatchString(fp) {
		t.Fatalf("fingerprint %q is not six groups of five digits", fp)
	}
	if a.Fingerprint() == b.Fingerprint() {
		t.Fatal("distinct keys, same fingerprint")
	}
	if SafetyNumber(a, b) != SafetyNumber(b, a) {
		t.Fatal("safety number depends on who computes it")
	}
	addr, err := ParseAddress(a.Address().String())
	if err != nil || addr != a.Address() {
		t.Fatalf("ParseAddress round trip: %v", err)
	}
	for _, bad := range []string{"", "zz", "00112233", a.Address().String() + "00"} {
		if _, err := ParseAddress(bad); err == nil {
			t.Errorf("ParseAddress(%q) accepted", bad)
		}
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "identity.key")
	id, created, err := LoadOrCreateIdentity(path, rand.Reader)
	if err != nil || !created {
		t.Fatalf("create: created=%v err=%v", created, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", st.Mode().Perm())
	}
	again, created, err := LoadOrCreateIdentity(path, rand.Reader)
	if err != nil || created {
		t.Fatalf("reload: created=%v err=%v", created, err)
	}
	if again.PublicKey() != id.PublicKey() {
		t.Fatal("reloaded a different identity")
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	corrupt := func(f func([]byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		want    error
	}{
		{"group readable", good, 0o640, ErrKeyFilePermissions},
		{"world readable", good, 0o644, ErrKeyFilePermissions},
		{"truncated", good[:20], 0o600, ErrKeyFileCorrupt},
		{"empty", nil, 0o600, ErrKeyFileCorrupt},
		{"trailing byte", append(append([]byte(nil), good...), 0), 0o600, ErrKeyFileCorrupt},
		{"bad magic", corrupt(func(b []byte) []byte { b[0] ^= 1; return b }), 0o600, ErrKeyFileCorrupt},
		{"bad version", corrupt(func(b []byte) []byte { b[8] = 9; return b }), 0o600, ErrKeyFileCorrupt},
		{"flipped seed bit", corrupt(func(b []byte) []byte { b[20] ^= 0x10; return b }), 0o600, ErrKeyFileCorrupt},
		{"flipped checksum bit", corrupt(func(b []byte) []byte { b[45] ^= 0x01; return b }), 0o600, ErrKeyFileCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "identity.key")
			if err := os.WriteFile(p, tc.content, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			_, created, err := LoadOrCreateIdentity(p, rand.Reader)
			if !errors.Is(err, tc.want) || created {
				t.Fatalf("got created=%v err=%v, want %v", created, err, tc.want)
			}
			var kfe *KeyFileError
			if !errors.As(err, &kfe) || kfe.Path != p || kfe.Hint == "" {
				t.Fatalf("error %v does not name the file and a remedy", err)
			}
			after, _ := os.ReadFile(p)
			if !bytes.Equal(after, tc.content) {
				t.Fatal("a bad key file was modified")
			}
		})
	}
	t.Run("missing directory", func(t *testing.T) {
		_, _, err := LoadOrCreateIdentity(filepath.Join(dir, "nope", "identity.key"), rand.Reader)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("got %v, want not-exist", err)
		}
	})
}

func TestKeyFileConcurrentCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "identity.key")
	const n = 8
	keys := make([]PublicKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id, _, err := LoadOrCreateIdentity(path, rand.Reader)
			errs[i] = err
			if err == nil {
				keys[i] = id.PublicKey()
			}
		}(i)
	}
	wg.Wait()
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Fatalf("racer %d: %v", i, errs[i])
		}
		if keys[i] != keys[0] {
			t.Fatalf("racers ended with different identities")
		}
	}
}

func TestIdentityDestroy(t *testing.T) {
	id := mustIdentity(t, "destroy")
	id.Destroy()
	for _, b := range id.priv {
		if b != 0 {
			t.Fatal("private key not zeroed")
		}
	}
	for _, b := range id.xpriv {
		if b != 0 {
			t.Fatal("x25519 key not zeroed")
		}
	}
}
