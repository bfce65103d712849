package main

// Sending: the outbound engine's wiring ([outbound]), the DKIM keys in
// data_dir/dkim, `roost dkim generate` and the `roost queue` commands.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/roostmail/roost/autoconfig"
	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/outbound"
)

// newOutbound builds the outbound engine from [outbound].
func newOutbound(cfg *Config, b *backend.Backend, keys *dkimKeyring, onResult func(string), log *slog.Logger) (*outbound.Engine, error) {
	c := cfg.Outbound
	schedule, err := c.retrySchedule()
	if err != nil {
		return nil, fmt.Errorf("[outbound] retry_schedule: %w", err)
	}
	opts := outbound.Options{
		Backend:         b,
		Hostname:        cfg.Hostname,
		Port:            c.MXPort,
		Relay:           c.Relay,
		RelayUsername:   c.RelayUsername,
		RelayPassword:   c.RelayPassword,
		RequireTLS:      c.RequireTLS,
		RetrySchedule:   schedule,
		GiveUpAfter:     c.GiveUpAfter,
		MaxConcurrent:   c.MaxConcurrent,
		MaxConnsPerHost: c.MaxConnectionsPerHost,
		DKIM:            keys.keys,
		OnResult:        onResult,
		Logger:          log.With("service", "outbound"),
	}
	if c.DNSServer != "" {
		if opts.Resolver, err = outbound.NewResolver(c.DNSServer); err != nil {
			return nil, fmt.Errorf("[outbound] dns_server: %w", err)
		}
	}
	e, err := outbound.New(opts)
	if err != nil {
		return nil, fmt.Errorf("[outbound]: %w", err)
	}
	return e, nil
}

// dkimKeyring reads the DKIM keys of data_dir/dkim/DOMAIN/SELECTOR.pem,
// rereading a domain's directory when it changes (so `roost dkim
// generate` takes effect without a restart).
type dkimKeyring struct {
	dir string
	log *slog.Logger

	mu    sync.Mutex
	cache map[string]dkimEntry
}

type dkimEntry struct {
	mod  time.Time
	keys []outbound.DKIMKey
}

func newDKIMKeyring(dataDir string, log *slog.Logger) *dkimKeyring {
	return &dkimKeyring{dir: filepath.Join(dataDir, "dkim"), log: log, cache: make(map[string]dkimEntry)}
}

// keys returns the newest key of each algorithm for domain: selectors
// carry the date they were made, so the greatest is the newest. Older
// keys stay in the directory (and in `roost dns`) until removed.
func (k *dkimKeyring) keys(domain string) []outbound.DKIMKey {
	all, err := k.all(domain)
	if err != nil {
		k.log.Error("DKIM keys unreadable; sending unsigned", "domain", domain, "err", err)
		return nil
	}
	newest := map[string]outbound.DKIMKey{}
	for _, key := range all {
		alg := strings.SplitN(key.Selector, "-", 2)[0]
		if cur, ok := newest[alg]; !ok || key.Selector > cur.Selector {
			newest[alg] = key
		}
	}
	var out []outbound.DKIMKey
	for _, alg := range []string{"ed25519", "rsa"} {
		if key, ok := newest[alg]; ok {
			out = append(out, key)
		}
	}
	return out
}

// all returns every key of domain, sorted by selector.
func (k *dkimKeyring) all(domain string) ([]outbound.DKIMKey, error) {
	dir := filepath.Join(k.dir, domain)
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	e, ok := k.cache[domain]
	k.mu.Unlock()
	if ok && e.mod.Equal(fi.ModTime()) {
		return e.keys, nil
	}
	keys, err := readDKIMDir(dir)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.cache[domain] = dkimEntry{mod: fi.ModTime(), keys: keys}
	k.mu.Unlock()
	return keys, nil
}

func readDKIMDir(dir string) ([]outbound.DKIMKey, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.pem"))
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	var keys []outbound.DKIMKey
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		signer, err := outbound.ParseDKIMKey(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		keys = append(keys, outbound.DKIMKey{Selector: strings.TrimSuffix(filepath.Base(n), ".pem"), Signer: signer})
	}
	return keys, nil
}

