package imapd

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/roostmail/roost/internal/mutf7"
)

// The command parser.
//
// A command is read a line at a time (RFC 9051 §2.2: a line ends with
// CRLF, or, leniently, a bare LF). A line that ends in a literal header
// ({n}, {n+} for LITERAL+ / LITERAL- (RFC 7888), ~{n} for BINARY's literal8
// (RFC 3516)) continues after the literal's n octets. The parser takes the
// arguments token by token from the current line; when a token is a
// literal it checks the size against the command's budget (max_line_length,
// literals included) before anything is read, sends the continuation
// request for a synchronising literal, reads the octets and the next line.
// APPEND's and CATENATE's message data are streamed (messageLiteral), never
// held whole.
//
// A command that fails to parse or is refused is skipped to its end
// (skipRest): the rest of the line is dropped, and a non-synchronising
// literal at its end is read and thrown away (never run as a command)
// before the next line is skipped in turn; a synchronising one ends the
// command, since the client waits for a "+" that does not come.

// status is a tagged (or untagged) status response: OK, NO or BAD, with an
// optional response code (RFC 9051 §7.1). Handlers return it as an error.
type status struct {
	typ  string // "OK", "NO", "BAD"
	code string // e.g. "TRYCREATE", "APPENDUID 1 2"; "" for none
	text string
}

func (s *status) Error() string { return s.typ + " " + s.text }

func badf(format string, args ...any) *status {
	return &status{typ: "BAD", text: fmt.Sprintf(format, args...)}
}

func nof(code, format string, args ...any) *status {
	return &status{typ: "NO", code: code, text: fmt.Sprintf(format, args...)}
}

func okf(code, format string, args ...any) *status {
	return &status{typ: "OK", code: code, text: fmt.Sprintf(format, args...)}
}

// errDrainTooLarge: a refused literal is too large to read and drop; the
// connection ends after the command's response.
var errDrainTooLarge = errors.New("imapd: literal too large to drain")

// errCloseConn ends the connection; a BYE has been sent (or the transport
// is gone).
var errCloseConn = errors.New("imapd: closing connection")

// litHeader is a literal header found at the end of a line.
type litHeader struct {
	ok      bool
	n       int64
	nonSync bool
	binary  bool // literal8
	at      int  // offset of its first byte ('{' or '~') in the line
	bad     bool // a size too long to read: the literal's end is unknown
}

// parseLitHeader looks for a literal header at the end of line.
func parseLitHeader(line []byte) litHeader {
	var h litHeader
	l := len(line)
	if l < 3 || line[l-1] != '}' {
		return h
	}
	i := l - 1
	if line[i-1] == '+' {
		h.nonSync = true
		i--
	}
	j := i
	for j > 0 && line[j-1] >= '0' && line[j-1] <= '9' {
		j--
	}
	if j == i || j == 0 || line[j-1] != '{' {
		return h
	}
	h.ok, h.at = true, j-1
	if h.at > 0 && line[h.at-1] == '~' {
		h.binary = true
		h.at--
	}
	digits := line[j:i]
	if len(digits) > 18 {
		h.bad = true
		return h
	}
	for _, d := range digits {
		h.n = h.n*10 + int64(d-'0')
	}
	return h
}

// parser reads the arguments of one command.
type parser struct {
	c     *conn
	line  []byte
	pos   int
	lit   litHeader // at the end of line, not yet read
	used  int       // octets of the command so far (lines and literals)
	limit int       // max_line_length
	utf8  bool      // mailbox names are UTF-8 (RFC 9051 §5.1, RFC 6855); else modified UTF-7
	// stream is an open message literal (messageLiteral).
	stream *literalReader
	// tooLong: the current line was cut (only its end is in line).
	tooLong bool
	// drained counts the octets of refused literals read and dropped.
	drained int64
}

func (p *parser) errorf(format string, args ...any) *status {
	return badf(format, args...)
}

// nextLine reads the line that continues the command after a literal.
func (p *parser) nextLine() error {
	room := max(p.limit-p.used, 0)
	line, err := p.c.in.readLine(p.c.lineBuf[:0], room)
	p.c.lineBuf = line[:0]
	p.line, p.pos = line, 0
	p.lit = parseLitHeader(line)
	if err == errLineTooLong {
		p.setTooLong()
		return badf("Command line too long (limit %d octets)", p.limit)
	}
	if err != nil {
		return err
	}
	p.c.srv.debug(p.c.id, "C:", line)
	p.used += len(line) + 2
	return nil
}

