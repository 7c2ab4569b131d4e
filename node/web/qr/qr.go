// Package qr encodes text as a QR Code symbol (model 2), written from
// ISO/IEC 18004:2015: numeric, alphanumeric and byte mode in one segment,
// versions 1 to 40, error correction levels L, M, Q and H, the eight data
// masks scored with the standard's penalty rules (clause 7.8.3). SVG draws a
// symbol for a web page.
package qr

import (
	"errors"
	"fmt"
	"strings"
)

// Level is an error correction level.
type Level int

// The error correction levels: about 7, 15, 25 and 30 % of codewords
// recoverable.
const (
	L Level = iota
	M
	Q
	H
)

func (l Level) String() string {
	if l < L || l > H {
		return fmt.Sprintf("Level(%d)", int(l))
	}
	return "LMQH"[l : l+1]
}

// formatBits are the level's two bits in the format information (Table 12).
var formatBits = [4]int{L: 1, M: 0, Q: 3, H: 2}

// Error correction codewords per block and number of blocks, by level and
// version (Table 9); index 0 is unused.
var (
	eccPerBlock = [4][41]int{
		L: {0, 7, 10, 15, 20, 26, 18, 20, 24, 30, 18, 20, 24, 26, 30, 22, 24, 28, 30, 28, 28, 28, 28, 30, 30, 26, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30},
		M: {0, 10, 16, 26, 18, 24, 16, 18, 22, 22, 26, 30, 22, 22, 24, 24, 28, 28, 26, 26, 26, 26, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28},
		Q: {0, 13, 22, 18, 26, 18, 24, 18, 22, 20, 24, 28, 26, 24, 20, 30, 24, 28, 28, 26, 30, 28, 30, 30, 30, 30, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30},
		H: {0, 17, 28, 22, 16, 22, 28, 26, 26, 24, 28, 24, 28, 22, 24, 24, 30, 28, 28, 26, 28, 30, 24, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30},
	}
	eccBlocks = [4][41]int{
		L: {0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 4, 4, 6, 6, 6, 6, 7, 8, 8, 9, 9, 10, 12, 12, 12, 13, 14, 15, 16, 17, 18, 19, 19, 20, 21, 22, 24, 25},
		M: {0, 1, 1, 1, 2, 2, 4, 4, 4, 5, 5, 5, 8, 9, 9, 10, 10, 11, 13, 14, 16, 17, 17, 18, 20, 21, 23, 25, 26, 28, 29, 31, 33, 35, 37, 38, 40, 43, 45, 47, 49},
		Q: {0, 1, 1, 2, 2, 4, 4, 6, 6, 8, 8, 8, 10, 12, 16, 12, 17, 16, 18, 21, 20, 23, 23, 25, 27, 29, 34, 34, 35, 38, 40, 43, 45, 48, 51, 53, 56, 59, 62, 65, 68},
		H: {0, 1, 1, 2, 4, 4, 4, 5, 6, 8, 8, 11, 11, 16, 16, 18, 16, 19, 21, 25, 25, 25, 34, 30, 32, 35, 37, 40, 42, 45, 48, 51, 54, 57, 60, 63, 66, 70, 74, 77, 81},
	}
)

// Mode is a data encoding mode.
type Mode int

// The modes this encoder uses.
const (
	Numeric Mode = iota
	Alphanumeric
	Byte
)

// modeIndicator and the character count bits per version range (1-9,
// 10-26, 27-40) (Tables 2 and 3).
var (
	modeIndicator = [3]uint{Numeric: 1, Alphanumeric: 2, Byte: 4}
	countBits     = [3][3]int{Numeric: {10, 12, 14}, Alphanumeric: {9, 11, 13}, Byte: {8, 16, 16}}
)

// alnumChars is the alphanumeric mode's character set in value order
// (Table 5).
const alnumChars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

// ErrTooLong: the text does not fit version 40 at the level asked for.
var ErrTooLong = errors.New("qr: text too long for a QR code at this error correction level")

// ErrLevel: not one of L, M, Q, H.
var ErrLevel = errors.New("qr: unknown error correction level")

// Code is an encoded symbol.
type Code struct {
	Version int
	Size    int // modules per side: 17 + 4*Version
	Level   Level
	Mode    Mode
	Mask    int
	dark    []bool
}

