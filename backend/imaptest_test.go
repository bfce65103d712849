package backend

// This file checks SORT, THREAD, SEARCH, ENVELOPE, BODY/BODYSTRUCTURE and
// section offsets against the expected responses of Dovecot's imaptest
// scripts (../shared/imaptest/tests), before any IMAP engine exists: it
// loads each script's mbox as imaptest does (LF made CRLF, the From_
// line's date as INTERNALDATE), runs the script's commands against the
// backend, writes what an IMAP server would answer from the backend's data,
// and compares that with the script's expected lines, case-insensitively
// as imaptest does.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// imaptestDir finds the imaptest scripts: $ROOST_IMAPTEST (the imaptest
// directory, or its binary), or shared/imaptest in an ancestor of the
// module root. Missing, the test is skipped, or fails under
// ROOST_REQUIRE_INTEROP=1.
func imaptestDir(t *testing.T) string {
	t.Helper()
	if env := os.Getenv("ROOST_IMAPTEST"); env != "" {
		if fi, err := os.Stat(env); err == nil && !fi.IsDir() {
			env = filepath.Dir(env)
		}
		if _, err := os.Stat(filepath.Join(env, "tests")); err == nil {
			return filepath.Join(env, "tests")
		}
	}
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "shared", "imaptest", "imaptest")); err == nil {
			return filepath.Join(d, "shared", "imaptest", "tests")
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	// testutil.RequireInteropEnv; testutil imports backend, so it cannot
	// be imported here.
	if os.Getenv("ROOST_REQUIRE_INTEROP") == "1" {
		t.Fatal("imaptest scripts not found (set ROOST_IMAPTEST) and ROOST_REQUIRE_INTEROP=1")
	}
	t.Skip("imaptest scripts not found; set ROOST_IMAPTEST")
	return ""
}

type mboxMessage struct {
	body []byte
	date time.Time
}

// readMbox splits an mbox as imaptest's mailbox-source-mbox.c does: a
// message runs from after its From_ line to the next From_ line, the blank
// line before it included, and every line ends in CRLF.
func readMbox(t *testing.T, path string) []mboxMessage {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []mboxMessage
	var cur *mboxMessage
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if line == "" {
			continue
		}
		text := strings.TrimRight(line, "\r\n")
		if d, ok := fromLineDate(text); ok {
			out = append(out, mboxMessage{date: d})
			cur = &out[len(out)-1]
			continue
		}
		if cur == nil {
			t.Fatalf("%s: no From_ line first", path)
		}
		cur.body = append(cur.body, text...)
		cur.body = append(cur.body, '\r', '\n')
	}
	return out
}

// fromLineDate parses "From sender  Fri Feb 22 17:06:23 2008 [+0200]".
func fromLineDate(line string) (time.Time, bool) {
	if !strings.HasPrefix(line, "From ") {
		return time.Time{}, false
	}
	f := strings.Fields(line)
	if len(f) < 7 {
		return time.Time{}, false
	}
	s := strings.Join(f[2:7], " ")
	zone := "+0000"
	if len(f) > 7 {
		zone = f[7]
	}
	d, err := time.Parse("Mon Jan 2 15:04:05 2006 -0700", s+" "+zone)
	return d, err == nil
}

// script is an imaptest test file.
type script struct {
	header   map[string]string
	commands []scriptCommand
}

type scriptCommand struct {
	line     int
	status   string // ok, no, bad
	command  string
	expected []string // untagged responses, literals inline as {n}\r\n...
}

