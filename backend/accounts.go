package backend

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/roostmail/roost/store"
)

// Quotas. An account's own limit in the store is 0 for "the default"
// (Options.DefaultQuota) and NoLimit for "none", whatever the default.

// NoLimit as an account's quota means it has none, whatever the default.
const NoLimit = -1

// Limits are quota limits: bytes and messages over all mailboxes; 0 means
// none.
type Limits = store.Limits

// limits returns the account's quota in force.
func (b *Backend) limits(acct store.Account) store.Limits {
	pick := func(own, def int64) int64 {
		switch {
		case own < 0:
			return 0
		case own == 0:
			return max(def, 0)
		}
		return own
	}
	return store.Limits{
		Bytes:    pick(acct.QuotaBytes, b.opts.DefaultQuota.Bytes),
		Messages: pick(acct.QuotaMessages, b.opts.DefaultQuota.Messages),
	}
}

// overQuota reports whether an account is at or over a limit already, so
// that mail for it is refused at RCPT time.
func (b *Backend) overQuota(acct store.Account) (bool, error) {
	l := b.limits(acct)
	if l.Bytes <= 0 && l.Messages <= 0 {
		return false, nil
	}
	ms, err := b.store.Mailstore(acct.ID)
	if err != nil {
		return false, err
	}
	if l.Bytes > 0 {
		used, err := ms.AccountSize()
		if err != nil {
			return false, err
		}
		if used >= l.Bytes {
			return true, nil
		}
	}
	if l.Messages > 0 {
		n, err := ms.AccountMessages()
		if err != nil {
			return false, err
		}
		if n >= l.Messages {
			return true, nil
		}
	}
	return false, nil
}

// updateAccount changes an account record and forgets its cached logins.
func (b *Backend) updateAccount(address string, fn func(*store.Account) error) (string, error) {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return "", err
	}
	err = b.store.UpdateAccount(addr, fn)
	if errors.Is(err, store.ErrNotFound) {
		return addr, fmt.Errorf("%w: %s", ErrNoSuchUser, addr)
	}
	b.auth.forget(addr)
	return addr, err
}

// SetQuota sets an account's limits: a positive number is the limit, 0 the
// default (Options.DefaultQuota), NoLimit none.
func (b *Backend) SetQuota(ctx context.Context, address string, bytes, messages int64) error {
	if bytes < NoLimit || messages < NoLimit {
		return fmt.Errorf("invalid quota %d bytes, %d messages", bytes, messages)
	}
	_, err := b.updateAccount(address, func(a *store.Account) error {
		a.QuotaBytes, a.QuotaMessages = bytes, messages
		return nil
	})
	return err
}

// SetDisabled disables an account (logins refused; mail still accepted
// unless rejectMail, then refused with "550 5.2.1") or enables it again.
func (b *Backend) SetDisabled(ctx context.Context, address string, disabled, rejectMail bool) error {
	addr, err := b.updateAccount(address, func(a *store.Account) error {
		a.Disabled, a.RejectMail = disabled, disabled && rejectMail
		return nil
	})
	if err == nil {
		b.log.Info("account state changed", "account", addr, "disabled", disabled, "reject_mail", disabled && rejectMail)
	}
	return err
}

// AccountStatus is what `roost status ADDRESS` and `roost user list` show
// of an account.
type AccountStatus struct {
	Account
	Quota     Quota
	Mailboxes []Mailbox
}

// Status returns an account's record, its usage against its limits in
// force, and its mailboxes.
func (b *Backend) Status(ctx context.Context, address string) (AccountStatus, error) {
	u, err := b.LookupUser(ctx, address)
	if err != nil {
		return AccountStatus{}, err
	}
	q, err := u.Quota()
	if err != nil {
		return AccountStatus{}, err
	}
	boxes, err := u.Mailboxes()
	if err != nil {
		return AccountStatus{}, err
	}
	return AccountStatus{Account: u.acct, Quota: q, Mailboxes: boxes}, nil
}

// App passwords. A generated app password reads "ID-SECRET": ID names which
// of the account's app passwords it is, so that a login checks one argon2id
// hash (or two: the app password's, then the account's own if the password
// only looked like an app password), never one per app password.

const (
	appIDLen     = 6  // characters of the public ID (30 bits: distinct per account)
	appSecretLen = 24 // characters of the secret (120 bits)
	// maxAppPasswords bounds an account's app passwords.
	maxAppPasswords = 100
)

