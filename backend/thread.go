package backend

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ThreadAlgorithm is a THREAD algorithm (RFC 5256 §3).
type ThreadAlgorithm int

// The THREAD algorithms.
const (
	ThreadOrderedSubject ThreadAlgorithm = iota + 1 // ORDEREDSUBJECT
	ThreadReferences                                // REFERENCES
)

// ThreadNode is one node of a thread tree (RFC 5256 §4). UID 0 is a dummy:
// a message missing from the mailbox or from the search result that is the
// parent of those in Children. Only a thread's root can be a dummy (the
// algorithms promote the others' children), and then it has two children
// or more; IMAP writes it as the list of its children, e.g. "((3)(5))".
type ThreadNode struct {
	UID      uint32
	Children []ThreadNode
}

// threadMsg is what threading knows of one message.
type threadMsg struct {
	uid     uint32
	date    time.Time // sent date
	id      string    // Message-ID
	refs    []string  // References, else the first In-Reply-To
	subject string    // base subject, upper-cased (i;ascii-casemap)
	reply   bool      // the subject shows a reply or forward
}

// Thread returns the threads of the mailbox's messages that match criteria
// (nil: all), computed by algorithm, in the order RFC 5256 §2 defines. Its
// cost is O(n log n) in the messages found (the REFERENCES loop checks
// walk at most maxThreadWalk ancestors); it stops with ctx's error when
// ctx is done.
func (u *User) Thread(ctx context.Context, mailboxID uint64, algorithm ThreadAlgorithm, criteria *SearchCriteria) ([]ThreadNode, error) {
	if algorithm != ThreadOrderedSubject && algorithm != ThreadReferences {
		return nil, fmt.Errorf("thread: unknown algorithm %d", algorithm)
	}
	var msgs []threadMsg
	err := u.scan(ctx, mailboxID, criteria, needEnvelope, func(mc *matchCtx) error {
		env := mc.parsedEnv()
		base, reply := baseSubject(env.RawSubject)
		m := threadMsg{uid: mc.msg.UID, date: sentDate(env, mc.msg.InternalDate),
			subject: upperASCIIString(base), reply: reply}
		if algorithm == ThreadReferences {
			refs := env.References
			if len(refs) == 0 && len(env.InReplyTo) > 0 {
				refs = env.InReplyTo[:1]
			}
			m.id, m.refs = cloneIDs(env.MessageID, refs)
		}
		msgs = append(msgs, m)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if algorithm == ThreadOrderedSubject {
		return orderedSubject(msgs), nil
	}
	return threadReferences(msgs), nil
}

// cloneIDs copies a message's IDs into one allocation of their own, so
// that the thread tables do not keep every decoded record alive.
func cloneIDs(id string, refs []string) (string, []string) {
	n := len(id)
	for _, r := range refs {
		n += len(r)
	}
	var sb strings.Builder
	sb.Grow(n)
	sb.WriteString(id)
	for _, r := range refs {
		sb.WriteString(r)
	}
	all := sb.String()
	out := make([]string, len(refs))
	pos := len(id)
	for i, r := range refs {
		out[i] = all[pos : pos+len(r)]
		pos += len(r)
	}
	return all[:len(id)], out
}

func upperASCIIString(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = upperASCII(c)
	}
	return string(b)
}

// before orders messages by sent date, then by mailbox order (index).
func before(msgs []threadMsg, a, b int) int {
	if c := msgs[a].date.Compare(msgs[b].date); c != 0 {
		return c
	}
	return a - b
}

// orderedSubject is THREAD=ORDEREDSUBJECT (RFC 5256 §3): messages sorted
// by base subject and sent date; each run of one subject is a thread whose
// first message is the parent of all the others; threads are ordered by
// the sent date of their first message.
func orderedSubject(msgs []threadMsg) []ThreadNode {
	order := make([]int, len(msgs))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := strings.Compare(msgs[a].subject, msgs[b].subject); c != 0 {
			return c
		}
		return before(msgs, a, b)
	})
	var heads []int // index into order of each thread's first message
	for i := range order {
		if i == 0 || msgs[order[i]].subject != msgs[order[i-1]].subject {
			heads = append(heads, i)
		}
	}
	slices.SortFunc(heads, func(a, b int) int { return before(msgs, order[a], order[b]) })
	out := make([]ThreadNode, 0, len(heads))
	for _, h := range heads {
		root := ThreadNode{UID: msgs[order[h]].uid}
		for j := h + 1; j < len(order) && msgs[order[j]].subject == msgs[order[h]].subject; j++ {
			root.Children = append(root.Children, ThreadNode{UID: msgs[order[j]].uid})
		}
		out = append(out, root)
	}
	return out
}

