package qr

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The worked example of ISO/IEC 18004 Annex I: "01234567" at 1-M.
func TestAnnexIExample(t *testing.T) {
	data := encodeData("01234567", Numeric, 1, M)
	want := []byte{0x10, 0x20, 0x0C, 0x56, 0x61, 0x80, 0xEC, 0x11, 0xEC, 0x11, 0xEC, 0x11, 0xEC, 0x11, 0xEC, 0x11}
	if !bytes.Equal(data, want) {
		t.Fatalf("data codewords % X, want % X", data, want)
	}
	ecc := rsRemainder(data, generator(10))
	wantECC := []byte{0xA5, 0x24, 0xD4, 0xC1, 0xED, 0x36, 0xC7, 0x87, 0x2C, 0x55}
	if !bytes.Equal(ecc, wantECC) {
		t.Fatalf("error correction codewords % X, want % X", ecc, wantECC)
	}
	c, err := Encode("01234567", M)
	if err != nil || c.Version != 1 || c.Mode != Numeric {
		t.Fatalf("Encode: %+v %v", c, err)
	}
}

// Codeword totals and data capacities against the standard's Tables 1 and 7.
func TestCapacities(t *testing.T) {
	for _, tc := range []struct{ v, total int }{{1, 26}, {2, 44}, {6, 172}, {7, 196}, {10, 346}, {14, 581}, {21, 1156}, {27, 1828}, {32, 2465}, {40, 3706}} {
		if got := totalCodewords(tc.v); got != tc.total {
			t.Errorf("version %d: %d codewords, want %d", tc.v, got, tc.total)
		}
	}
	for _, tc := range []struct {
		v    int
		lvl  Level
		data int
	}{{1, L, 19}, {1, H, 9}, {5, Q, 62}, {10, M, 216}, {20, H, 385}, {40, L, 2956}, {40, M, 2334}, {40, Q, 1666}, {40, H, 1276}} {
		if got := dataCodewords(tc.v, tc.lvl); got != tc.data {
			t.Errorf("%d-%s: %d data codewords, want %d", tc.v, tc.lvl, got, tc.data)
		}
	}
	// Largest inputs of version 40.
	for _, tc := range []struct {
		text string
		lvl  Level
	}{{strings.Repeat("7", 7089), L}, {strings.Repeat("A", 4296), L}, {strings.Repeat("a", 2953), L}, {strings.Repeat("A", 1852), H}} {
		c, err := Encode(tc.text, tc.lvl)
		if err != nil || c.Version != 40 {
			t.Errorf("%d chars of %q at %s: %v", len(tc.text), tc.text[:1], tc.lvl, err)
		}
		if _, err := Encode(tc.text+tc.text[:1], tc.lvl); err != ErrTooLong {
			t.Errorf("one more %q at %s: %v, want ErrTooLong", tc.text[:1], tc.lvl, err)
		}
	}
}

func TestAlignmentCentres(t *testing.T) {
	for v, want := range map[int][]int{1: nil, 2: {6, 18}, 7: {6, 22, 38}, 15: {6, 26, 48, 70}, 16: {6, 26, 50, 74},
		22: {6, 26, 50, 74, 98}, 32: {6, 34, 60, 86, 112, 138}, 36: {6, 24, 50, 76, 102, 128, 154}, 39: {6, 26, 54, 82, 110, 138, 166}, 40: {6, 30, 58, 86, 114, 142, 170}} {
		if got := alignmentCentres(v); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("version %d: %v, want %v", v, got, want)
		}
	}
}