// dkimGenerate makes a new Ed25519 and RSA-2048 key for domain, named
// ed25519-YYYYMMDD and rsa-YYYYMMDD, and prints their DNS records.
func dkimGenerate(cfg *Config, domain string, w io.Writer, now time.Time) error {
	domain = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
	if !autoconfig.ValidDomain(domain) {
		return fmt.Errorf("invalid domain name %q", domain)
	}
	dir := filepath.Join(cfg.DataDir, "dkim", domain)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("dkim generate: %w", err)
	}
	ed, rk, err := outbound.GenerateDKIMKeys()
	if err != nil {
		return fmt.Errorf("dkim generate: %w", err)
	}
	date := now.UTC().Format("20060102")
	made := []outbound.DKIMKey{{Selector: "ed25519-" + date, Signer: ed}, {Selector: "rsa-" + date, Signer: rk}}
	for _, k := range made {
		if _, err := os.Stat(filepath.Join(dir, k.Selector+".pem")); err == nil {
			return fmt.Errorf("dkim generate: %s already has a key %s made today; remove %s to make another", domain, k.Selector, filepath.Join(dir, k.Selector+".pem"))
		}
	}
	for _, k := range made {
		data, err := outbound.MarshalDKIMKey(k.Signer)
		if err != nil {
			return fmt.Errorf("dkim generate: %w", err)
		}
		if err := writeFileSync(filepath.Join(dir, k.Selector+".pem"), data); err != nil {
			return fmt.Errorf("dkim generate: %w", err)
		}
	}
	fmt.Fprintf(w, "; DKIM keys for %s written to %s. Publish these records:\n", domain, dir)
	for _, k := range made {
		rec, err := outbound.DKIMRecord(k.Signer)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s._domainkey.%s.\t3600\tIN\tTXT\t%s\n", k.Selector, domain, rec)
	}
	return nil
}

// writeFileSync writes a new file (never replacing one) and fsyncs it.
func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// queueOps carries out `roost queue` on the running engine, or on the
// store when no server runs (eng nil).
func queueOp(ctx context.Context, b *backend.Backend, eng *outbound.Engine, op string, args []string) ([]string, error) {
	if op == opQueueList {
		list, err := b.QueuedList(ctx)
		if err != nil {
			return nil, fmt.Errorf("queue list: %w", err)
		}
		lines := make([]string, 0, len(list))
		for _, e := range list {
			lines = append(lines, fmt.Sprintf("%d\tfrom=%s\trcpts=%d\tpending=%d\tsize=%d\tattempts=%d\tcreated=%s\tnext=%s",
				e.ID, e.From, len(e.Recipients), len(e.Pending()), e.Size, e.Attempts,
				e.Created.UTC().Format(time.RFC3339), e.NextAttempt.UTC().Format(time.RFC3339)))
		}
		return lines, nil
	}
	id, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil || id == 0 {
		return nil, fmt.Errorf("%q is not a queue ID (see roost queue list)", args[0])
	}
	switch op {
	case opQueueShow:
		e, err := b.Queued(ctx, id)
		if err != nil {
			return nil, err
		}
		lines := []string{
			"id\t" + strconv.FormatUint(e.ID, 10),
			"from\t" + e.From,
			"account\t" + e.Account,
			"size\t" + strconv.FormatInt(e.Size, 10),
			"created\t" + e.Created.UTC().Format(time.RFC3339),
			"attempts\t" + strconv.Itoa(e.Attempts),
			"next_attempt\t" + e.NextAttempt.UTC().Format(time.RFC3339),
		}
		if !e.LastAttempt.IsZero() {
			lines = append(lines, "last_attempt\t"+e.LastAttempt.UTC().Format(time.RFC3339))
		}
		for _, r := range e.Recipients {
			line := "rcpt\t" + r.Address + "\t" + string(r.State)
			if r.LastResult != "" {
				line += "\t" + r.LastResult
			}
			lines = append(lines, line)
		}
		return lines, nil
	case opQueueRetry:
		if eng != nil {
			err = eng.Retry(ctx, id)
		} else {
			_, err = b.UpdateQueued(ctx, id, func(q *backend.QueueEntry) error {
				q.NextAttempt = time.Now().UTC()
				return nil
			})
		}
		if err != nil {
			return nil, err
		}
		return []string{fmt.Sprintf("message %d will be retried now", id)}, nil
	case opQueueDelete:
		if eng != nil {
			err = eng.Delete(ctx, id)
		} else {
			err = b.DeleteQueued(ctx, id)
		}
		if err != nil {
			return nil, err
		}
		return []string{fmt.Sprintf("message %d deleted", id)}, nil
	}
	return nil, fmt.Errorf("unknown operation %q", op)
}