// setTooLong marks the current line cut: only its end matters now, for a
// literal header there.
func (p *parser) setTooLong() {
	p.tooLong = true
	p.line = p.c.in.tail
	p.pos = len(p.line)
	p.lit = parseLitHeader(p.line)
}

// skipRest drops what is left of the command (see the comment at the top).
func (p *parser) skipRest() error {
	if p.stream != nil {
		left := p.stream.left
		p.stream = nil
		if err := p.c.in.discard(left); err != nil {
			return err
		}
		if err := p.nextLine(); err != nil && !isStatus(err) {
			return err
		}
	}
	for {
		h := p.lit
		if !h.ok || !h.nonSync {
			// A synchronising literal is not sent before "+": the command
			// ends here.
			return nil
		}
		if h.bad {
			p.c.bye("Literal too large")
			return errCloseConn
		}
		// What one command may make the server read and drop is bounded
		// in all: over COMPRESS a few octets on the wire can stand for
		// megabytes.
		if limit := p.c.srv.drainLimit(); h.n > limit || p.drained+h.n > limit {
			return errDrainTooLarge
		}
		p.drained += h.n
		p.c.log.Debug("discarding a literal of a failed command", "bytes", h.n)
		if err := p.c.in.discard(h.n); err != nil {
			return err
		}
		p.lit = litHeader{}
		if err := p.nextLine(); err != nil && !isStatus(err) {
			return err
		}
	}
}

func isStatus(err error) bool {
	var st *status
	return errors.As(err, &st)
}

func (p *parser) atEOL() bool { return p.pos >= len(p.line) }

func (p *parser) peek() byte {
	if p.pos < len(p.line) {
		return p.line[p.pos]
	}
	return 0
}

func (p *parser) more() bool { return p.pos < len(p.line) }

func (p *parser) consume(c byte) bool {
	if p.pos < len(p.line) && p.line[p.pos] == c {
		p.pos++
		return true
	}
	return false
}

func (p *parser) expect(c byte) error {
	if !p.consume(c) {
		if p.atEOL() {
			return p.errorf("Missing %q", c)
		}
		return p.errorf("Expected %q at %q", c, p.rest())
	}
	return nil
}

// rest returns a short excerpt of the unparsed line, for error texts.
func (p *parser) rest() string {
	r := p.line[min(p.pos, len(p.line)):]
	if len(r) > 20 {
		r = r[:20]
	}
	return string(r)
}

func (p *parser) sp() error {
	if !p.consume(' ') {
		if p.atEOL() {
			return p.errorf("Missing argument")
		}
		return p.errorf("Expected a space at %q", p.rest())
	}
	return nil
}

// end checks that the command ends here.
func (p *parser) end() error {
	if p.pos != len(p.line) {
		return p.errorf("Unexpected arguments at %q", p.rest())
	}
	return nil
}

// isAtomChar reports ATOM-CHAR (RFC 9051 §9): any CHAR except
// atom-specials: ( ) { SP CTL % * " \ ].
func isAtomChar(c byte) bool {
	switch {
	case c <= ' ' || c >= 0x7f:
		return false
	case c == '(' || c == ')' || c == '{' || c == '%' || c == '*' || c == '"' || c == '\\' || c == ']':
		return false
	}
	return true
}

// isAstringChar reports ASTRING-CHAR; octets of UTF-8 are accepted too
// (RFC 6855 §3 and what clients send with SEARCH CHARSET UTF-8).
func isAstringChar(c byte) bool { return isAtomChar(c) || c == ']' || c >= 0x80 }

// atom reads 1*ATOM-CHAR.
func (p *parser) atom() (string, error) {
	start := p.pos
	for p.pos < len(p.line) && isAtomChar(p.line[p.pos]) {
		p.pos++
	}
	if p.pos == start {
		return "", p.errorf("Expected an atom at %q", p.rest())
	}
	return string(p.line[start:p.pos]), nil
}

