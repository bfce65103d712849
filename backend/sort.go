package backend

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// SortCriterion is a SORT key (RFC 5256 §3, RFC 5957 §3).
type SortCriterion int

// The SORT keys.
const (
	SortArrival     SortCriterion = iota + 1 // INTERNALDATE
	SortCc                                   // addr-mailbox of the first Cc address
	SortDate                                 // sent date (Date:, else INTERNALDATE)
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

// sortItem is one message with the keys a SORT program compares; string
// keys are in a column per key (Sort's strs), at the item's index.
type sortItem struct {
	uid     uint32
	idx     int32
	size    int64
	arrival time.Time
	date    time.Time
}

func isStringKey(c SortCriterion) bool {
	switch c {
	case SortCc, SortFrom, SortSubject, SortTo, SortDisplayFrom, SortDisplayTo:
		return true
	}
	return false
}

// Sort returns the UIDs of the mailbox's messages that match criteria (nil:
// all), ordered by keys (RFC 5256 §3): strings compare with the
// i;ascii-casemap collation, and messages equal in every key keep mailbox
// (sequence) order. It also returns the highest modseq of the messages
// found, for the MODSEQ of a SORT with a MODSEQ criterion (RFC 7162 §3.1.5).
// It costs O(n log n) in the messages found and stops with ctx's error
// when ctx is done.
func (u *User) Sort(ctx context.Context, mailboxID uint64, keys []SortKey, criteria *SearchCriteria) (uids []uint32, highestModSeq uint64, err error) {
	if len(keys) == 0 {
		return nil, 0, fmt.Errorf("sort: no sort key")
	}
	want := needRecord
	strs := make([][]string, len(keys))
	for i, k := range keys {
		switch {
		case k.Criterion == SortArrival || k.Criterion == SortSize:
		case k.Criterion == SortDate:
			want = needEnvelope
		case isStringKey(k.Criterion):
			want = needEnvelope
			strs[i] = []string{}
		default:
			return nil, 0, fmt.Errorf("sort: unknown key %d", k.Criterion)
		}
	}
	var items []sortItem
	err = u.scan(ctx, mailboxID, criteria, want, func(mc *matchCtx) error {
		it := sortItem{uid: mc.msg.UID, idx: int32(len(items)), size: mc.msg.Size, arrival: mc.msg.InternalDate}
		highestModSeq = max(highestModSeq, mc.msg.ModSeq)
		env := mc.parsedEnv()
		it.date = sentDate(env, mc.msg.InternalDate)
		for i, k := range keys {
			if strs[i] != nil {
				strs[i] = append(strs[i], sortString(env, k.Criterion))
			}
		}
		items = append(items, it)
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	// Stable: items are in UID (= sequence) order, the final tie-break.
	slices.SortStableFunc(items, func(a, b sortItem) int {
		for i, k := range keys {
			var c int
			switch k.Criterion {
			case SortArrival:
				c = a.arrival.Compare(b.arrival)
			case SortDate:
				c = a.date.Compare(b.date)
			case SortSize:
				c = compareInt(a.size, b.size)
			default:
				c = CompareASCIICasemap(strs[i][a.idx], strs[i][b.idx])
			}
			if k.Reverse {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
	uids = make([]uint32, len(items))
	for i := range items {
		uids[i] = items[i].uid
	}
	return uids, highestModSeq, nil
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// sentDate is the date SORT DATE and THREAD use: the Date: field, else the
// internal date (RFC 5256 §2.2).
func sentDate(env *Envelope, internal time.Time) time.Time {
	if !env.Date.IsZero() {
		return env.Date
	}
	return internal
}

// sortString returns a message's string key for criterion, in memory of
// its own (not a slice of the decoded record, which it would keep alive).
func sortString(env *Envelope, criterion SortCriterion) string {
	return strings.Clone(sortKeyOf(env, criterion))
}

func sortKeyOf(env *Envelope, criterion SortCriterion) string {
	switch criterion {
	case SortSubject:
		return BaseSubject(env.RawSubject)
	case SortFrom:
		return firstMailbox(env.From)
	case SortTo:
		return firstMailbox(env.To)
	case SortCc:
		return firstMailbox(env.Cc)
	case SortDisplayFrom:
		return displayAddress(env.From)
	case SortDisplayTo:
		return displayAddress(env.To)
	}
	return ""
}

// firstMailbox is the addr-mailbox of a list's first entry (RFC 5256 §3):
// for a group, the start marker's, which holds the group's name.
func firstMailbox(list []Address) string {
	if len(list) == 0 {
		return ""
	}
	return list[0].Mailbox
}

// displayAddress is the RFC 5957 §3 key of a list's first entry: its
// display name (decoded), else "mailbox@host"; a group's name.
func displayAddress(list []Address) string {
	if len(list) == 0 {
		return ""
	}
	a := &list[0]
	if a.GroupStart {
		return decodeWords(a.Mailbox)
	}
	if name := a.DisplayName(); name != "" {
		return name
	}
	return a.Addr()
}