func TestModes(t *testing.T) {
	for text, want := range map[string]Mode{"0123": Numeric, "MESHD:JOIN:ABC234": Alphanumeric, "meshd": Byte, "Grüße": Byte, "": Numeric} {
		if got := ModeOf(text); got != want {
			t.Errorf("%q: mode %d, want %d", text, got, want)
		}
	}
	// A meshd invite code (MESHD:JOIN: and 117 base32 characters) is
	// alphanumeric and fits version 6 at level M.
	code := "MESHD:JOIN:" + strings.Repeat("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 4)[:117]
	c, err := Encode(code, M)
	if err != nil || c.Mode != Alphanumeric || c.Version != 6 {
		t.Fatalf("invite: %+v %v", c, err)
	}
	if _, err := Encode("x", Level(7)); err != ErrLevel {
		t.Fatalf("bad level: %v", err)
	}
}

// TestDecodesWithZbar reads symbols of many versions, levels and modes back
// with an independent decoder (zbarimg, Debian's zbar-tools, installed by
// scripts/install-deps.sh).
func TestDecodesWithZbar(t *testing.T) {
	zbar, err := exec.LookPath("zbarimg")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("zbarimg not found (scripts/install-deps.sh installs zbar-tools)")
		}
		t.Skip("zbarimg not installed (apt-get install zbar-tools): skipping the independent decoder check")
	}
	dir := t.TempDir()
	var cases []string
	var files []string
	add := func(text string, lvl Level) {
		c, err := Encode(text, lvl)
		if err == ErrTooLong {
			return
		}
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		f := filepath.Join(dir, fmt.Sprintf("%03d-v%d-%s-m%d.png", len(files), c.Version, lvl, c.Mask))
		writePNG(t, c, f)
		cases = append(cases, text)
		files = append(files, f)
	}
	add("01234567", M)
	add("MESHD:JOIN:"+strings.Repeat("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 4)[:117], M)
	add("Grüße aus dem Mesh!", Q)
	alnum := strings.Repeat("HELLO MESH $%*+-./:0123456789", 80)
	bytesText := strings.Repeat("the quick brown fox jumps over the lazy dog; ", 70)
	digits := strings.Repeat("31415926535897932384626433832795028841971693993751", 150)
	// Lengths that land on many versions, each level and mode.
	for i, n := range []int{1, 20, 40, 70, 100, 150, 200, 260, 330, 420, 560, 800, 1100, 1500, 2000} {
		lvl := Level(i % 4)
		add(bytesText[:min(n, len(bytesText))], lvl)
		if n*3/2 <= len(alnum) {
			add(alnum[:n*3/2], Level((i+1)%4))
		}
		if n*2 <= len(digits) {
			add(digits[:n*2], Level((i+2)%4))
		}
	}
	// One zbarimg for all ASCII texts (its start-up dominates; it prints
	// one line per symbol, in file order); non-ASCII ones one by one in
	// binary mode, so that zbar does not guess their character set.
	read := func(binary bool, fs ...string) []string {
		args := []string{"--raw", "-q"}
		if binary {
			args = append(args, "--set", "binary")
		}
		out, err := exec.Command(zbar, append(args, fs...)...).Output()
		lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		if err != nil || len(lines) != len(fs) {
			t.Fatalf("zbarimg read %d of %d symbols (%v): %q", len(lines), len(fs), err, out)
		}
		return lines
	}
	var ascii []int
	got := make([]string, len(files))
	for i, c := range cases {
		if strings.IndexFunc(c, func(r rune) bool { return r > 0x7e }) >= 0 {
			got[i] = read(true, files[i])[0]
		} else {
			ascii = append(ascii, i)
		}
	}
	batch := make([]string, len(ascii))
	for k, i := range ascii {
		batch[k] = files[i]
	}
	for k, line := range read(false, batch...) {
		got[ascii[k]] = line
	}
	seenVersions := map[int]bool{}
	for i, f := range files {
		if got[i] != cases[i] {
			t.Errorf("%s: read %q, want %q", filepath.Base(f), got[i], cases[i])
		}
		var v int
		fmt.Sscanf(strings.SplitN(filepath.Base(f), "-v", 2)[1], "%d", &v)
		seenVersions[v] = true
	}
	t.Logf("%d symbols of %d versions decoded", len(files), len(seenVersions))
}

func writePNG(t *testing.T, c *Code, path string) {
	t.Helper()
	const scale, quiet = 3, 4
	n := (c.Size + 2*quiet) * scale
	img := image.NewGray(image.Rect(0, 0, n, n))
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			v := color.Gray{255}
			if c.Dark(x/scale-quiet, y/scale-quiet) {
				v = color.Gray{0}
			}
			img.SetGray(x, y, v)
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSVG(t *testing.T) {
	c, err := Encode("MESHD", L)
	if err != nil {
		t.Fatal(err)
	}
	s := c.SVG()
	if !strings.HasPrefix(s, "<svg") || !strings.Contains(s, `viewBox="0 0 29 29"`) || !strings.HasSuffix(s, "</svg>") {
		t.Fatalf("svg: %s", s)
	}
}

func FuzzEncode(f *testing.F) {
	f.Add("MESHD:JOIN:ABC", 1)
	f.Add("héllo", 3)
	f.Add("", 0)
	f.Fuzz(func(t *testing.T, text string, lvl int) {
		c, err := Encode(text, Level(lvl&3))
		if err != nil {
			return
		}
		if c.Size != 17+4*c.Version || len(c.dark) != c.Size*c.Size {
			t.Fatalf("size %d version %d", c.Size, c.Version)
		}
	})
}
