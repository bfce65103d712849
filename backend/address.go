package backend

import (
	"strings"
)

// Address lists are parsed here rather than with net/mail (or go-message,
// which wraps it) because IMAP needs what net/mail drops or refuses:
// net/mail flattens groups and loses their names, which ENVELOPE must keep
// (RFC 3501 §7.4.2), and it rejects a whole list at the first malformed
// address, where a mail reader shows what it can. The parser below follows
// RFC 5322 §3.4 with the obsolete forms of §4.4 (routes, CFWS around dots),
// takes a comment as the display name of a bare addr-spec as readers do,
// and never fails: it runs once over the input and skips what it cannot
// read.

// Placeholders for the parts of a malformed address that are missing, so
// that an address never has a NIL host, which IMAP reserves for group
// markers (RFC 3501 §7.4.2). Dovecot fills in the same names.
const (
	MissingMailbox = "MISSING_MAILBOX"
	MissingDomain  = "MISSING_DOMAIN"
)

// maxAddresses bounds how many entries one header yields, against hostile
// messages (a 1 MB header of commas).
const maxAddresses = 10000

// ParseAddressList parses an address-list header value (From:, To:, ...)
// as written, unfolded or not.
func ParseAddressList(value string) []Address {
	p := addrParser{s: value}
	var out []Address
	for len(out) < maxAddresses {
		p.skipCFWS()
		if p.eof() {
			break
		}
		if p.peek() == ',' {
			p.pos++
			continue
		}
		start := p.pos
		out = p.address(out)
		if p.pos == start {
			p.pos++ // cannot happen, but never loop
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

type addrParser struct {
	s   string
	pos int
	// comment is the last comment skipped, for the display name of a bare
	// addr-spec ("user@example.org (Real Name)").
	comment string
}

func (p *addrParser) eof() bool  { return p.pos >= len(p.s) }
func (p *addrParser) peek() byte { return p.s[p.pos] }

// skipCFWS skips whitespace and comments (RFC 5322 §3.2.2).
func (p *addrParser) skipCFWS() {
	for !p.eof() {
		switch c := p.peek(); {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			p.pos++
		case c == '(':
			p.comment = p.readComment()
		default:
			return
		}
	}
}

// readComment reads a possibly nested comment and returns its text with
// quoted-pairs resolved and whitespace collapsed.
func (p *addrParser) readComment() string {
	var sb strings.Builder
	depth := 0
	for !p.eof() {
		c := p.peek()
		p.pos++
		switch {
		case c == '(':
			if depth > 0 {
				sb.WriteByte(c)
			}
			depth++
		case c == ')':
			depth--
			if depth == 0 {
				return collapseSpace(sb.String())
			}
			sb.WriteByte(c)
		case c == '\\' && !p.eof():
			sb.WriteByte(p.peek())
			p.pos++
		default:
			sb.WriteByte(c)
		}
	}
	return collapseSpace(sb.String())
}

func isAtext(c byte) bool {
	switch c {
	case '(', ')', '<', '>', '[', ']', ':', ';', '@', '\\', ',', '"', ' ', '\t', '\r', '\n':
		return false
	}
	return c > ' ' && c != 0x7f
}

// word is an atom (dots included, for dot-atoms and obs-phrase) or a
// quoted string, unquoted.
type word struct {
	text   string
	quoted bool
}

// readWords reads a sequence of words separated by CFWS: a display name,
// or the local part of an addr-spec.
func (p *addrParser) readWords() []word {
	var ws []word
	for {
		p.skipCFWS()
		if p.eof() {
			return ws
		}
		switch c := p.peek(); {
		case c == '"':
			ws = append(ws, word{p.readQuoted(), true})
		case isAtext(c):
			start := p.pos
			for !p.eof() && isAtext(p.peek()) {
				p.pos++
			}
			ws = append(ws, word{p.s[start:p.pos], false})
		default:
			return ws
		}
	}
}

func (p *addrParser) readQuoted() string {
	p.pos++ // the opening quote
	var sb strings.Builder
	for !p.eof() {
		c := p.peek()
		p.pos++
		switch {
		case c == '"':
			return sb.String()
		case c == '\\' && !p.eof():
			sb.WriteByte(p.peek())
			p.pos++
		case c == '\r' || c == '\n':
			// folding inside a quoted string
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// phrase joins words as a display name: single spaces between words.
func phrase(ws []word) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = w.text
	}
	return strings.Join(parts, " ")
}

// localPart joins words as a local part: obs-local-part allows CFWS
// around the dots, which does not belong to the address.
func localPart(ws []word) string {
	var sb strings.Builder
	for _, w := range ws {
		sb.WriteString(w.text)
	}
	return sb.String()
}

// address reads one address (a mailbox or a group) and appends its entries.
func (p *addrParser) address(out []Address) []Address {
	p.comment = ""
	ws := p.readWords()
	if p.eof() {
		return append(out, p.bareAddrSpec(ws, ""))
	}
	switch p.peek() {
	case ':':
		p.pos++
		return p.group(out, phrase(ws))
	case '<':
		return append(out, p.angleAddr(phrase(ws)))
	case '@':
		p.pos++
		return append(out, p.bareAddrSpec(ws, p.domain()))
	case ',', ';':
		return append(out, p.bareAddrSpec(ws, ""))
	}
	// Something no address can contain here ('>', ')', '[', '\'): skip it
	// and what follows up to the next address.
	if len(ws) > 0 {
		out = append(out, p.bareAddrSpec(ws, ""))
	}
	for !p.eof() && p.peek() != ',' {
		p.pos++
	}
	return out
}

// bareAddrSpec makes an address of an addr-spec without angle brackets:
// a comment, if any, is its display name.
func (p *addrParser) bareAddrSpec(local []word, domain string) Address {
	p.skipCFWS()
	a := Address{Name: p.comment, Mailbox: localPart(local), Host: domain}
	return fillMissing(a)
}

func fillMissing(a Address) Address {
	if a.Mailbox == "" {
		a.Mailbox = MissingMailbox
	}
	if a.Host == "" {
		a.Host = MissingDomain
	}
	return a
}

// domain reads a domain after '@': a dot-atom, possibly with CFWS around
// its dots (obs-domain), or a domain literal.
func (p *addrParser) domain() string {
	var sb strings.Builder
	for {
		p.skipCFWS()
		if p.eof() {
			break
		}
		c := p.peek()
		if c == '[' {
			start := p.pos
			for !p.eof() && p.peek() != ']' {
				if p.peek() == '\\' {
					p.pos++
				}
				p.pos++
			}
			if !p.eof() {
				p.pos++
			}
			sb.WriteString(strings.Map(dropCRLF, p.s[start:min(p.pos, len(p.s))]))
			continue
		}
		if !isAtext(c) {
			break
		}
		start := p.pos
		for !p.eof() && isAtext(p.peek()) {
			p.pos++
		}
		sb.WriteString(p.s[start:p.pos])
	}
	return sb.String()
}

func dropCRLF(r rune) rune {
	if r == '\r' || r == '\n' {
		return -1
	}
	return r
}

// angleAddr reads "<[route:]addr-spec>" after a display name.
func (p *addrParser) angleAddr(name string) Address {
	p.pos++ // '<'
	a := Address{Name: name}
	// obs-route: "@a,@b:" before the addr-spec (RFC 5322 §4.4).
	p.skipCFWS()
	if !p.eof() && p.peek() == '@' {
		var route []string
		for !p.eof() && (p.peek() == '@' || p.peek() == ',') {
			if p.peek() == ',' {
				p.pos++
				p.skipCFWS()
				continue
			}
			p.pos++
			route = append(route, "@"+p.domain())
			p.skipCFWS()
		}
		if !p.eof() && p.peek() == ':' {
			p.pos++
		}
		a.Route = strings.Join(route, ",")
	}
	ws := p.readWords()
	a.Mailbox = localPart(ws)
	if !p.eof() && p.peek() == '@' {
		p.pos++
		a.Host = p.domain()
	}
	// Up to the closing bracket; whatever else is inside is dropped.
	for !p.eof() && p.peek() != '>' && p.peek() != ',' {
		p.pos++
	}
	if !p.eof() && p.peek() == '>' {
		p.pos++
	}
	p.skipCFWS()
	return fillMissing(a)
}

// group reads the members of a group up to ';' and appends the group's
// start marker, members and end marker (RFC 3501 §7.4.2).
func (p *addrParser) group(out []Address, name string) []Address {
	out = append(out, Address{GroupStart: true, Mailbox: name})
	for len(out) < maxAddresses {
		p.skipCFWS()
		if p.eof() {
			break
		}
		switch p.peek() {
		case ';':
			p.pos++
			return append(out, Address{GroupEnd: true})
		case ',':
			p.pos++
			continue
		case ':':
			p.pos++ // a group cannot nest; ignore the colon
			continue
		}
		start := p.pos
		p.comment = ""
		ws := p.readWords()
		switch {
		case p.eof() || p.peek() == ',' || p.peek() == ';':
			out = append(out, p.bareAddrSpec(ws, ""))
		case p.peek() == '<':
			out = append(out, p.angleAddr(phrase(ws)))
		case p.peek() == '@':
			p.pos++
			out = append(out, p.bareAddrSpec(ws, p.domain()))
		default:
			for !p.eof() && p.peek() != ',' && p.peek() != ';' {
				p.pos++
			}
		}
		if p.pos == start {
			p.pos++
		}
	}
	// No ';' before the end: the group ends with the header.
	return append(out, Address{GroupEnd: true})
}

func collapseSpace(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