// Dark reports whether the module at column x, row y is dark. Outside the
// symbol (the quiet zone) every module is light.
func (c *Code) Dark(x, y int) bool {
	if x < 0 || y < 0 || x >= c.Size || y >= c.Size {
		return false
	}
	return c.dark[y*c.Size+x]
}

// ModeOf is the most compact single mode for text.
func ModeOf(text string) Mode {
	numeric, alnum := true, true
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c < '0' || c > '9' {
			numeric = false
		}
		if strings.IndexByte(alnumChars, c) < 0 {
			alnum = false
		}
	}
	switch {
	case numeric:
		return Numeric
	case alnum:
		return Alphanumeric
	}
	return Byte
}

// dataBits is the length of the segment's data part.
func dataBits(m Mode, n int) int {
	switch m {
	case Numeric:
		return n/3*10 + [3]int{0, 4, 7}[n%3]
	case Alphanumeric:
		return n/2*11 + n%2*6
	}
	return n * 8
}

func versionRange(v int) int {
	switch {
	case v <= 9:
		return 0
	case v <= 26:
		return 1
	}
	return 2
}

// Encode makes the smallest symbol that holds text at level lvl, choosing
// the mask with the lowest penalty.
func Encode(text string, lvl Level) (*Code, error) {
	if lvl < L || lvl > H {
		return nil, ErrLevel
	}
	mode := ModeOf(text)
	version := 0
	for v := 1; v <= 40; v++ {
		cb := countBits[mode][versionRange(v)]
		if len(text) >= 1<<cb {
			continue
		}
		if 4+cb+dataBits(mode, len(text)) <= 8*dataCodewords(v, lvl) {
			version = v
			break
		}
	}
	if version == 0 {
		return nil, ErrTooLong
	}
	data := encodeData(text, mode, version, lvl)
	cw := addECC(data, version, lvl)
	c := &Code{Version: version, Size: 17 + 4*version, Level: lvl, Mode: mode}
	fn := functionModules(version)
	base := make([]bool, c.Size*c.Size)
	drawFunctionPatterns(base, c.Size, version)
	placeData(base, fn, c.Size, cw)
	best, bestScore := -1, 0
	for mask := 0; mask < 8; mask++ {
		m := append([]bool(nil), base...)
		applyMask(m, fn, c.Size, mask)
		drawFormat(m, c.Size, lvl, mask)
		if s := penalty(m, c.Size); best < 0 || s < bestScore {
			best, bestScore = mask, s
		}
	}
	c.Mask = best
	c.dark = base
	applyMask(c.dark, fn, c.Size, best)
	drawFormat(c.dark, c.Size, lvl, best)
	return c, nil
}

// bitWriter appends bits most significant first.
type bitWriter struct {
	b []byte
	n int // bits written
}

func (w *bitWriter) write(v uint, bits int) {
	for i := bits - 1; i >= 0; i-- {
		if w.n%8 == 0 {
			w.b = append(w.b, 0)
		}
		if v>>uint(i)&1 != 0 {
			w.b[w.n/8] |= 0x80 >> uint(w.n%8)
		}
		w.n++
	}
}

// encodeData builds the data codewords: mode indicator, count, data,
// terminator, padding to a byte, pad codewords (clause 7.4).
func encodeData(text string, mode Mode, v int, lvl Level) []byte {
	w := &bitWriter{}
	w.write(modeIndicator[mode], 4)
	w.write(uint(len(text)), countBits[mode][versionRange(v)])
	switch mode {
	case Numeric:
		for i := 0; i < len(text); i += 3 {
			j := min(i+3, len(text))
			val := uint(0)
			for _, c := range []byte(text[i:j]) {
				val = val*10 + uint(c-'0')
			}
			w.write(val, [4]int{0, 4, 7, 10}[j-i])
		}
	case Alphanumeric:
		for i := 0; i < len(text); i += 2 {
			a := uint(strings.IndexByte(alnumChars, text[i]))
			if i+1 < len(text) {
				w.write(a*45+uint(strings.IndexByte(alnumChars, text[i+1])), 11)
			} else {
				w.write(a, 6)
			}
		}
	default:
		for i := 0; i < len(text); i++ {
			w.write(uint(text[i]), 8)
		}
	}
	capBits := 8 * dataCodewords(v, lvl)
	w.write(0, min(4, capBits-w.n))
	if w.n%8 != 0 {
		w.write(0, 8-w.n%8)
	}
	for pad := uint(0xEC); len(w.b) < capBits/8; pad ^= 0xEC ^ 0x11 {
		w.write(pad, 8)
	}
	return w.b
}

