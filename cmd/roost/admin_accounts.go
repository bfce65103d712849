package main

// Admin operations on accounts beyond add/passwd/del: quotas, disabling,
// app passwords and an account's status (issue: "running it for years").

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/roostmail/roost/backend"
)

// More control operations.
const (
	opUserQuota       = "user.quota"
	opUserDisable     = "user.disable"
	opUserEnable      = "user.enable"
	opUserStatus      = "user.status"
	opAppPasswordAdd  = "user.app-password.add"
	opAppPasswordList = "user.app-password.list"
	opAppPasswordDel  = "user.app-password.del"
)

// moreOps are the operations execMore handles, with their argument counts.
var moreOps = map[string]int{
	opUserQuota: 3, opUserDisable: 2, opUserEnable: 1, opUserStatus: 1,
	opAppPasswordAdd: 2, opAppPasswordList: 1, opAppPasswordDel: 2,
	opImportPrepare: 1, opImportCheck: 1, opImportBatch: 1,
	opExportMailboxes: 1, opExportMessages: 1, opExportBodies: 1,
}

// quietOps are not logged when they succeed: an import sends thousands.
var quietOps = map[string]bool{
	opImportPrepare: true, opImportCheck: true, opImportBatch: true,
	opExportMailboxes: true, opExportMessages: true, opExportBodies: true,
}

func withResponse(req request, resp *response) request {
	req.resp = resp
	return req
}

// setData puts a structured result into the response.
func (req request) setData(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if req.resp != nil {
		req.resp.Data = data
	}
	return nil
}

// maxPayload bounds the raw bytes of one request: a batch of messages.
func (a *admin) maxPayload() int64 {
	return max(a.maxMessageBytes, 50<<20) + importBatchBytes + 1<<20
}

func (a *admin) execMore(ctx context.Context, req request) ([]string, error) {
	b := a.b
	addr := req.Args[0]
	switch req.Op {
	case opUserQuota:
		bytes, err1 := strconv.ParseInt(req.Args[1], 10, 64)
		msgs, err2 := strconv.ParseInt(req.Args[2], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("user quota: bad numbers %q %q", req.Args[1], req.Args[2])
		}
		return nil, wrapAdmin("user quota", addr, b.SetQuota(ctx, addr, bytes, msgs))
	case opUserDisable:
		return nil, wrapAdmin("user disable", addr, b.SetDisabled(ctx, addr, true, req.Args[1] == "reject-mail"))
	case opUserEnable:
		return nil, wrapAdmin("user enable", addr, b.SetDisabled(ctx, addr, false, false))
	case opUserStatus:
		st, err := b.Status(ctx, addr)
		if err != nil {
			return nil, wrapAdmin("status", addr, err)
		}
		return statusLines(st), nil
	case opAppPasswordAdd:
		ap, pw, err := b.AddAppPassword(ctx, addr, req.Args[1])
		if err != nil {
			return nil, wrapAdmin("user app-password add", addr, err)
		}
		return []string{pw, fmt.Sprintf("(app password %q, id %s: shown this once; use it instead of the account's password in one mail app)", ap.Label, ap.ID)}, nil
	case opAppPasswordList:
		aps, err := b.AppPasswords(ctx, addr)
		if err != nil {
			return nil, wrapAdmin("user app-password list", addr, err)
		}
		lines := make([]string, 0, len(aps))
		for _, ap := range aps {
			lines = append(lines, ap.Label+"\tid="+ap.ID+"\tcreated="+ap.Created.UTC().Format(time.RFC3339))
		}
		return lines, nil
	case opAppPasswordDel:
		return nil, wrapAdmin("user app-password del", addr, b.DeleteAppPassword(ctx, addr, req.Args[1]))
	case opImportPrepare, opImportCheck, opImportBatch, opExportMailboxes, opExportMessages, opExportBodies:
		return a.execMigrate(ctx, req)
	}
	return nil, fmt.Errorf("unknown operation %q", req.Op)
}