// appAlphabet is lower-case base32 without look-alikes, easy to type on a
// phone.
const appAlphabet = "abcdefghijkmnpqrstuvwxyz23456789"

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = appAlphabet[int(b[i])%len(appAlphabet)]
	}
	return string(b)
}

// splitAppPassword returns the ID of a password shaped like an app password.
func splitAppPassword(pw string) (id string, ok bool) {
	if len(pw) != appIDLen+1+appSecretLen || pw[appIDLen] != '-' {
		return "", false
	}
	for i := 0; i < len(pw); i++ {
		if i != appIDLen && strings.IndexByte(appAlphabet, pw[i]) < 0 {
			return "", false
		}
	}
	return pw[:appIDLen], true
}

// Errors of the app password calls.
var (
	ErrAppPasswordExists = errors.New("an app password with this label exists")
	ErrNoAppPassword     = errors.New("no such app password")
)

// AddAppPassword makes a new app password for the account and returns it:
// it is shown this once, only its hash is kept.
func (b *Backend) AddAppPassword(ctx context.Context, address, label string) (AppPassword, string, error) {
	label = strings.TrimSpace(label)
	if label == "" || len(label) > 100 || strings.ContainsAny(label, "\t\r\n") {
		return AppPassword{}, "", fmt.Errorf("invalid label %q: 1 to 100 characters, no tabs or line breaks", label)
	}
	secret := randomString(appSecretLen)
	var ap AppPassword
	_, err := b.updateAccount(address, func(a *store.Account) error {
		if len(a.AppPasswords) >= maxAppPasswords {
			return fmt.Errorf("%s has %d app passwords, the most allowed", a.Address, maxAppPasswords)
		}
		for _, p := range a.AppPasswords {
			if strings.EqualFold(p.Label, label) {
				return fmt.Errorf("%w: %q", ErrAppPasswordExists, label)
			}
		}
		id := randomString(appIDLen)
		for slices.ContainsFunc(a.AppPasswords, func(p store.AppPassword) bool { return p.ID == id }) {
			id = randomString(appIDLen)
		}
		hash, err := HashPassword(id + "-" + secret)
		if err != nil {
			return err
		}
		ap = AppPassword{ID: id, Label: label, Hash: hash, Created: time.Now().UTC().Truncate(time.Second)}
		a.AppPasswords = append(a.AppPasswords, ap)
		return nil
	})
	if err != nil {
		return AppPassword{}, "", err
	}
	b.log.Info("app password added", "account", address, "label", label, "id", ap.ID)
	ap.Hash = ""
	return ap, ap.ID + "-" + secret, nil
}

// AppPassword is an app password as listed (Hash is empty).
type AppPassword = store.AppPassword

// AppPasswords lists an account's app passwords, without their hashes.
func (b *Backend) AppPasswords(ctx context.Context, address string) ([]AppPassword, error) {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return nil, err
	}
	acct, err := b.store.Account(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrNoSuchUser, addr)
	}
	out := slices.Clone(acct.AppPasswords)
	for i := range out {
		out[i].Hash = ""
	}
	return out, nil
}

// DeleteAppPassword revokes the app password with the given label or ID;
// clients using it can no longer log in. The account's password and other
// app passwords are untouched.
func (b *Backend) DeleteAppPassword(ctx context.Context, address, labelOrID string) error {
	_, err := b.updateAccount(address, func(a *store.Account) error {
		i := slices.IndexFunc(a.AppPasswords, func(p store.AppPassword) bool {
			return p.ID == labelOrID || strings.EqualFold(p.Label, strings.TrimSpace(labelOrID))
		})
		if i < 0 {
			return fmt.Errorf("%w: %q for %s", ErrNoAppPassword, labelOrID, a.Address)
		}
		a.AppPasswords = slices.Delete(a.AppPasswords, i, i+1)
		return nil
	})
	if err == nil {
		b.log.Info("app password revoked", "account", address, "app_password", labelOrID)
	}
	return err
}

// checkAppPassword verifies a password that looks like an app password of
// acct against that one app password only.
func (b *Backend) checkAppPassword(ctx context.Context, acct store.Account, password string) bool {
	id, ok := splitAppPassword(password)
	if !ok {
		return false
	}
	i := slices.IndexFunc(acct.AppPasswords, func(p store.AppPassword) bool { return p.ID == id })
	if i < 0 {
		return false
	}
	ap := acct.AppPasswords[i]
	key := acct.Address + "\x00app:" + ap.ID
	if b.auth.check(key, ap.Hash, password) {
		return true
	}
	if b.verify(ctx, ap.Hash, password) {
		b.auth.remember(key, ap.Hash, password)
		return true
	}
	return false
}
