package backend

import (
	"context"

	"github.com/roostmail/roost/store"
)

// CheckReport is the outcome of Check (store.Report).
type CheckReport = store.Report

// Check verifies the store's invariants for the accounts with the given
// addresses (all when none are given) and, with repair set, fixes what can
// be fixed safely; see store.Store.Check. It runs in read transactions (or
// one write transaction per account when repairing), so the server keeps
// serving while it runs.
func (b *Backend) Check(ctx context.Context, addresses []string, repair bool) (CheckReport, error) {
	norm := make([]string, 0, len(addresses))
	for _, a := range addresses {
		n, err := NormalizeAddress(a)
		if err != nil {
			return CheckReport{}, err
		}
		norm = append(norm, n)
	}
	return b.store.Check(ctx, norm, repair)
}