// container is a node of the REFERENCES algorithm: a message (msg >= 0, an
// index into the messages) or a dummy (msg < 0).
type container struct {
	msg      int
	parent   *container
	children []*container
	deleted  bool
}

// maxThreadWalk bounds the ancestors a loop check walks: a chain deeper
// than this is not extended (the link is not made, so no loop can come of
// it), which keeps a hostile mailbox of one endless thread from costing
// quadratic time.
const maxThreadWalk = 1000

// descendsFrom reports whether c is anc or one of its descendants, or the
// walk up from c ran out (then the caller must not link).
func descendsFrom(c, anc *container) bool {
	for i := 0; c != nil; i++ {
		if c == anc || i >= maxThreadWalk {
			return true
		}
		c = c.parent
	}
	return false
}

func link(parent, child *container) {
	child.parent = parent
	parent.children = append(parent.children, child)
}

func unlink(c *container) {
	p := c.parent
	if p == nil {
		return
	}
	if i := slices.Index(p.children, c); i >= 0 {
		p.children = slices.Delete(p.children, i, i+1)
	}
	c.parent = nil
}

// threadReferences is THREAD=REFERENCES (RFC 5256 §3), step by step.
func threadReferences(msgs []threadMsg) []ThreadNode {
	// Step 1: link messages by their references.
	byID := make(map[string]*container, len(msgs))
	all := make([]*container, 0, len(msgs))
	lookup := func(id string) *container {
		c := byID[id]
		if c == nil {
			c = &container{msg: -1}
			byID[id] = c
			all = append(all, c)
		}
		return c
	}
	for i := range msgs {
		m := &msgs[i]
		// A message without a Message-ID, or with one an earlier message
		// had, gets a unique ID: a container outside the table.
		var self *container
		if m.id != "" {
			if c := byID[m.id]; c == nil {
				self = lookup(m.id)
				self.msg = i
			} else if c.msg < 0 {
				self = c
				self.msg = i
			}
		}
		if self == nil {
			self = &container{msg: i}
			all = append(all, self)
		}
		// 1.A: each reference is the parent of the next, unless the
		// child has a parent already or the link would make a loop.
		var prev *container
		for _, id := range m.refs {
			c := lookup(id)
			if prev != nil && c.parent == nil && !descendsFrom(prev, c) {
				link(prev, c)
			}
			prev = c
		}
		// 1.B: the last reference is the message's parent; this link wins
		// over one made by 1.A (a truncated References), which goes first.
		unlink(self)
		if prev != nil && !descendsFrom(prev, self) {
			link(prev, self)
		}
	}
	// Step 2: the root set. (Step 3, dropping the table, is the GC's.)
	var roots []*container
	for _, c := range all {
		if c.parent == nil {
			roots = append(roots, c)
		}
	}
	// Step 4: prune dummies.
	roots = prune(roots, true)
	// Step 5: sort the root set (dummies by their first child, so sort
	// the children first).
	for _, r := range roots {
		sortTree(msgs, r)
	}
	sortSiblings(msgs, roots)
	// Step 6: gather threads whose roots have the same base subject.
	roots = groupBySubject(msgs, roots)
	// Step 7: sort every set of siblings, deepest first.
	for _, r := range roots {
		sortTree(msgs, r)
	}
	sortSiblings(msgs, roots)
	out := make([]ThreadNode, len(roots))
	for i, r := range roots {
		out[i] = toThreadNode(msgs, r)
	}
	return out
}