// totalCodewords is how many 8-bit codewords a version's data area holds:
// the modules that are not function patterns, in whole bytes (the rest are
// remainder bits).
func totalCodewords(v int) int {
	fn := functionModules(v)
	free := 0
	for _, f := range fn {
		if !f {
			free++
		}
	}
	return free / 8
}

func dataCodewords(v int, lvl Level) int {
	return totalCodewords(v) - eccPerBlock[lvl][v]*eccBlocks[lvl][v]
}

// addECC splits the data into blocks, computes each block's Reed-Solomon
// codewords and interleaves them (clause 7.6).
func addECC(data []byte, v int, lvl Level) []byte {
	nBlocks, ecLen := eccBlocks[lvl][v], eccPerBlock[lvl][v]
	total := totalCodewords(v)
	shortLen := total / nBlocks // codewords of a short block, data and ECC
	nShort := nBlocks - total%nBlocks
	gen := generator(ecLen)
	var blocks, eccs [][]byte
	off := 0
	for i := 0; i < nBlocks; i++ {
		n := shortLen - ecLen
		if i >= nShort {
			n++
		}
		b := data[off : off+n]
		off += n
		blocks = append(blocks, b)
		eccs = append(eccs, rsRemainder(b, gen))
	}
	out := make([]byte, 0, total)
	for i := 0; i <= shortLen-ecLen; i++ {
		for _, b := range blocks {
			if i < len(b) {
				out = append(out, b[i])
			}
		}
	}
	for i := 0; i < ecLen; i++ {
		for _, e := range eccs {
			out = append(out, e[i])
		}
	}
	return out
}

// gfMul multiplies in GF(2^8) modulo x^8+x^4+x^3+x^2+1 (0x11D).
func gfMul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		carry := a & 0x80
		a <<= 1
		if carry != 0 {
			a ^= 0x1D
		}
		b >>= 1
	}
	return p
}

// generator returns the coefficients of (x-α^0)(x-α^1)...(x-α^(n-1)) below
// the leading 1, highest power first.
func generator(n int) []byte {
	g := []byte{1} // g[0] is the leading coefficient
	root := byte(1)
	for i := 0; i < n; i++ {
		next := make([]byte, len(g)+1)
		for j, c := range g {
			next[j] ^= c
			next[j+1] ^= gfMul(c, root)
		}
		g = next
		root = gfMul(root, 2)
	}
	return g[1:]
}

// rsRemainder is data(x)·x^n mod g(x): the error correction codewords.
func rsRemainder(data, gen []byte) []byte {
	rem := make([]byte, len(gen))
	for _, d := range data {
		factor := d ^ rem[0]
		copy(rem, rem[1:])
		rem[len(rem)-1] = 0
		for i, g := range gen {
			rem[i] ^= gfMul(g, factor)
		}
	}
	return rem
}

// alignmentCentres lists the row/column coordinates of the alignment
// patterns' centres (Annex E): 6, then evenly spaced (an even step) up to
// size-7; version 32's step is the exception the table makes.
func alignmentCentres(v int) []int {
	if v == 1 {
		return nil
	}
	n := v/7 + 2
	size := 17 + 4*v
	step := 26
	if v != 32 {
		step = (size - 13 + n - 2) / (n - 1) // rounded up
		step += step % 2                     // to even
	}
	out := make([]int, n)
	out[0] = 6
	for i := n - 1; i >= 1; i-- {
		out[i] = size - 7 - (n-1-i)*step
	}
	return out
}

