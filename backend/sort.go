package backend

import (
	"context"
	"errors"
)

// SortCriterion is a SORT key (RFC 5256 §3, RFC 5957 §3).
type SortCriterion int

// The SORT keys.
const (
	SortArrival     SortCriterion = iota + 1 // INTERNALDATE
	SortCc                                   // addr-mailbox of the first Cc address
	SortDate                                 // sent date (Date:, else INTERNALDATE), in UTC
	SortFrom                                 // addr-mailbox of the first From address
	SortSize                                 // RFC822.SIZE
	SortSubject                              // base subject (BaseSubject)
	SortTo                                   // addr-mailbox of the first To address
	SortDisplayFrom                          // display name of the first From address, else its address (RFC 5957)
	SortDisplayTo                            // display name of the first To address, else its address (RFC 5957)
)

// SortKey is one key of a SORT program: a criterion and whether REVERSE
// precedes it.
type SortKey struct {
	Criterion SortCriterion
	Reverse   bool
}

// Sort returns the UIDs of the mailbox's messages that match criteria (nil:
// all), ordered by keys (RFC 5256 §3): strings compare with the
// i;ascii-casemap collation, and messages equal in every key keep mailbox
// (sequence) order. It also returns the highest modseq of the messages
// found, for the MODSEQ of a SORT with a MODSEQ criterion (RFC 7162 §3.1.5).
func (u *User) Sort(ctx context.Context, mailboxID uint64, keys []SortKey, criteria *SearchCriteria) (uids []uint32, highestModSeq uint64, err error) {
	return nil, 0, errors.New("sort: not implemented yet")
}
