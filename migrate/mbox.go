package migrate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// An mbox file is messages one after another, each behind a "From " line
// ("From sender Thu Jan  2 15:04:05 2025") and followed by an empty line.
// A body line that would look like a "From " line is quoted with ">":
// mboxo quotes "From " only (which cannot be undone exactly), mboxrd also
// ">From ", ">>From ", ... so that reading removes exactly one ">".
//
// Flags live in headers that Dovecot, mutt, Pine and Thunderbird write and
// that are not part of the message (Dovecot hides them from IMAP clients):
// Status (R seen, O old), X-Status (A answered, F flagged, T draft, D
// deleted), X-Keywords; UIDs in X-UID and, in the first message,
// X-IMAPbase (UIDVALIDITY and the next UID). The reader strips them.

// MboxMessage is one message of an mbox.
type MboxMessage struct {
	// Body is the message as stored (LF or CRLF lines as in the file), with
	// the quoting and the metadata headers removed.
	Body []byte
	// Sender is the address on the "From " line.
	Sender string
	// Date is the time on the "From " line (the delivery time: INTERNALDATE).
	Date time.Time
	// Flags are from Status, X-Status and X-Keywords.
	Flags []string
	// UID is from X-UID (0: none).
	UID uint32
	// UIDValidity and UIDNext are from X-IMAPbase (0: none).
	UIDValidity, UIDNext uint32
	// Offset is where the message's "From " line starts in the file.
	Offset int64
	// TooBig is set, and Body is nil, when the message is larger than
	// MboxOptions.MaxMessageBytes.
	TooBig bool
	// Size is the message's size in the file (also when TooBig).
	Size int64
	// Internal marks the pseudo-message UW-IMAP and Pine keep at the top of
	// a folder ("DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA").
	Internal bool
}

// MboxOptions configure an MboxReader.
type MboxOptions struct {
	// MboxO reads the file as mboxo: ">From " lines are kept as they are.
	// By default (mboxrd) one ">" is removed from every ">...>From " line.
	MboxO bool
	// MaxMessageBytes skips messages larger than this (reported TooBig);
	// 0: no limit.
	MaxMessageBytes int64
	// MaxLineBytes bounds one line (default 1 MiB); a longer line is cut
	// into pieces, which never start a message.
	MaxLineBytes int
}

// MboxReader reads the messages of an mbox one at a time.
type MboxReader struct {
	r    *bufio.Reader
	opts MboxOptions
	off  int64
	// next is the "From " line that starts the next message, already read.
	next       []byte
	nextOff    int64
	started    bool
	err        error
	lineBroken bool // the previous read ended inside a line
}

// ErrNotMbox is returned when a file does not start with a "From " line.
var ErrNotMbox = errors.New("not an mbox file (it does not start with a \"From \" line)")

// NewMboxReader reads an mbox from r.
func NewMboxReader(r io.Reader, opts MboxOptions) *MboxReader {
	if opts.MaxLineBytes <= 0 {
		opts.MaxLineBytes = 1 << 20
	}
	return &MboxReader{r: bufio.NewReaderSize(r, 64<<10), opts: opts}
}

// readLine returns the next line with its line end, or io.EOF. A line
// longer than MaxLineBytes comes in pieces; cont reports that this piece
// does not start a line.
func (m *MboxReader) readLine() (line []byte, cont bool, err error) {
	cont = m.lineBroken
	var buf []byte
	for {
		chunk, err := m.r.ReadSlice('\n')
		buf = append(buf, chunk...)
		if err == nil {
			m.lineBroken = false
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(buf) >= m.opts.MaxLineBytes {
				m.lineBroken = true
				break
			}
			continue
		}
		if len(buf) > 0 && errors.Is(err, io.EOF) {
			m.lineBroken = false
			break
		}
		return nil, false, err
	}
	m.off += int64(len(buf))
	return buf, cont, nil
}