// functionModules marks the modules that are not data: finders with their
// separators, timing, alignment, format and version information, and the
// dark module.
func functionModules(v int) []bool {
	size := 17 + 4*v
	fn := make([]bool, size*size)
	set := func(x, y int) {
		if x >= 0 && y >= 0 && x < size && y < size {
			fn[y*size+x] = true
		}
	}
	for _, c := range [][2]int{{0, 0}, {size - 7, 0}, {0, size - 7}} {
		for dy := -1; dy <= 7; dy++ {
			for dx := -1; dx <= 7; dx++ {
				set(c[0]+dx, c[1]+dy)
			}
		}
	}
	for i := 0; i < size; i++ {
		set(6, i)
		set(i, 6)
	}
	ac := alignmentCentres(v)
	for i, cy := range ac {
		for j, cx := range ac {
			if (i == 0 && j == 0) || (i == 0 && j == len(ac)-1) || (i == len(ac)-1 && j == 0) {
				continue // the finders' corners
			}
			for dy := -2; dy <= 2; dy++ {
				for dx := -2; dx <= 2; dx++ {
					set(cx+dx, cy+dy)
				}
			}
		}
	}
	// Format information around the finders, and the dark module.
	for i := 0; i <= 8; i++ {
		set(8, i)
		set(i, 8)
	}
	for i := 0; i < 8; i++ {
		set(size-1-i, 8)
		set(8, size-1-i)
	}
	if v >= 7 {
		for i := 0; i < 18; i++ {
			set(size-11+i%3, i/3)
			set(i/3, size-11+i%3)
		}
	}
	return fn
}

// drawFunctionPatterns draws the finders, timing patterns, alignment
// patterns, version information and dark module (format information is
// drawn per mask).
func drawFunctionPatterns(m []bool, size, v int) {
	put := func(x, y int, d bool) { m[y*size+x] = d }
	for _, c := range [][2]int{{0, 0}, {size - 7, 0}, {0, size - 7}} {
		for dy := 0; dy < 7; dy++ {
			for dx := 0; dx < 7; dx++ {
				ring := max(abs(dx-3), abs(dy-3))
				put(c[0]+dx, c[1]+dy, ring != 2)
			}
		}
	}
	for i := 8; i < size-8; i++ {
		put(6, i, i%2 == 0)
		put(i, 6, i%2 == 0)
	}
	ac := alignmentCentres(v)
	for i, cy := range ac {
		for j, cx := range ac {
			if (i == 0 && j == 0) || (i == 0 && j == len(ac)-1) || (i == len(ac)-1 && j == 0) {
				continue
			}
			for dy := -2; dy <= 2; dy++ {
				for dx := -2; dx <= 2; dx++ {
					put(cx+dx, cy+dy, max(abs(dx), abs(dy)) != 1)
				}
			}
		}
	}
	if v >= 7 {
		bits := uint(v)<<12 | bchRemainder(uint(v), 0x1F25, 12)
		for i := 0; i < 18; i++ {
			d := bits>>uint(i)&1 != 0
			put(size-11+i%3, i/3, d)
			put(i/3, size-11+i%3, d)
		}
	}
	put(8, size-8, true)
}

func abs(a int) int {
	if a < 0 {
		return -a
	}
	return a
}

// bchRemainder is (data << k) mod poly, the BCH check bits of the format
// (k=10) and version (k=12) information.
func bchRemainder(data, poly uint, k int) uint {
	r := data << uint(k)
	deg := 0
	for p := poly; p > 1; p >>= 1 {
		deg++
	}
	for i := deg + 16; i >= deg; i-- {
		if r>>uint(i)&1 != 0 {
			r ^= poly << uint(i-deg)
		}
	}
	return r
}

// drawFormat writes the 15 format bits (level and mask, BCH(15,5), masked
// with 101010000010010) in both copies.
func drawFormat(m []bool, size int, lvl Level, mask int) {
	data := uint(formatBits[lvl]<<3 | mask)
	bits := (data<<10 | bchRemainder(data, 0x537, 10)) ^ 0x5412
	bit := func(i int) bool { return bits>>uint(i)&1 != 0 }
	put := func(x, y int, d bool) { m[y*size+x] = d }
	for i := 0; i <= 5; i++ {
		put(8, i, bit(i))
	}
	put(8, 7, bit(6))
	put(8, 8, bit(7))
	put(7, 8, bit(8))
	for i := 9; i < 15; i++ {
		put(14-i, 8, bit(i))
	}
	for i := 0; i < 8; i++ {
		put(size-1-i, 8, bit(i))
	}
	for i := 8; i < 15; i++ {
		put(8, size-15+i, bit(i))
	}
}

