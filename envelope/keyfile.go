package envelope

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Key file layout (49 bytes):
//
//	0  8  magic "MESHDKEY"
//	8  1  version (1)
//	9  32 Ed25519 seed
//	41 8  first 8 bytes of SHA-256 over bytes 0..40, to detect corruption
const (
	keyFileMagic   = "MESHDKEY"
	keyFileVersion = 1
	keyFileSize    = 8 + 1 + SeedSize + 8
)

// Key file errors. Callers tell them apart with errors.Is.
var (
	// ErrKeyFilePermissions: the key file can be read or written by users
	// other than its owner. meshd refuses to use a key others may have seen.
	ErrKeyFilePermissions = errors.New("key file is accessible to other users")
	// ErrKeyFileCorrupt: the file exists but is not a valid key file. It is
	// never replaced automatically: that would silently change the node's
	// identity.
	ErrKeyFileCorrupt = errors.New("key file is corrupt")
)

// KeyFileError says which key file failed and why.
type KeyFileError struct {
	Path string
	Err  error  // ErrKeyFilePermissions, ErrKeyFileCorrupt or an I/O error
	Hint string // what the operator can do about it
}

func (e *KeyFileError) Error() string {
	s := fmt.Sprintf("identity %s: %v", e.Path, e.Err)
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

func (e *KeyFileError) Unwrap() error { return e.Err }

// EncodeKeyFile returns the key file bytes for seed.
func EncodeKeyFile(seed []byte) ([]byte, error) {
	if len(seed) != SeedSize {
		return nil, fmt.Errorf("%w: seed is %d bytes, want %d", ErrBadKey, len(seed), SeedSize)
	}
	b := make([]byte, 0, keyFileSize)
	b = append(b, keyFileMagic...)
	b = append(b, keyFileVersion)
	b = append(b, seed...)
	sum := sha256.Sum256(b)
	return append(b, sum[:8]...), nil
}

// DecodeKeyFile parses key file bytes into an identity.
func DecodeKeyFile(b []byte) (*Identity, error) {
	switch {
	case len(b) != keyFileSize:
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrKeyFileCorrupt, len(b), keyFileSize)
	case !bytes.Equal(b[:8], []byte(keyFileMagic)):
		return nil, fmt.Errorf("%w: not a meshd key file", ErrKeyFileCorrupt)
	case b[8] != keyFileVersion:
		return nil, fmt.Errorf("%w: unknown key file version %d", ErrKeyFileCorrupt, b[8])
	}
	sum := sha256.Sum256(b[:41])
	if !bytes.Equal(sum[:8], b[41:]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrKeyFileCorrupt)
	}
	return IdentityFromSeed(b[9:41])
}

// LoadIdentity reads the identity at path. The file must be accessible to its
// owner only (mode 0600 or stricter).
func LoadIdentity(path string) (*Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &KeyFileError{Path: path, Err: err}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, &KeyFileError{Path: path, Err: err}
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, &KeyFileError{Path: path, Err: fmt.Errorf("%w: mode %04o", ErrKeyFilePermissions, perm),
			Hint: "if nobody else could have read it, run: chmod 600 " + path + "; otherwise treat the identity as compromised and move the file away to create a new one"}
	}
	b, err := io.ReadAll(io.LimitReader(f, keyFileSize+1))
	if err != nil {
		return nil, &KeyFileError{Path: path, Err: err}
	}
	id, err := DecodeKeyFile(b)
	clear(b)
	if err != nil {
		return nil, &KeyFileError{Path: path, Err: err,
			Hint: "restore it from a backup; meshd will not replace it, as that would change this node's identity"}
	}
	return id, nil
}

// LoadOrCreateIdentity loads the identity at path, or creates one with rand
// when no file exists there. created says which happened. Creation is atomic
// and never overwrites: if two processes race, both end up with the same key.
func LoadOrCreateIdentity(path string, rand io.Reader) (id *Identity, created bool, err error) {
	id, err = LoadIdentity(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return id, false, err
	}
	id, err = GenerateIdentity(rand)
	if err != nil {
		return nil, false, err
	}
	seed := id.Seed()
	b, err := EncodeKeyFile(seed)
	clear(seed)
	if err != nil {
		return nil, false, err
	}
	defer clear(b)
	if err := writeNewFile(path, b); err != nil {
		id.Destroy()
		if errors.Is(err, fs.ErrExist) {
			// Someone else created it between our load and our write.
			id, err = LoadIdentity(path)
			return id, false, err
		}
		return nil, false, &KeyFileError{Path: path, Err: err}
	}
	return id, true, nil
}

// writeNewFile writes b to path with mode 0600, durably, failing with
// fs.ErrExist rather than replacing an existing file. The content appears
// at path complete or not at all: it is written to a temporary file, synced,
// then hard-linked into place (link fails if the name exists; rename would
// not).
func writeNewFile(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".key-*")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmpName, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