// Next returns the next message, or io.EOF after the last.
func (m *MboxReader) Next() (*MboxMessage, error) {
	if m.err != nil {
		return nil, m.err
	}
	if !m.started {
		m.started = true
		for {
			line, _, err := m.readLine()
			if err != nil {
				if errors.Is(err, io.EOF) {
					m.err = io.EOF
					return nil, io.EOF // an empty file holds no messages
				}
				m.err = err
				return nil, err
			}
			if len(bytes.TrimSpace(line)) == 0 {
				continue // blank lines before the first message
			}
			if !bytes.HasPrefix(line, []byte("From ")) {
				m.err = ErrNotMbox
				return nil, ErrNotMbox
			}
			m.next, m.nextOff = line, m.off-int64(len(line))
			break
		}
	}
	if m.next == nil {
		m.err = io.EOF
		return nil, io.EOF
	}
	msg := &MboxMessage{Offset: m.nextOff}
	msg.Sender, msg.Date = parseFromLine(m.next)
	m.next = nil
	var body []byte
	atStart := true
	for {
		line, cont, err := m.readLine()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			m.err = err
			return nil, fmt.Errorf("mbox at offset %d: %w", m.off, err)
		}
		if !cont && !atStart && isFromLine(line) {
			m.next, m.nextOff = line, m.off-int64(len(line))
			break
		}
		atStart = false
		if !cont && !m.opts.MboxO {
			line = unquoteFrom(line)
		}
		msg.Size += int64(len(line))
		if m.opts.MaxMessageBytes > 0 && msg.Size > m.opts.MaxMessageBytes+2 {
			msg.TooBig = true
			body = nil
			continue
		}
		if !msg.TooBig {
			body = append(body, line...)
		}
	}
	// The empty line before the next "From " (or at the end of the file)
	// separates messages; it is not part of this one.
	switch {
	case bytes.HasSuffix(body, []byte("\r\n\r\n")):
		body = body[:len(body)-2]
	case bytes.HasSuffix(body, []byte("\n")):
		body = body[:len(body)-1]
	}
	if msg.TooBig {
		return msg, nil
	}
	msg.Body = msg.parseMeta(body)
	if m.opts.MaxMessageBytes > 0 && int64(len(msg.Body)) > m.opts.MaxMessageBytes {
		msg.TooBig, msg.Body = true, nil
	}
	return msg, nil
}

// isFromLine reports whether a line starts a message: "From " and a date
// that can be read, so that an unquoted "From " line in a body (mboxcl
// files do not quote) is seldom taken for one. No empty line is required
// before it: WriteMboxMessage keeps a message without a final line end as
// it is, so its separator line follows the last text line directly.
func isFromLine(line []byte) bool {
	if !bytes.HasPrefix(line, []byte("From ")) {
		return false
	}
	_, d := parseFromLine(line)
	return !d.IsZero()
}

// fromDateLayouts are the forms of the date on "From " lines: asctime, as
// most programs write it, with a zone name or offset some add.
var fromDateLayouts = []string{
	"Mon Jan _2 15:04:05 2006",
	"Mon Jan _2 15:04:05 MST 2006",
	"Mon Jan _2 15:04:05 2006 -0700",
	"Mon Jan _2 15:04:05 -0700 2006",
	"Mon Jan _2 15:04 2006",
	"Mon, _2 Jan 2006 15:04:05 -0700",
}

// parseFromLine splits "From sender date" into the sender and the date
// (zero if none can be read). The date is in UTC unless it names a zone.
func parseFromLine(line []byte) (string, time.Time) {
	s := strings.TrimRight(string(line), "\r\n")
	s = strings.TrimPrefix(s, "From ")
	sender, date, _ := strings.Cut(strings.TrimLeft(s, " "), " ")
	date = strings.TrimSpace(date)
	// "Jan  2" has two spaces; time's _2 wants them, so normalise runs.
	norm := strings.Join(strings.Fields(date), " ")
	for _, layout := range fromDateLayouts {
		l := strings.Join(strings.Fields(strings.ReplaceAll(layout, "_2", "2")), " ")
		if t, err := time.Parse(l, norm); err == nil {
			return sender, t
		}
	}
	return sender, time.Time{}
}

// unquoteFrom removes one ">" from a ">...>From " line (mboxrd).
func unquoteFrom(line []byte) []byte {
	i := 0
	for i < len(line) && line[i] == '>' {
		i++
	}
	if i > 0 && bytes.HasPrefix(line[i:], []byte("From ")) {
		return line[1:]
	}
	return line
}

// metaHeaders are the header fields an mbox keeps its own state in.
var metaHeaders = []string{"status", "x-status", "x-keywords", "x-uid", "x-imapbase", "x-imap"}