func readScript(t *testing.T, path string) script {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sc := script{header: map[string]string{}}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	inHeader := true
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		lineNo := i + 1
		// Literals: "...{{{" up to "}}}...", lines joined with CRLF.
		if strings.HasSuffix(line, "{{{") {
			var lit []string
			j := i + 1
			for ; j < len(lines) && !strings.HasPrefix(lines[j], "}}}"); j++ {
				lit = append(lit, lines[j])
			}
			text := strings.Join(lit, "\r\n")
			line = strings.TrimSuffix(line, "{{{") + fmt.Sprintf("{%d}\r\n", len(text)) + text + strings.TrimPrefix(lines[j], "}}}")
			i = j
		}
		if inHeader {
			if line == "" {
				inHeader = false
				continue
			}
			k, v, _ := strings.Cut(line, ":")
			sc.header[strings.TrimSpace(k)] = strings.TrimSpace(v)
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "* ") {
			last := &sc.commands[len(sc.commands)-1]
			last.expected = append(last.expected, line[2:])
			continue
		}
		status, cmd, _ := strings.Cut(line, " ")
		sc.commands = append(sc.commands, scriptCommand{line: lineNo, status: status, command: cmd})
	}
	return sc
}

// token is a parsed IMAP value: an atom or string, NIL, a literal, or a list.
type token struct {
	kind byte // 'a' atom, 's' string, 'n' NIL, 'l' list, 'L' literal
	text string
	list []token
}

// parseTokens reads IMAP data: "a" "b" (c d) NIL {3}\r\nabc BODY[1.MIME].
func parseTokens(s string) ([]token, error) {
	var parse func(int, byte) ([]token, int, error)
	parse = func(i int, closing byte) ([]token, int, error) {
		var out []token
		for i < len(s) {
			c := s[i]
			switch {
			case c == ' ':
				i++
			case c == closing:
				return out, i + 1, nil
			case c == '(':
				l, j, err := parse(i+1, ')')
				if err != nil {
					return nil, 0, err
				}
				out = append(out, token{kind: 'l', list: l})
				i = j
			case c == '"':
				var sb strings.Builder
				j := i + 1
				for ; j < len(s) && s[j] != '"'; j++ {
					if s[j] == '\\' {
						j++
					}
					sb.WriteByte(s[j])
				}
				out = append(out, token{kind: 's', text: sb.String()})
				i = j + 1
			case c == '{':
				end := strings.Index(s[i:], "}\r\n")
				n, err := strconv.Atoi(s[i+1 : i+end])
				if end < 0 || err != nil {
					return nil, 0, fmt.Errorf("bad literal at %d", i)
				}
				start := i + end + 3
				out = append(out, token{kind: 'L', text: s[start : start+n]})
				i = start + n
			default:
				j := i
				depth := 0
				for j < len(s) && (depth > 0 || (s[j] != ' ' && s[j] != ')' && s[j] != '(')) {
					switch s[j] {
					case '[':
						depth++
					case ']':
						depth--
					}
					j++
				}
				a := s[i:j]
				if strings.EqualFold(a, "NIL") {
					out = append(out, token{kind: 'n'})
				} else {
					out = append(out, token{kind: 'a', text: a})
				}
				i = j
			}
		}
		if closing != 0 {
			return nil, 0, fmt.Errorf("unclosed list")
		}
		return out, i, nil
	}
	out, _, err := parse(0, 0)
	return out, err
}

// matchTokens compares expected with got as imaptest does: atoms and
// strings case-insensitively, literals exactly; "$name" in expected binds
// vars[name].
func matchTokens(exp, got []token, vars map[string]string) bool {
	if len(exp) != len(got) {
		return false
	}
	for i := range exp {
		e, g := exp[i], got[i]
		if e.kind == 'a' && strings.HasPrefix(e.text, "$") && len(e.text) > 1 {
			vars[e.text[1:]] = g.text
			continue
		}
		switch e.kind {
		case 'n':
			if g.kind != 'n' {
				return false
			}
		case 'l':
			if g.kind != 'l' || !matchTokens(e.list, g.list, vars) {
				return false
			}
		case 'L':
			if g.text != e.text {
				return false
			}
		default:
			if g.kind == 'n' || g.kind == 'l' || !strings.EqualFold(e.text, g.text) {
				return false
			}
		}
	}
	return true
}

