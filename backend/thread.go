package backend

import (
	"context"
	"errors"
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
// parent of those in Children; IMAP writes a dummy as a parenthesised list
// of its children without a number, e.g. "((3)(5))".
type ThreadNode struct {
	UID      uint32
	Children []ThreadNode
}

// Thread returns the threads of the mailbox's messages that match criteria
// (nil: all), computed by algorithm, in the order RFC 5256 §2 defines.
func (u *User) Thread(ctx context.Context, mailboxID uint64, algorithm ThreadAlgorithm, criteria *SearchCriteria) ([]ThreadNode, error) {
	return nil, errors.New("thread: not implemented yet")
}