// parseMeta takes the flag and UID headers out of the message's header
// and records them; it returns the message without them.
func (msg *MboxMessage) parseMeta(body []byte) []byte {
	var out []byte
	rest := body
	stripping := false
	lastMeta := "" // the field a folded continuation line belongs to
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		line := rest
		if i >= 0 {
			line = rest[:i+1]
		}
		rest = rest[len(line):]
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 {
			out = append(out, line...) // end of the header
			return append(out, rest...)
		}
		if (line[0] == ' ' || line[0] == '\t') && len(out)+len(line) > 0 {
			if stripping {
				msg.meta(lastMeta, string(trimmed)) // a folded continuation
				continue
			}
			out = append(out, line...)
			continue
		}
		name, value, ok := bytes.Cut(trimmed, []byte(":"))
		stripping = false
		if ok {
			lname := strings.ToLower(strings.TrimSpace(string(name)))
			for _, h := range metaHeaders {
				if lname == h {
					stripping = true
					lastMeta = h
					msg.meta(h, string(value))
				}
			}
		}
		if !stripping {
			out = append(out, line...)
		}
	}
	return out
}

func (msg *MboxMessage) meta(name, value string) {
	value = strings.TrimSpace(value)
	add := func(f string) {
		if !hasFlag(msg.Flags, f) {
			msg.Flags = append(msg.Flags, f)
		}
	}
	switch name {
	case "status":
		if strings.ContainsRune(value, 'R') {
			add(FlagSeen)
		}
	case "x-status":
		for _, c := range value {
			switch c {
			case 'A':
				add(FlagAnswered)
			case 'F':
				add(FlagFlagged)
			case 'T':
				add(FlagDraft)
			case 'D':
				add(FlagDeleted)
			}
		}
	case "x-keywords":
		for _, k := range strings.FieldsFunc(value, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' }) {
			if ValidKeyword(k) {
				add(k)
			}
		}
	case "x-uid":
		if v, err := strconv.ParseUint(value, 10, 32); err == nil {
			msg.UID = uint32(v)
		}
	case "x-imapbase":
		f := strings.Fields(value)
		if len(f) >= 2 {
			uv, err1 := strconv.ParseUint(f[0], 10, 32)
			next, err2 := strconv.ParseUint(f[1], 10, 32)
			if err1 == nil && err2 == nil {
				msg.UIDValidity, msg.UIDNext = uint32(uv), uint32(next)
			}
		}
	case "x-imap":
		msg.Internal = true
	}
}

// WriteMboxMessage appends one message to an mboxrd file: the "From "
// line, the state headers (X-IMAPbase when uidValidity is not 0, X-UID,
// Status, X-Status, X-Keywords), the quoted message in LF form when that
// can be undone exactly (FromCRLF), and the empty line after it.
func WriteMboxMessage(w io.Writer, sender string, date time.Time, body []byte, uid uint32, flags []string, uidValidity, uidNext uint32) error {
	if sender == "" || strings.ContainsAny(sender, " \t\r\n") {
		sender = "MAILER-DAEMON"
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "From %s %s\n", sender, date.UTC().Format("Mon Jan _2 15:04:05 2006"))
	if uidValidity != 0 {
		fmt.Fprintf(bw, "X-IMAPbase: %d %d\n", uidValidity, uidNext)
	}
	if uid != 0 {
		fmt.Fprintf(bw, "X-UID: %d\n", uid)
	}
	status, xstatus, kws := "O", "", []string(nil)
	for _, f := range flags {
		switch strings.ToLower(f) {
		case `\seen`:
			status = "RO"
		case `\answered`:
			xstatus += "A"
		case `\flagged`:
			xstatus += "F"
		case `\draft`:
			xstatus += "T"
		case `\deleted`:
			xstatus += "D"
		default:
			if !isSystemFlag(f) && ValidKeyword(f) {
				kws = append(kws, f)
			}
		}
	}
	fmt.Fprintf(bw, "Status: %s\n", status)
	if xstatus != "" {
		fmt.Fprintf(bw, "X-Status: %s\n", xstatus)
	}
	if len(kws) > 0 {
		fmt.Fprintf(bw, "X-Keywords: %s\n", strings.Join(kws, " "))
	}
	data := FromCRLF(body)
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		line := data
		if i >= 0 {
			line = data[:i+1]
		}
		data = data[len(line):]
		j := 0
		for j < len(line) && line[j] == '>' {
			j++
		}
		if bytes.HasPrefix(line[j:], []byte("From ")) {
			bw.WriteByte('>')
		}
		bw.Write(line)
	}
	bw.WriteByte('\n')
	return bw.Flush()
}
