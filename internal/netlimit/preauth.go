package netlimit

import (
	"container/list"
	"sync"
)

// PreAuth caps the connections of a server that have not logged in yet
// (for SMTP, that have not had a recipient accepted): the ones a flood
// consists of, since they cost an attacker nothing but a TCP handshake.
//
// At the cap, a new connection does not wait and is not refused: the
// oldest connection that has still not logged in is evicted (its protocol
// says why and closes it). A flood can then hold at most Max connections,
// and a real client, which logs in within a second or two of connecting,
// still gets in unless the attacker opens Max connections in that time.
// Pair it with a MaxConns above Max, so that the flood reaches this cap
// first and logged-in sessions keep room.
//
// Use: Admit when a connection is accepted, with the function that evicts
// it; Ticket.Done when it logs in, and again (harmlessly) when it ends.
// A nil *PreAuth admits everything and evicts nothing.
type PreAuth struct {
	max int

	mu      sync.Mutex
	waiting *list.List // of *Ticket, oldest first
	evicted uint64
}

// NewPreAuth returns a cap of max connections; max <= 0 means no cap
// (a nil *PreAuth).
func NewPreAuth(max int) *PreAuth {
	if max <= 0 {
		return nil
	}
	return &PreAuth{max: max, waiting: list.New()}
}

// Ticket is one connection's place in a PreAuth.
type Ticket struct {
	p       *PreAuth
	evict   func()
	elem    *list.Element // nil once done or evicted
	evicted bool
}

// Admit counts a new connection that has not logged in. If that takes the
// count over the cap, the oldest such connection is evicted: its evict
// function is called, in a goroutine of its own (it must make the
// connection say why and close it, and must not block for long).
func (p *PreAuth) Admit(evict func()) *Ticket {
	if p == nil {
		return nil
	}
	t := &Ticket{p: p, evict: evict}
	p.mu.Lock()
	var victim *Ticket
	if p.waiting.Len() >= p.max {
		victim = p.waiting.Remove(p.waiting.Front()).(*Ticket)
		victim.elem, victim.evicted = nil, true
		p.evicted++
	}
	t.elem = p.waiting.PushBack(t)
	p.mu.Unlock()
	if victim != nil && victim.evict != nil {
		go victim.evict()
	}
	return t
}

// Done takes the connection out of the count: it has logged in, or it has
// ended. It reports false if the connection was evicted before (then it is
// being closed). Done may be called more than once; a nil *Ticket does
// nothing and reports true.
func (t *Ticket) Done() bool {
	if t == nil {
		return true
	}
	p := t.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if t.elem == nil {
		return !t.evicted
	}
	p.waiting.Remove(t.elem)
	t.elem = nil
	return true
}

// Waiting reports how many admitted connections have not logged in.
func (p *PreAuth) Waiting() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting.Len()
}

// Evicted reports how many connections have been evicted so far.
func (p *PreAuth) Evicted() uint64 {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.evicted
}