// scriptRun is the state of one script against a backend.
type scriptRun struct {
	t     *testing.T
	u     *User
	mbox  []mboxMessage
	next  int // next mbox message to append
	mb    Mailbox
	uids  []uint32 // sequence number i+1 is uids[i]
	vars  map[string]string
	where string
}

func (r *scriptRun) appendNext() {
	m := r.mbox[r.next%len(r.mbox)]
	r.next++
	res, err := r.u.Append(context.Background(), r.mb.Name, bytes.NewReader(m.body), nil, m.date)
	if err != nil {
		r.t.Fatalf("%s: append: %v", r.where, err)
	}
	r.uids = append(r.uids, res.UID)
}

func (r *scriptRun) seqOf(uid uint32) uint32 {
	i := slices.Index(r.uids, uid)
	if i < 0 {
		r.t.Fatalf("%s: UID %d has no sequence number", r.where, uid)
	}
	return uint32(i + 1)
}

// seqSet resolves "1:3,5" and "8:*" to UIDs.
func (r *scriptRun) seqSet(s string) []UIDRange {
	var out []UIDRange
	for _, piece := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(piece, ":")
		if !isRange {
			b = a
		}
		lo, hi := r.seqNum(a), r.seqNum(b)
		if lo > hi {
			lo, hi = hi, lo
		}
		for seq := lo; seq <= hi && seq >= 1 && int(seq) <= len(r.uids); seq++ {
			out = append(out, UIDRange{r.uids[seq-1], r.uids[seq-1]})
		}
	}
	if out == nil {
		out = []UIDRange{}
	}
	return out
}

func (r *scriptRun) seqNum(s string) uint32 {
	if s == "*" {
		return uint32(len(r.uids))
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		r.t.Fatalf("%s: bad sequence number %q", r.where, s)
	}
	return uint32(n)
}

// searchKeys parses SEARCH keys (RFC 3501 §6.4.4) into criteria.
func (r *scriptRun) searchKeys(toks []token) *SearchCriteria {
	c := &SearchCriteria{}
	for len(toks) > 0 {
		toks = r.searchKey(c, toks)
	}
	return c
}