// word reads an atom-like token up to a space, parenthesis or end of line,
// for names of command arguments (fetch attributes, search keys), upper-cased.
func (p *parser) keyword() (string, error) {
	start := p.pos
	for p.pos < len(p.line) {
		c := p.line[p.pos]
		if c == ' ' || c == '(' || c == ')' || c == '[' || c == ']' || c == '<' || c == '{' || c == '"' {
			break
		}
		p.pos++
	}
	if p.pos == start {
		return "", p.errorf("Expected a keyword at %q", p.rest())
	}
	return strings.ToUpper(string(p.line[start:p.pos])), nil
}

// astring reads an astring (RFC 9051 §9): 1*ASTRING-CHAR or a string.
func (p *parser) astring() (string, error) {
	if p.pos < len(p.line) && (p.line[p.pos] == '"' || p.line[p.pos] == '{' ||
		p.line[p.pos] == '~' && p.pos+1 < len(p.line) && p.line[p.pos+1] == '{') {
		b, err := p.stringBytes()
		return string(b), err
	}
	start := p.pos
	for p.pos < len(p.line) && isAstringChar(p.line[p.pos]) {
		p.pos++
	}
	if p.pos == start {
		if p.atEOL() {
			return "", p.errorf("Missing argument")
		}
		return "", p.errorf("Expected a string at %q", p.rest())
	}
	return string(p.line[start:p.pos]), nil
}

// nstring reads a string or NIL; nil reports NIL.
func (p *parser) nstring() (s string, isNil bool, err error) {
	if p.pos+3 <= len(p.line) && strings.EqualFold(string(p.line[p.pos:p.pos+3]), "NIL") &&
		(p.pos+3 == len(p.line) || !isAtomChar(p.line[p.pos+3])) {
		p.pos += 3
		return "", true, nil
	}
	b, err := p.stringBytes()
	return string(b), false, err
}

// str reads a string: quoted or literal.
func (p *parser) str() (string, error) {
	b, err := p.stringBytes()
	return string(b), err
}

func (p *parser) stringBytes() ([]byte, error) {
	switch p.peek() {
	case '"':
		return p.quoted()
	case '{':
		return p.literal(false)
	case '~':
		if p.pos+1 < len(p.line) && p.line[p.pos+1] == '{' {
			return p.literal(true)
		}
	}
	if p.atEOL() {
		return nil, p.errorf("Missing argument")
	}
	return nil, p.errorf("Expected a string at %q", p.rest())
}

// quoted reads a quoted string (RFC 9051 §9: \" and \\ are the only
// escapes).
func (p *parser) quoted() ([]byte, error) {
	if err := p.expect('"'); err != nil {
		return nil, err
	}
	var out []byte
	start := p.pos
	for p.pos < len(p.line) {
		c := p.line[p.pos]
		switch c {
		case '"':
			if out == nil {
				out = append([]byte(nil), p.line[start:p.pos]...)
			}
			p.pos++
			return out, nil
		case '\\':
			if out == nil {
				out = append(make([]byte, 0, p.pos-start+16), p.line[start:p.pos]...)
			}
			p.pos++
			if p.pos >= len(p.line) || (p.line[p.pos] != '"' && p.line[p.pos] != '\\') {
				return nil, p.errorf("Invalid escape in a quoted string")
			}
			out = append(out, p.line[p.pos])
		case 0:
			return nil, p.errorf("NUL in a quoted string")
		default:
			if out != nil {
				out = append(out, c)
			}
		}
		p.pos++
	}
	return nil, p.errorf("Unterminated quoted string")
}

// literal reads a literal into memory (counted against the command budget).
func (p *parser) literal(binaryOK bool) ([]byte, error) {
	h := p.lit
	if !h.ok || p.pos != h.at {
		return nil, p.errorf("Invalid literal at %q", p.rest())
	}
	if h.binary && !binaryOK {
		return nil, p.errorf("literal8 not allowed here")
	}
	if h.bad && !h.nonSync {
		// No octet of it comes before "+": refused, the session goes on.
		p.c.untagged("NO [TOOBIG] Literal refused (limit %d)", p.limit)
		return nil, p.errorf("Literal too large")
	}
	if h.bad {
		p.c.bye("Literal too large")
		return nil, errCloseConn
	}
	if int64(p.used)+h.n > int64(p.limit) {
		p.c.untagged("NO [TOOBIG] Literal of %d bytes refused (limit %d)", h.n, p.limit)
		return nil, p.errorf("Literal too large")
	}
	if err := p.beginLiteral(h); err != nil {
		return nil, err
	}
	data := make([]byte, h.n)
	if _, err := io.ReadFull(p.c.in, data); err != nil {
		return nil, eofIsUnexpected(err)
	}
	p.c.srv.debug(p.c.id, "C:", data)
	p.used += int(h.n)
	if err := p.nextLine(); err != nil {
		return nil, err
	}
	return data, nil
}