// userList is `roost user list`: one line per account, the address first,
// then tab-separated fields: created=, used= (bytes) and messages=, quota=
// and quota_messages= (the limits in force) where there are limits, and
// disabled (or disabled,reject-mail).
func (a *admin) userList(ctx context.Context) ([]string, error) {
	users, err := a.b.Users(ctx)
	if err != nil {
		return nil, fmt.Errorf("user list: %w", err)
	}
	lines := make([]string, 0, len(users))
	for _, u := range users {
		line := u.Address + "\tcreated=" + u.Created.UTC().Format(time.RFC3339)
		if st, err := a.b.Status(ctx, u.Address); err == nil {
			q := st.Quota
			line += fmt.Sprintf("\tused=%d\tmessages=%d", q.UsedBytes, q.UsedMessages)
			if q.LimitBytes > 0 {
				line += fmt.Sprintf("\tquota=%d", q.LimitBytes)
			}
			if q.LimitMessages > 0 {
				line += fmt.Sprintf("\tquota_messages=%d", q.LimitMessages)
			}
		}
		switch {
		case u.Disabled && u.RejectMail:
			line += "\tdisabled,reject-mail"
		case u.Disabled:
			line += "\tdisabled"
		}
		lines = append(lines, line)
	}
	return lines, nil
}

// statusLines is `roost status ADDRESS`: "key<TAB>value" lines.
func statusLines(st backend.AccountStatus) []string {
	state := "enabled"
	switch {
	case st.Disabled && st.RejectMail:
		state = "disabled (logins refused, mail refused)"
	case st.Disabled:
		state = "disabled (logins refused, mail accepted)"
	}
	q := st.Quota
	limit := func(used, limit int64, unit string) string {
		if limit <= 0 {
			return fmt.Sprintf("%d %s (no limit)", used, unit)
		}
		return fmt.Sprintf("%d of %d %s (%d%%)", used, limit, unit, used*100/limit)
	}
	lines := []string{
		"address\t" + st.Address,
		"created\t" + st.Created.UTC().Format(time.RFC3339),
		"state\t" + state,
		"storage\t" + limit(q.UsedBytes, q.LimitBytes, "bytes"),
		"messages\t" + limit(q.UsedMessages, q.LimitMessages, "messages"),
		"app_passwords\t" + strconv.Itoa(len(st.AppPasswords)),
	}
	for _, mb := range st.Mailboxes {
		use := ""
		if mb.SpecialUse != "" {
			use = " " + mb.SpecialUse
		}
		lines = append(lines, fmt.Sprintf("mailbox\t%s\tmessages=%d\tunseen=%d\tbytes=%d\tuidvalidity=%d\tuidnext=%d%s",
			mb.Name, mb.Messages, mb.Unseen, mb.Size, mb.UIDValidity, mb.UIDNext, use))
	}
	return lines
}

// parseSize reads a quota size: bytes, or a number with K, M, G or T
// (powers of 1024, with an optional "B" or "iB"); "0" and "none" mean no
// limit (backend.NoLimit), "default" the [accounts] default.
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	switch t {
	case "0", "NONE", "UNLIMITED":
		return backend.NoLimit, nil
	case "DEFAULT":
		return 0, nil
	}
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || v < 0 || v*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 2G, 500M, 1048576, 0 for none, or default)", s)
	}
	n := int64(v * float64(mult))
	if n == 0 {
		return backend.NoLimit, nil
	}
	return n, nil
}

// groupCommitDelay maps [store] group_commit_delay, where 0 means no
// wait, to the store's option, where 0 means its default.
func groupCommitDelay(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// backendOptions are the backend options every way of opening the store
// shares (serve adds its logger, limiter and metrics).
func backendOptions(cfg *Config, log *slog.Logger) backend.Options {
	return backend.Options{
		DataDir:            cfg.DataDir,
		Shards:             cfg.Shards,
		IdleClose:          cfg.Store.IdleClose,
		MaxOpenFiles:       cfg.Store.MaxOpenFiles,
		TombstoneRetention: cfg.Store.TombstoneRetention,
		GroupCommitDelay:   groupCommitDelay(cfg.Store.GroupCommitDelay),
		Hostname:           cfg.Hostname,
		MaxMessageBytes:    backendMaxMessageBytes(cfg),
		DefaultQuota:       backend.Limits{Bytes: cfg.Accounts.DefaultQuota, Messages: cfg.Accounts.DefaultQuotaMessages},
		Logger:             log,
	}
}
