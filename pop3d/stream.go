package pop3d

import (
	"bufio"
	"bytes"
	"io"
)

// dotWriter writes a message as the body of a POP3 multi-line response
// (RFC 1939 §3): every line ends in CRLF (a bare LF is sent as CRLF, and a
// missing final line break is added), and a line that begins with "." gets
// another "." in front. It holds no more than the caller's chunk, so a
// message of any size streams through in constant memory.
type dotWriter struct {
	w *bufio.Writer
	// clean says the message has only CRLF line breaks and ends with one
	// (backend.Parsed: no BareLF, not Unterminated), as nearly all do:
	// then only dots need attention and whole runs of lines go out at once.
	clean bool
	bol   bool  // at the beginning of a line
	cr    bool  // the last byte written was a CR
	n     int64 // message octets written, stuffing not counted
	err   error
}

func (d *dotWriter) put(p []byte) {
	if d.err == nil {
		_, d.err = d.w.Write(p)
	}
}

func (d *dotWriter) write(p []byte) error {
	if d.clean {
		return d.writeClean(p)
	}
	for len(p) > 0 && d.err == nil {
		if d.bol && p[0] == '.' {
			d.put(dot)
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			d.put(p)
			d.n += int64(len(p))
			d.cr = p[len(p)-1] == '\r'
			d.bol = false
			break
		}
		if (i > 0 && p[i-1] == '\r') || (i == 0 && d.cr) {
			d.put(p[:i+1])
			d.n += int64(i + 1)
		} else {
			d.put(p[:i])
			d.put(crlf)
			d.n += int64(i + 2)
		}
		d.bol, d.cr = true, false
		p = p[i+1:]
	}
	return d.err
}

func (d *dotWriter) writeClean(p []byte) error {
	for len(p) > 0 && d.err == nil {
		if d.bol && p[0] == '.' {
			d.put(dot)
		}
		i := bytes.Index(p, nlDot)
		if i < 0 {
			d.put(p)
			d.n += int64(len(p))
			d.bol = p[len(p)-1] == '\n'
			break
		}
		d.put(p[:i+1])
		d.n += int64(i + 1)
		d.bol = true
		p = p[i+1:]
	}
	return d.err
}

// close ends the last line if needed and writes the terminating ".".
func (d *dotWriter) close() error {
	if !d.bol {
		d.put(crlf)
		d.n += 2
		d.bol = true
	}
	d.put(terminator)
	return d.err
}

var (
	dot        = []byte(".")
	nlDot      = []byte("\n.")
	crlf       = []byte("\r\n")
	terminator = []byte(".\r\n")
)

// copyLines copies r into d; with lines >= 0 it stops after that many
// lines (TOP, RFC 1939 §7).
func copyLines(d *dotWriter, r io.Reader, lines int64, buf []byte) error {
	if lines == 0 {
		return nil
	}
	for {
		n, err := r.Read(buf)
		chunk := buf[:n]
		if lines > 0 {
			off := 0
			for lines > 0 {
				i := bytes.IndexByte(chunk[off:], '\n')
				if i < 0 {
					break
				}
				off += i + 1
				lines--
			}
			if lines == 0 {
				return d.write(chunk[:off])
			}
		}
		if werr := d.write(chunk); werr != nil {
			return werr
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