// beginLiteral sends the continuation request of a synchronising literal
// (RFC 9051 §7.5) and marks the header read.
func (p *parser) beginLiteral(h litHeader) error {
	p.lit = litHeader{}
	p.pos = len(p.line)
	if !h.nonSync {
		if err := p.c.continuation("Ready for literal data"); err != nil {
			return err
		}
	}
	return nil
}

func eofIsUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// literalReader streams a message literal.
type literalReader struct {
	p    *parser
	left int64
}

func (r *literalReader) Read(b []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > r.left {
		b = b[:r.left]
	}
	n, err := r.p.c.in.Read(b)
	r.left -= int64(n)
	if err != nil {
		return n, eofIsUnexpected(err)
	}
	return n, nil
}

// messageLiteral opens the literal at the parser's position as a stream of
// at most limit octets (APPEND, CATENATE TEXT). A larger one is refused
// before any of it is read (NO [TOOBIG], RFC 7889). The caller reads it
// through and then calls endMessageLiteral.
func (p *parser) messageLiteral(limit int64) (int64, *literalReader, error) {
	h := p.lit
	if !h.ok || p.pos != h.at {
		return 0, nil, p.errorf("Expected a literal at %q", p.rest())
	}
	if h.bad && h.nonSync {
		p.c.bye("Literal too large")
		return 0, nil, errCloseConn
	}
	if h.bad || h.n > limit {
		return 0, nil, nof("TOOBIG", "Message too big (limit %d octets)", limit)
	}
	if err := p.beginLiteral(h); err != nil {
		return 0, nil, err
	}
	p.stream = &literalReader{p: p, left: h.n}
	return h.n, p.stream, nil
}

// endMessageLiteral finishes a message literal: what the reader left is
// dropped, and the command goes on with the next line.
func (p *parser) endMessageLiteral() error {
	r := p.stream
	if r == nil {
		return nil
	}
	if r.left > 0 {
		if err := p.c.in.discard(r.left); err != nil {
			return err
		}
	}
	p.stream = nil
	return p.nextLine()
}

// number reads a number (RFC 9051 §9: up to 2^32-1).
func (p *parser) number() (uint32, error) {
	n, err := p.number64()
	if err != nil {
		return 0, err
	}
	if n > 0xffffffff {
		return 0, p.errorf("Number too large")
	}
	return uint32(n), nil
}

// number64 reads a number64 (up to 2^63-1, RFC 9051 §9).
func (p *parser) number64() (uint64, error) {
	start := p.pos
	var n uint64
	for p.pos < len(p.line) && p.line[p.pos] >= '0' && p.line[p.pos] <= '9' {
		if p.pos-start >= 19 {
			return 0, p.errorf("Number too large")
		}
		n = n*10 + uint64(p.line[p.pos]-'0')
		p.pos++
	}
	if p.pos == start {
		return 0, p.errorf("Expected a number at %q", p.rest())
	}
	return n, nil
}

func (p *parser) nzNumber() (uint32, error) {
	n, err := p.number()
	if err == nil && n == 0 {
		err = p.errorf("Zero is not a valid number here")
	}
	return n, err
}

// list parses "(" [item *(SP item)] ")"; each calls item for one element.
func (p *parser) list(item func() error) error {
	if err := p.expect('('); err != nil {
		return err
	}
	if p.consume(')') {
		return nil
	}
	for {
		if err := item(); err != nil {
			return err
		}
		if p.consume(')') {
			return nil
		}
		if err := p.sp(); err != nil {
			return err
		}
	}
}

// mailbox reads a mailbox name and returns it in UTF-8.
func (p *parser) mailbox() (string, error) {
	s, err := p.astring()
	if err != nil {
		return "", err
	}
	if strings.EqualFold(s, "INBOX") {
		return "INBOX", nil
	}
	if p.utf8 {
		// RFC 6855 §3 / RFC 9051: raw UTF-8, '&' is an ordinary character.
		if !utf8.ValidString(s) {
			return "", nof("CANNOT", "Mailbox name is not valid UTF-8")
		}
		return s, nil
	}
	d, err := mutf7.Decode(s)
	if err != nil {
		return "", nof("CANNOT", "Mailbox name is not valid modified UTF-7 (RFC 3501 section 5.1.3)")
	}
	return d, nil
}