// prune removes dummies without children and promotes the children of
// the others (RFC 5256 §3 step 4), except that a dummy with several
// children stays at the root level.
func prune(list []*container, atRoot bool) []*container {
	out := list[:0:0]
	for _, c := range list {
		c.children = prune(c.children, false)
		switch {
		case c.msg >= 0:
			out = append(out, c)
		case len(c.children) == 0:
		case atRoot && len(c.children) > 1:
			out = append(out, c)
		default:
			for _, ch := range c.children {
				ch.parent = c.parent
				out = append(out, ch)
			}
		}
	}
	return out
}

// first is the message that represents c in sorting: itself, or a dummy's
// first child (children sorted).
func first(c *container) int {
	for c.msg < 0 && len(c.children) > 0 {
		c = c.children[0]
	}
	return c.msg
}

func sortSiblings(msgs []threadMsg, list []*container) {
	slices.SortStableFunc(list, func(a, b *container) int {
		fa, fb := first(a), first(b)
		if fa < 0 || fb < 0 {
			return 0
		}
		return before(msgs, fa, fb)
	})
}

// sortTree sorts the siblings under c, the deepest first (step 7).
func sortTree(msgs []threadMsg, c *container) {
	for _, ch := range c.children {
		sortTree(msgs, ch)
	}
	sortSiblings(msgs, c.children)
}

func isReply(msgs []threadMsg, c *container) bool { return c.msg >= 0 && msgs[c.msg].reply }

// threadSubject is a thread's base subject: its root's, or for a dummy
// its first child's.
func threadSubject(msgs []threadMsg, c *container) string {
	if f := first(c); f >= 0 {
		return msgs[f].subject
	}
	return ""
}

// groupBySubject is step 6: threads whose roots share a base subject are
// merged, dummies and originals preferred as the thread's root over
// replies.
func groupBySubject(msgs []threadMsg, roots []*container) []*container {
	// 6.A, 6.B: the subject table.
	table := make(map[string]*container)
	for _, r := range roots {
		subj := threadSubject(msgs, r)
		if subj == "" {
			continue
		}
		t := table[subj]
		if t == nil || t.msg >= 0 && (r.msg < 0 || isReply(msgs, t) && !isReply(msgs, r)) {
			table[subj] = r
		}
	}
	// 6.C: merge.
	var added []*container
	for _, r := range roots {
		subj := threadSubject(msgs, r)
		if subj == "" {
			continue
		}
		t := table[subj]
		if t == r {
			continue
		}
		switch {
		case t.msg < 0 && r.msg < 0:
			for _, ch := range r.children {
				link(t, ch)
			}
			r.children = nil
			r.deleted = true
		case t.msg < 0:
			link(t, r)
		case isReply(msgs, r) && !isReply(msgs, t):
			link(t, r)
		default:
			d := &container{msg: -1, parent: t.parent}
			added = append(added, d)
			link(d, t)
			link(d, r)
			table[subj] = d
		}
	}
	var out []*container
	for _, c := range append(roots, added...) {
		if c.parent == nil && !c.deleted {
			out = append(out, c)
		}
	}
	return out
}

func toThreadNode(msgs []threadMsg, c *container) ThreadNode {
	n := ThreadNode{}
	if c.msg >= 0 {
		n.UID = msgs[c.msg].uid
	}
	if len(c.children) > 0 {
		n.Children = make([]ThreadNode, len(c.children))
		for i, ch := range c.children {
			n.Children[i] = toThreadNode(msgs, ch)
		}
	}
	return n
}
