package web

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// PasswordFile is the name of the web UI's password file in the data
// directory: one line, the argon2id hash in the PHC string format,
// "$argon2id$v=19$m=KiB,t=passes,p=lanes$salt$hash" (unpadded base64).
const PasswordFile = "web.passwd"

// Params are argon2id's cost parameters.
type Params struct {
	MemoryKiB uint32 // memory in KiB
	Time      uint32 // passes over the memory
	Threads   uint8  // lanes
}

// DefaultParams are OWASP's argon2id minimum (19 MiB, 2 passes, 1 lane):
// about 50 ms on a laptop, a few seconds on a MIPS router. Hashes are
// computed one at a time, so 19 MiB is the most a login costs.
var DefaultParams = Params{MemoryKiB: 19 * 1024, Time: 2, Threads: 1}

// Bounds on what a password file may ask for, so that a damaged or hostile
// file cannot make a login allocate without limit.
const (
	minMemoryKiB = 1024
	maxMemoryKiB = 256 * 1024
	maxTime      = 16
	maxThreads   = 16
	saltLen      = 16
	hashLen      = 32
	// MinPassword and MaxPassword bound a password's length in bytes.
	MinPassword = 8
	MaxPassword = 1024
)

var (
	// ErrNoPassword: no password file; the web UI refuses every login.
	ErrNoPassword = errors.New("no web UI password is set (run: meshd web passwd)")
	// ErrBadPasswordFile: the password file does not parse.
	ErrBadPasswordFile = errors.New("web UI password file is malformed")
	// ErrWeakPassword: shorter than MinPassword or longer than MaxPassword.
	ErrWeakPassword = fmt.Errorf("a web UI password is %d to %d bytes", MinPassword, MaxPassword)
)

// passwordHash is a parsed password file line.
type passwordHash struct {
	p          Params
	salt, hash []byte
}

var b64 = base64.RawStdEncoding

// parseHash decodes a PHC argon2id string, bounding every field.
func parseHash(line []byte) (*passwordHash, error) {
	bad := func(what string) error { return fmt.Errorf("%w: %s", ErrBadPasswordFile, what) }
	s := string(bytes.TrimSpace(line))
	if len(s) > 512 {
		return nil, bad("too long")
	}
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return nil, bad("not an argon2id hash")
	}
	if parts[2] != "v=19" {
		return nil, bad("unsupported argon2 version")
	}
	h := &passwordHash{}
	seen := 0
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, bad("parameters")
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, bad("parameter " + k)
		}
		switch k {
		case "m":
			if n < minMemoryKiB || n > maxMemoryKiB {
				return nil, bad("memory out of range")
			}
			h.p.MemoryKiB, seen = uint32(n), seen|1
		case "t":
			if n < 1 || n > maxTime {
				return nil, bad("time out of range")
			}
			h.p.Time, seen = uint32(n), seen|2
		case "p":
			if n < 1 || n > maxThreads {
				return nil, bad("threads out of range")
			}
			h.p.Threads, seen = uint8(n), seen|4
		default:
			return nil, bad("unknown parameter " + k)
		}
	}
	if seen != 7 {
		return nil, bad("missing parameters")
	}
	var err error
	if h.salt, err = b64.DecodeString(parts[4]); err != nil || len(h.salt) < 8 || len(h.salt) > 64 {
		return nil, bad("salt")
	}
	if h.hash, err = b64.DecodeString(parts[5]); err != nil || len(h.hash) < 16 || len(h.hash) > 64 {
		return nil, bad("hash")
	}
	return h, nil
}

func (h *passwordHash) String() string {
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", h.p.MemoryKiB, h.p.Time, h.p.Threads,
		b64.EncodeToString(h.salt), b64.EncodeToString(h.hash))
}

func (h *passwordHash) verify(password []byte) bool {
	got := argon2.IDKey(password, h.salt, h.p.Time, h.p.MemoryKiB, h.p.Threads, uint32(len(h.hash)))
	return subtle.ConstantTimeCompare(got, h.hash) == 1
}

// HashPassword makes a new salted argon2id hash line of password.
func HashPassword(password []byte, p Params) (string, error) {
	if len(password) < MinPassword || len(password) > MaxPassword {
		return "", ErrWeakPassword
	}
	if p.MemoryKiB < minMemoryKiB || p.MemoryKiB > maxMemoryKiB || p.Time < 1 || p.Time > maxTime || p.Threads < 1 || p.Threads > maxThreads {
		return "", fmt.Errorf("argon2id parameters out of range: memory %d-%d KiB, time 1-%d, threads 1-%d", minMemoryKiB, maxMemoryKiB, maxTime, maxThreads)
	}
	h := &passwordHash{p: p, salt: make([]byte, saltLen)}
	if _, err := rand.Read(h.salt); err != nil {
		return "", err
	}
	h.hash = argon2.IDKey(password, h.salt, p.Time, p.MemoryKiB, p.Threads, hashLen)
	return h.String(), nil
}

// SetPassword writes the hash of password to path (mode 0600), replacing
// the file atomically. A running daemon notices the change at the next
// request: every session opened under the old password ends.
func SetPassword(path string, password []byte, p Params) error {
	line, err := HashPassword(password, p)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".web.passwd-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := chownLikeDir(tmp, filepath.Dir(path)); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(line + "\n"); err != nil {
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
	return os.Rename(tmp.Name(), path)
}

// RemovePassword deletes the password file: the web UI then refuses every
// login and ends every session.
func RemovePassword(path string) error {
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// loadHash reads and parses the password file (ErrNoPassword when missing).
func loadHash(path string) (*passwordHash, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoPassword
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 1024)
	n, _ := f.Read(buf)
	return parseHash(buf[:n])
}