func (r *scriptRun) searchKey(c *SearchCriteria, toks []token) []token {
	arg := func() string {
		if len(toks) < 2 {
			r.t.Fatalf("%s: search key %q lacks its argument", r.where, toks[0].text)
		}
		s := toks[1].text
		if toks[1].kind == 'n' {
			s = "NIL"
		}
		if strings.HasPrefix(s, "$") {
			s = r.vars[s[1:]]
		}
		toks = toks[1:]
		return s
	}
	date := func() time.Time {
		d, err := time.Parse("2-Jan-2006", arg())
		if err != nil {
			r.t.Fatalf("%s: %v", r.where, err)
		}
		return d
	}
	num := func() int64 {
		n, err := strconv.ParseInt(arg(), 10, 64)
		if err != nil {
			r.t.Fatalf("%s: %v", r.where, err)
		}
		return n
	}
	k := toks[0]
	if k.kind == 'l' {
		for _, sub := range [][]token{k.list} {
			for len(sub) > 0 {
				sub = r.searchKey(c, sub)
			}
		}
		return toks[1:]
	}
	switch key := strings.ToLower(k.text); key {
	case "all":
	case "from":
		c.From = append(c.From, arg())
	case "to":
		c.To = append(c.To, arg())
	case "cc":
		c.Cc = append(c.Cc, arg())
	case "bcc":
		c.Bcc = append(c.Bcc, arg())
	case "subject":
		c.Header = append(c.Header, HeaderMatch{Key: "Subject", Value: arg()})
	case "header":
		name := arg()
		c.Header = append(c.Header, HeaderMatch{Key: name, Value: arg()})
	case "body":
		c.Body = append(c.Body, arg())
	case "text":
		c.Text = append(c.Text, arg())
	case "larger":
		c.Larger = num()
	case "smaller":
		c.Smaller = num()
	case "sentbefore":
		c.SentBefore = date()
	case "senton":
		c.SentOn = date()
	case "sentsince":
		c.SentSince = date()
	case "before":
		c.Before = date()
	case "on":
		c.On = date()
	case "since":
		c.Since = date()
	case "modseq":
		c.ModSeq = uint64(num())
	case "deleted", "seen", "flagged", "answered", "draft":
		c.Flag = append(c.Flag, `\`+strings.ToUpper(key[:1])+key[1:])
	case "undeleted", "unseen", "unflagged", "unanswered", "undraft":
		c.NotFlag = append(c.NotFlag, `\`+strings.ToUpper(key[2:3])+key[3:])
	case "not":
		var sub SearchCriteria
		rest := r.searchKey(&sub, toks[1:])
		c.Not = append(c.Not, sub)
		return rest
	case "or":
		var a, b SearchCriteria
		rest := r.searchKey(&a, toks[1:])
		rest = r.searchKey(&b, rest)
		c.Or = append(c.Or, [2]SearchCriteria{a, b})
		return rest
	default:
		if k.text != "" && (k.text[0] >= '0' && k.text[0] <= '9' || k.text[0] == '*') {
			c.UIDs = append(c.UIDs, r.seqSet(k.text))
			break
		}
		r.t.Fatalf("%s: search key %q not supported by this harness", r.where, k.text)
	}
	return toks[1:]
}

var sortKeyNames = map[string]SortCriterion{
	"arrival": SortArrival, "cc": SortCc, "date": SortDate, "from": SortFrom, "size": SortSize,
	"subject": SortSubject, "to": SortTo, "displayfrom": SortDisplayFrom, "displayto": SortDisplayTo,
}

// run executes one command and returns the untagged responses a server
// would send, in IMAP syntax.
func (r *scriptRun) run(cmd string) []string {
	ctx := context.Background()
	for k, v := range r.vars {
		cmd = strings.ReplaceAll(cmd, "$"+k, v)
	}
	name, rest, _ := strings.Cut(cmd, " ")
	toks, err := parseTokens(rest)
	if err != nil {
		r.t.Fatalf("%s: %v", r.where, err)
	}
	switch strings.ToLower(name) {
	case "select", "examine":
		return nil
	case "append":
		r.appendNext()
		return nil
	case "store":
		// store SEQS +flags FLAGS
		var uids []uint32
		for _, rg := range r.seqSet(toks[0].text) {
			uids = append(uids, rg.Start)
		}
		var flags []string
		for _, f := range toks[2:] {
			if f.kind == 'l' {
				for _, ff := range f.list {
					flags = append(flags, ff.text)
				}
			} else if f.kind == 'n' {
				flags = append(flags, "NIL")
			} else {
				flags = append(flags, f.text)
			}
		}
		if _, _, err := r.u.StoreFlags(r.mb.ID, uids, FlagsAdd, flags, 0); err != nil {
			r.t.Fatalf("%s: %v", r.where, err)
		}
		return nil
	case "expunge":
		gone, err := r.u.Expunge(r.mb.ID, nil, true)
		if err != nil {
			r.t.Fatalf("%s: %v", r.where, err)
		}
		r.uids = slices.DeleteFunc(r.uids, func(uid uint32) bool { return slices.Contains(gone, uid) })
		return nil
	case "search":
		uids, err := r.u.Search(ctx, r.mb.ID, r.searchKeys(toks))
		if err != nil {
			r.t.Fatalf("%s: %v", r.where, err)
		}
		return []string{"search" + r.seqList(uids)}
	case "sort":
		var keys []SortKey
		reverse := false
		for _, k := range toks[0].list {
			if strings.EqualFold(k.text, "reverse") {
				reverse = true
				continue
			}
			crit, ok := sortKeyNames[strings.ToLower(k.text)]
			if !ok {
				r.t.Fatalf("%s: sort key %q", r.where, k.text)
			}
			keys = append(keys, SortKey{Criterion: crit, Reverse: reverse})
			reverse = false
		}
		uids, _, err := r.u.Sort(ctx, r.mb.ID, keys, r.searchKeys(toks[2:]))
		if err != nil {
			r.t.Fatalf("%s: %v", r.where, err)
		}
		return []string{"sort" + r.seqList(uids)}
	case "thread":
		alg := map[string]ThreadAlgorithm{"references": ThreadReferences, "orderedsubject": ThreadOrderedSubject}[strings.ToLower(toks[0].text)]
		threads, err := r.u.Thread(ctx, r.mb.ID, alg, r.searchKeys(toks[2:]))
		if err != nil {
			r.t.Fatalf("%s: %v", r.where, err)
		}
		return []string{strings.TrimSpace("thread " + formatThreads(threads, r.seqOf))}
	case "fetch":
		return r.fetch(toks)
	}
	r.t.Fatalf("%s: command %q not supported by this harness", r.where, name)
	return nil
}

func (r *scriptRun) seqList(uids []uint32) string {
	var sb strings.Builder
	for _, uid := range uids {
		fmt.Fprintf(&sb, " %d", r.seqOf(uid))
	}
	return sb.String()
}

func (r *scriptRun) fetch(toks []token) []string {
	var items []token
	if toks[1].kind == 'l' {
		items = toks[1].list
	} else {
		items = toks[1:]
	}
	var out []string
	for _, rg := range r.seqSet(toks[0].text) {
		uid := rg.Start
		recs, err := r.u.Records(r.mb.ID, []uint32{uid})
		if err != nil {
			r.t.Fatalf("%s: %v", r.where, err)
		}
		m := &recs[0]
		p, err := r.u.Parsed(m)
		if err != nil {
			r.t.Fatalf("%s: %v", r.where, err)
		}
		raw, err := r.u.ReadBody(m)
		if err != nil {
			r.t.Fatalf("%s: %v", r.where, err)
		}
		var parts []string
		for _, it := range items {
			name := strings.ToLower(it.text)
			switch {
			case name == "envelope":
				parts = append(parts, "envelope "+imapEnvelope(&p.Envelope))
			case name == "body":
				parts = append(parts, "body "+imapBody(&p.Root))
			case name == "flags":
				var fl []string
				for _, f := range m.Flags {
					fl = append(fl, f)
				}
				parts = append(parts, "flags ("+strings.Join(fl, " ")+")")
			case name == "rfc822.size":
				parts = append(parts, fmt.Sprintf("rfc822.size %d", m.Size))
			case strings.HasPrefix(name, "body.peek["):
				sec := strings.TrimSuffix(strings.TrimPrefix(name, "body.peek["), "]")
				data, ok := sectionBytes(raw, &p.Root, sec)
				if !ok {
					r.t.Fatalf("%s: section %q not supported by this harness", r.where, sec)
				}
				parts = append(parts, fmt.Sprintf("body[%s] {%d}\r\n%s", sec, len(data), data))
			default:
				r.t.Fatalf("%s: fetch item %q not supported by this harness", r.where, it.text)
			}
		}
		out = append(out, fmt.Sprintf("%d fetch (%s)", r.seqOf(uid), strings.Join(parts, " ")))
	}
	return out
}

// sectionBytes cuts a body section from the stored offsets, as FETCH
// BODY[section] does (RFC 3501 §6.4.5); ok false for HEADER.FIELDS.
func sectionBytes(raw []byte, root *Part, sec string) ([]byte, bool) {
	if sec == "" {
		return raw, true
	}
	var nums []int
	spec := ""
	for _, piece := range strings.Split(sec, ".") {
		if n, err := strconv.Atoi(piece); err == nil && spec == "" {
			nums = append(nums, n)
		} else {
			spec += "." + piece
		}
	}
	spec = strings.TrimPrefix(spec, ".")
	// p is the part named by nums; msg is the message whose HEADER/TEXT
	// the spec means (the root, or an encapsulated message).
	p := root
	for i, n := range nums {
		// Between numbers, a message/rfc822 part stands for the message
		// it encapsulates (RFC 3501 §6.4.5).
		if i > 0 && p.IsMessage() && len(p.Parts) == 1 {
			p = &p.Parts[0]
		}
		if !p.IsMultipart() {
			if n != 1 {
				return nil, false
			}
			continue
		}
		if n < 1 || n > len(p.Parts) {
			return nil, false
		}
		p = &p.Parts[n-1]
	}
	switch spec {
	case "":
		return raw[p.BodyStart:p.End], true
	case "mime":
		return raw[p.HeaderStart:p.BodyStart], true
	case "header", "text":
		msg := p
		if len(nums) > 0 {
			if !p.IsMessage() || len(p.Parts) != 1 {
				return nil, false
			}
			msg = &p.Parts[0]
		}
		if spec == "header" {
			return raw[msg.HeaderStart:msg.BodyStart], true
		}
		return raw[msg.BodyStart:msg.End], true
	}
	return nil, false
}

func nstring(s string) string {
	if s == "" {
		return "NIL"
	}
	return strconv.Quote(s)
}

func imapAddresses(list []Address) string {
	if len(list) == 0 {
		return "NIL"
	}
	var sb strings.Builder
	sb.WriteString("(")
	for _, a := range list {
		switch {
		case a.GroupStart:
			fmt.Fprintf(&sb, "(NIL NIL %s NIL)", strconv.Quote(a.Mailbox))
		case a.GroupEnd:
			sb.WriteString("(NIL NIL NIL NIL)")
		default:
			fmt.Fprintf(&sb, "(%s %s %s %s)", nstring(a.Name), nstring(a.Route), nstring(a.Mailbox), nstring(a.Host))
		}
	}
	sb.WriteString(")")
	return sb.String()
}

// imapEnvelope writes ENVELOPE (RFC 3501 §7.4.2), Sender and Reply-To
// defaulting to From.
func imapEnvelope(e *Envelope) string {
	sender, replyTo := e.Sender, e.ReplyTo
	if len(sender) == 0 {
		sender = e.From
	}
	if len(replyTo) == 0 {
		replyTo = e.From
	}
	return fmt.Sprintf("(%s %s %s %s %s %s %s %s %s %s)", nstring(e.RawDate), nstring(e.RawSubject),
		imapAddresses(e.From), imapAddresses(sender), imapAddresses(replyTo), imapAddresses(e.To),
		imapAddresses(e.Cc), imapAddresses(e.Bcc), nstring(e.RawInReplyTo), nstring(e.RawMessageID))
}

// imapBody writes BODY, the non-extensible BODYSTRUCTURE (RFC 3501 §7.4.2).
func imapBody(p *Part) string {
	if p.IsMultipart() && len(p.Parts) > 0 {
		var sb strings.Builder
		sb.WriteString("(")
		for i := range p.Parts {
			sb.WriteString(imapBody(&p.Parts[i]))
		}
		fmt.Fprintf(&sb, " %s)", strconv.Quote(strings.ToUpper(p.Subtype)))
		return sb.String()
	}
	params := p.Params
	if p.Type == "text" && params["charset"] == "" {
		params = map[string]string{"charset": "us-ascii"}
	}
	var ps []string
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range params {
			if !yield(k) {
				return
			}
		}
	}) {
		ps = append(ps, strconv.Quote(k)+" "+strconv.Quote(params[k]))
	}
	pl := "NIL"
	if len(ps) > 0 {
		pl = "(" + strings.Join(ps, " ") + ")"
	}
	enc := p.Encoding
	if enc == "" {
		enc = "7BIT"
	}
	s := fmt.Sprintf("(%s %s %s %s %s %s %d", strconv.Quote(p.Type), strconv.Quote(p.Subtype), pl,
		nstring(p.ID), nstring(p.Description), strconv.Quote(enc), p.Size())
	switch {
	case p.Type == "text":
		s += fmt.Sprintf(" %d", p.Lines)
	case p.IsMessage() && len(p.Parts) == 1 && p.Envelope != nil:
		s += fmt.Sprintf(" %s %s %d", imapEnvelope(p.Envelope), imapBody(&p.Parts[0]), p.Lines)
	}
	return s + ")"
}

// imaptestScripts are the scripts whose data the backend decides.
var imaptestScripts = []string{
	"sort-addresses", "sort-arrival", "sort-date", "sort-display-from", "sort-display-to", "sort-size", "sort-subject",
	"thread", "thread-orderedsubject", "thread-orderedsubject2", "thread2", "thread3", "thread4", "thread5",
	"thread6", "thread7", "thread8",
	"search-addresses", "search-header", "search-body", "search-date", "search-size",
	"fetch-envelope", "fetch-bodystructure", "fetch-body-mime", "nil",
	"fetch-body-message-rfc822", "fetch-body-message-rfc822-mime", "fetch-body-message-rfc822-x2",
}

func TestImaptestScripts(t *testing.T) {
	dir := imaptestDir(t)
	for _, name := range imaptestScripts {
		t.Run(name, func(t *testing.T) {
			sc := readScript(t, filepath.Join(dir, name))
			mboxPath := filepath.Join(dir, name+".mbox")
			if _, err := os.Stat(mboxPath); err != nil {
				mboxPath = filepath.Join(dir, "default.mbox")
			}
			b := newTestBackend(t, Options{})
			u := mustUser(t, b, "imaptest@example.org")
			if err := u.CreateMailbox("imaptest", ""); err != nil {
				t.Fatal(err)
			}
			mb, err := u.Mailbox("imaptest")
			if err != nil {
				t.Fatal(err)
			}
			r := &scriptRun{t: t, u: u, mbox: readMbox(t, mboxPath), mb: mb, vars: map[string]string{}}
			if sc.header["state"] != "created" {
				n := len(r.mbox)
				if v := sc.header["messages"]; v != "all" && v != "" {
					n, _ = strconv.Atoi(v)
				}
				for i := 0; i < n; i++ {
					r.appendNext()
				}
			}
			ran := 0
			for _, cmd := range sc.commands {
				r.where = fmt.Sprintf("%s:%d %q", name, cmd.line, cmd.command)
				if cmd.status != "ok" {
					continue // the refusals are the protocol engine's
				}
				lower := strings.ToLower(cmd.command)
				if strings.HasPrefix(lower, "list ") || strings.Contains(lower, "header.fields") {
					// LIST, and which header fields HEADER.FIELDS picks,
					// are the protocol engine's.
					continue
				}
				got := r.run(cmd.command)
				ran++
				for _, exp := range cmd.expected {
					et, err := parseTokens(exp)
					if err != nil {
						t.Fatalf("%s: expected %q: %v", r.where, exp, err)
					}
					found := false
					for _, g := range got {
						gt, err := parseTokens(g)
						if err != nil {
							t.Fatalf("%s: own response %q: %v", r.where, g, err)
						}
						if matchTokens(et, gt, r.vars) {
							found = true
							break
						}
					}
					if !found {
						t.Errorf("%s:\nwant * %s\ngot  %s", r.where, exp, strings.Join(prefixAll(got, "* "), "\n     "))
					}
				}
			}
			if ran == 0 {
				t.Fatalf("%s: no command run", name)
			}
		})
	}
}

func prefixAll(l []string, p string) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = p + s
	}
	return out
}
