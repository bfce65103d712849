package imapd

import (
	"bufio"
	"compress/flate"
	"io"
	"strings"
	"testing"
)

// deflateConn is the client side of COMPRESS=DEFLATE over a raw connection.
type deflateConn struct {
	r  *bufio.Reader
	w  *flate.Writer
	rw io.Writer
}

func startDeflate(t *testing.T, r *raw) *deflateConn {
	t.Helper()
	if got := r.cmd("z", "COMPRESS DEFLATE"); got[len(got)-1] != "z OK DEFLATE active" {
		t.Fatalf("COMPRESS: %q", got)
	}
	// Bytes the raw reader buffered belong to the compressed stream.
	fr := flate.NewReader(io.MultiReader(r.r, r.c))
	fw, _ := flate.NewWriter(r.c, flate.DefaultCompression)
	return &deflateConn{r: bufio.NewReader(fr), w: fw}
}

func (d *deflateConn) cmd(t *testing.T, tag, command string) []string {
	t.Helper()
	io.WriteString(d.w, tag+" "+command+"\r\n")
	if err := d.w.Flush(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for {
		l, err := d.r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v (got %q)", err, lines)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if strings.HasPrefix(l, tag+" ") {
			return lines
		}
	}
}

// TestCompress: COMPRESS=DEFLATE (RFC 4978) in both directions, every
// response flushed, and a second COMPRESS refused.
func TestCompress(t *testing.T) {
	e := newEnv(t)
	e.fill(3)
	r := e.dialRaw()
	r.login()
	d := startDeflate(t, r)
	if got := d.cmd(t, "a", "SELECT INBOX"); got[len(got)-1] != "a OK [READ-WRITE] SELECT completed" {
		t.Fatalf("SELECT over deflate: %q", got)
	}
	got := d.cmd(t, "b", "FETCH 1:* (UID)")
	if len(got) != 4 || got[2] != "* 3 FETCH (UID 3)" {
		t.Errorf("FETCH over deflate: %q", got)
	}
	if got := d.cmd(t, "c", "COMPRESS DEFLATE"); !strings.HasPrefix(got[len(got)-1], "c NO [COMPRESSIONACTIVE]") {
		t.Errorf("second COMPRESS: %q", got)
	}
	if got := d.cmd(t, "d", "CAPABILITY"); strings.Contains(got[0], "COMPRESS=DEFLATE") {
		t.Errorf("CAPABILITY after COMPRESS: %q", got)
	}
}

// TestInflater: the decoder reads what compress/flate writes at every
// level, and hands out data before a flush that is not a sync flush.
func TestInflater(t *testing.T) {
	data := []byte(strings.Repeat("a LOGIN alice \"pw\"\r\nb SELECT INBOX\r\n", 500) + "tail\x00\xff")
	for _, level := range []int{flate.NoCompression, flate.BestSpeed, flate.DefaultCompression, flate.BestCompression, flate.HuffmanOnly} {
		var buf strings.Builder
		w, _ := flate.NewWriter(&buf, level)
		w.Write(data)
		w.Close()
		got, err := io.ReadAll(newInflater(newInbuf(strings.NewReader(buf.String()))))
		if err != nil || string(got) != string(data) {
			t.Errorf("level %d: %v, %d of %d octets", level, err, len(got), len(data))
		}
	}
}