// placeData fills the data area in two-module-wide columns from the bottom
// right, upwards then downwards, skipping the vertical timing pattern
// (clause 7.7.3). Remainder bits stay light.
func placeData(m, fn []bool, size int, cw []byte) {
	i, total := 0, len(cw)*8
	for right := size - 1; right >= 1; right -= 2 {
		if right == 6 {
			right = 5
		}
		up := (right+1)&2 == 0
		for vert := 0; vert < size; vert++ {
			y := vert
			if up {
				y = size - 1 - vert
			}
			for j := 0; j < 2; j++ {
				x := right - j
				if fn[y*size+x] {
					continue
				}
				if i < total {
					m[y*size+x] = cw[i/8]>>(7-uint(i%8))&1 != 0
				}
				i++
			}
		}
	}
}

// maskFuncs are the data mask conditions (Table 10); i is the row, j the
// column.
var maskFuncs = [8]func(i, j int) bool{
	func(i, j int) bool { return (i+j)%2 == 0 },
	func(i, j int) bool { return i%2 == 0 },
	func(i, j int) bool { return j%3 == 0 },
	func(i, j int) bool { return (i+j)%3 == 0 },
	func(i, j int) bool { return (i/2+j/3)%2 == 0 },
	func(i, j int) bool { return i*j%2+i*j%3 == 0 },
	func(i, j int) bool { return (i*j%2+i*j%3)%2 == 0 },
	func(i, j int) bool { return ((i+j)%2+i*j%3)%2 == 0 },
}

func applyMask(m, fn []bool, size, mask int) {
	f := maskFuncs[mask]
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			if !fn[y*size+x] && f(y, x) {
				m[y*size+x] = !m[y*size+x]
			}
		}
	}
}

// penalty scores a masked symbol (clause 7.8.3): runs of five or more
// modules of one colour, 2×2 blocks, finder-like 1:1:3:1:1 patterns next to
// four light modules, and the imbalance of dark and light.
func penalty(m []bool, size int) int {
	score := 0
	line := make([]bool, size)
	for _, transpose := range []bool{false, true} {
		for y := 0; y < size; y++ {
			for x := 0; x < size; x++ {
				if transpose {
					line[x] = m[x*size+y]
				} else {
					line[x] = m[y*size+x]
				}
			}
			score += linePenalty(line)
		}
	}
	dark := 0
	for y := 0; y < size; y++ {
		row, next := m[y*size:(y+1)*size], []bool(nil)
		if y+1 < size {
			next = m[(y+1)*size : (y+2)*size]
		}
		for x, d := range row {
			if d {
				dark++
			}
			if next != nil && x+1 < size && d == row[x+1] && d == next[x] && d == next[x+1] {
				score += 3
			}
		}
	}
	pct := dark * 100 / (size * size)
	return score + abs(pct-50)/5*10
}

// finderLike is dark-light-dark-dark-dark-light-dark (1:1:3:1:1).
var finderLike = [7]bool{true, false, true, true, true, false, true}

// linePenalty scores one row or column: runs (N1) and finder-like patterns
// with four light modules before or after them (N3).
func linePenalty(l []bool) int {
	score, run := 0, 1
	for x := 1; x <= len(l); x++ {
		if x < len(l) && l[x] == l[x-1] {
			run++
			continue
		}
		if run >= 5 {
			score += 3 + run - 5
		}
		run = 1
	}
	for x := 0; x+7 <= len(l); x++ {
		if !l[x] || !l[x+2] {
			continue
		}
		match := true
		for k := 1; k < 7 && match; k++ {
			match = l[x+k] == finderLike[k]
		}
		if !match {
			continue
		}
		if x >= 4 && !l[x-1] && !l[x-2] && !l[x-3] && !l[x-4] {
			score += 40
		}
		if x+11 <= len(l) && !l[x+7] && !l[x+8] && !l[x+9] && !l[x+10] {
			score += 40
		}
	}
	return score
}

// SVG draws the symbol with a quiet zone of four modules, one unit per
// module, dark runs as one path.
func (c *Code) SVG() string {
	const quiet = 4
	n := c.Size + 2*quiet
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" shape-rendering="crispEdges"><rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, n, n, n, n)
	for y := 0; y < c.Size; y++ {
		for x := 0; x < c.Size; {
			if !c.Dark(x, y) {
				x++
				continue
			}
			start := x
			for x < c.Size && c.Dark(x, y) {
				x++
			}
			fmt.Fprintf(&b, "M%d %dh%dv1h-%dz", start+quiet, y+quiet, x-start, x-start)
		}
	}
	b.WriteString(`"/></svg>`)
	return b.String()
}