// listMailbox reads a list-mailbox (RFC 9051 §9: may contain % and *).
func (p *parser) listMailbox() (string, error) {
	var s string
	if c := p.peek(); c == '"' || c == '{' {
		b, err := p.stringBytes()
		if err != nil {
			return "", err
		}
		s = string(b)
	} else {
		start := p.pos
		for p.pos < len(p.line) {
			c := p.line[p.pos]
			if !(isAstringChar(c) || c == '%' || c == '*') {
				break
			}
			p.pos++
		}
		if p.pos == start {
			return "", p.errorf("Expected a mailbox pattern at %q", p.rest())
		}
		s = string(p.line[start:p.pos])
	}
	if p.utf8 {
		return s, nil
	}
	d, err := mutf7.Decode(s)
	if err != nil {
		return s, nil // matches nothing sensible, but is no error (RFC 3501 §6.3.8)
	}
	return d, nil
}

// flag reads one flag: \System or a keyword atom.
func (p *parser) flag(allowWildcard bool) (string, error) {
	if p.consume('\\') {
		if allowWildcard && p.consume('*') {
			return `\*`, nil
		}
		a, err := p.atom()
		if err != nil {
			return "", err
		}
		return `\` + a, nil
	}
	return p.atom()
}

// flagList reads "(" [flag *(SP flag)] ")"; a single flag without
// parentheses is accepted where RFC 9051 allows it (STORE).
func (p *parser) flagList(parensOptional bool) ([]string, error) {
	var out []string
	if parensOptional && p.peek() != '(' {
		for {
			f, err := p.flag(false)
			if err != nil {
				return nil, err
			}
			out = append(out, f)
			if p.peek() != ' ' {
				return out, nil
			}
			p.pos++
		}
	}
	err := p.list(func() error {
		f, err := p.flag(false)
		out = append(out, f)
		return err
	})
	return out, err
}

var months = [...]string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}

// date reads a date (RFC 9051 §9: date-day "-" date-month "-" date-year,
// optionally quoted).
func (p *parser) date() (time.Time, error) {
	quoted := p.consume('"')
	start := p.pos
	for p.pos < len(p.line) && p.line[p.pos] != ' ' && p.line[p.pos] != ')' && p.line[p.pos] != '"' {
		p.pos++
	}
	s := string(p.line[start:p.pos])
	if quoted && !p.consume('"') {
		return time.Time{}, p.errorf("Unterminated date")
	}
	d, m, y, ok := splitDate(s)
	if !ok {
		return time.Time{}, p.errorf("Invalid date %q", s)
	}
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC), nil
}

func splitDate(s string) (day int, month time.Month, year int, ok bool) {
	f := strings.Split(s, "-")
	if len(f) != 3 || len(f[0]) < 1 || len(f[0]) > 2 || len(f[2]) != 4 {
		return 0, 0, 0, false
	}
	d, err1 := strconv.Atoi(f[0])
	y, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil || d < 1 || d > 31 {
		return 0, 0, 0, false
	}
	for i, m := range months {
		if strings.EqualFold(f[1], m) {
			return d, time.Month(i + 1), y, true
		}
	}
	return 0, 0, 0, false
}

// dateTime reads a date-time (RFC 9051 §9): "dd-Mon-yyyy hh:mm:ss +zzzz".
func (p *parser) dateTime() (time.Time, error) {
	b, err := p.quoted()
	if err != nil {
		return time.Time{}, err
	}
	s := strings.TrimLeft(string(b), " ")
	t, err := time.Parse("2-Jan-2006 15:04:05 -0700", s)
	if err != nil {
		// Month names are case-insensitive.
		if len(s) > 6 {
			i := strings.IndexByte(s, '-')
			if i > 0 && i+4 <= len(s) {
				s = s[:i+1] + strings.ToUpper(s[i+1:i+2]) + strings.ToLower(s[i+2:i+4]) + s[i+4:]
				t, err = time.Parse("2-Jan-2006 15:04:05 -0700", s)
			}
		}
		if err != nil {
			return time.Time{}, p.errorf("Invalid date-time %q", string(b))
		}
	}
	return t, nil
}
