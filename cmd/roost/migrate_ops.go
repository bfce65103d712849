package main

// The server side of roost import and export: control operations that the
// CLI drives batch by batch, so that the files are read and written by the
// admin's process (which can see them; a hardened service may not) and the
// store by whoever holds it (the server, or the CLI itself when none runs).

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/roostmail/roost/backend"
)

// Import and export operations.
const (
	opImportPrepare   = "import.prepare"
	opImportCheck     = "import.check"
	opImportBatch     = "import.batch"
	opExportMailboxes = "export.mailboxes"
	opExportMessages  = "export.messages"
	opExportBodies    = "export.bodies"
)

// Bounds of one import batch (one transaction, one fsync).
const (
	importBatchMessages = 500
	importBatchBytes    = 32 << 20
)

type importPrepareArgs struct {
	Name        string `json:"name"`
	SpecialUse  string `json:"special_use,omitempty"`
	UIDValidity uint32 `json:"uid_validity,omitempty"`
	Subscribe   bool   `json:"subscribe,omitempty"`
}

type importPrepareResult struct {
	ID          uint64 `json:"id"`
	Name        string `json:"name"`
	SpecialUse  string `json:"special_use,omitempty"`
	UIDValidity uint32 `json:"uid_validity"`
	UIDNext     uint32 `json:"uid_next"`
	KeepUIDs    bool   `json:"keep_uids"`
}

type importCheckArgs struct {
	MailboxID uint64   `json:"mailbox_id"`
	Keys      []string `json:"keys"`
}

type importBatchArgs struct {
	MailboxID uint64 `json:"mailbox_id"`
	KeepUIDs  bool   `json:"keep_uids"`
	UIDNext   uint32 `json:"uid_next,omitempty"`
	// MetaLen is how many bytes of the payload are the JSON list of
	// importMeta; the bodies follow, each Size bytes.
	MetaLen int64 `json:"meta_len"`
}

type importMeta struct {
	Key   string    `json:"key,omitempty"`
	UID   uint32    `json:"uid,omitempty"`
	Flags []string  `json:"flags,omitempty"`
	Date  time.Time `json:"date"`
	Size  int64     `json:"size"`
}

type exportMailbox struct {
	ID          uint64 `json:"id"`
	Name        string `json:"name"`
	SpecialUse  string `json:"special_use,omitempty"`
	UIDValidity uint32 `json:"uid_validity"`
	UIDNext     uint32 `json:"uid_next"`
	Messages    uint32 `json:"messages"`
	Subscribed  bool   `json:"subscribed,omitempty"`
}

type exportMessagesArgs struct {
	MailboxID uint64 `json:"mailbox_id"`
}

type exportMessage struct {
	UID   uint32    `json:"uid"`
	Flags []string  `json:"flags,omitempty"`
	Date  time.Time `json:"date"`
	Size  int64     `json:"size"`
}

type exportBodiesArgs struct {
	MailboxID uint64   `json:"mailbox_id"`
	UIDs      []uint32 `json:"uids"`
}

type exportBodiesResult struct {
	// Sizes are the bodies' lengths in the payload, in the order asked (a
	// UID that is gone has -1 and no bytes).
	Sizes []int64 `json:"sizes"`
}

func (a *admin) execMigrate(ctx context.Context, req request) ([]string, error) {
	u, err := a.b.LookupUser(ctx, req.Args[0])
	if err != nil {
		return nil, err
	}
	defer u.Release()
	switch req.Op {
	case opImportPrepare:
		var args importPrepareArgs
		if err := json.Unmarshal(req.Data, &args); err != nil {
			return nil, fmt.Errorf("%s: %w", req.Op, err)
		}
		mb, err := u.PrepareImport(args.Name, args.SpecialUse, args.UIDValidity, args.Subscribe)
		if err != nil {
			return nil, fmt.Errorf("mailbox %s: %w", args.Name, err)
		}
		return nil, req.setData(importPrepareResult{ID: mb.ID, Name: mb.Name, SpecialUse: mb.SpecialUse,
			UIDValidity: mb.UIDValidity, UIDNext: mb.UIDNext, KeepUIDs: mb.KeepUIDs})
	case opImportCheck:
		var args importCheckArgs
		if err := json.Unmarshal(req.Data, &args); err != nil {
			return nil, fmt.Errorf("%s: %w", req.Op, err)
		}
		has, err := u.HasImportKeys(args.MailboxID, args.Keys)
		if err != nil {
			return nil, err
		}
		return nil, req.setData(has)
	case opImportBatch:
		var args importBatchArgs
		if err := json.Unmarshal(req.Data, &args); err != nil {
			return nil, fmt.Errorf("%s: %w", req.Op, err)
		}
		if args.MetaLen < 0 || args.MetaLen > int64(len(req.payload)) {
			return nil, fmt.Errorf("%s: bad meta_len %d", req.Op, args.MetaLen)
		}
		var metas []importMeta
		if err := json.Unmarshal(req.payload[:args.MetaLen], &metas); err != nil {
			return nil, fmt.Errorf("%s: %w", req.Op, err)
		}
		rest := req.payload[args.MetaLen:]
		msgs := make([]backend.ImportMessage, len(metas))
		for i, m := range metas {
			if m.Size < 0 || m.Size > int64(len(rest)) {
				return nil, fmt.Errorf("%s: message %d: size %d past the payload", req.Op, i, m.Size)
			}
			msgs[i] = backend.ImportMessage{Key: m.Key, UID: m.UID, Flags: m.Flags, InternalDate: m.Date, Body: rest[:m.Size]}
			rest = rest[m.Size:]
		}
		if len(rest) != 0 {
			return nil, fmt.Errorf("%s: %d bytes after the last message", req.Op, len(rest))
		}
		res, err := u.ImportMessages(ctx, args.MailboxID, msgs, args.KeepUIDs, args.UIDNext)
		if err != nil {
			return nil, err
		}
		return nil, req.setData(res)
	case opExportMailboxes:
		boxes, err := u.Mailboxes()
		if err != nil {
			return nil, err
		}
		subs, err := u.Subscriptions()
		if err != nil {
			return nil, err
		}
		subscribed := map[string]bool{}
		for _, s := range subs {
			subscribed[s] = true
		}
		out := make([]exportMailbox, len(boxes))
		for i, mb := range boxes {
			out[i] = exportMailbox{ID: mb.ID, Name: mb.Name, SpecialUse: mb.SpecialUse, UIDValidity: mb.UIDValidity,
				UIDNext: mb.UIDNext, Messages: mb.Messages, Subscribed: subscribed[mb.Name]}
		}
		return nil, req.setData(out)
	case opExportMessages:
		var args exportMessagesArgs
		if err := json.Unmarshal(req.Data, &args); err != nil {
			return nil, fmt.Errorf("%s: %w", req.Op, err)
		}
		var out []exportMessage
		err := u.Messages(args.MailboxID, 1, ^uint32(0), func(m backend.Message) error {
			out = append(out, exportMessage{UID: m.UID, Flags: m.Flags, Date: m.InternalDate, Size: m.Size})
			return nil
		})
		if err != nil {
			return nil, err
		}
		return nil, req.setData(out)
	case opExportBodies:
		var args exportBodiesArgs
		if err := json.Unmarshal(req.Data, &args); err != nil {
			return nil, fmt.Errorf("%s: %w", req.Op, err)
		}
		msgs, err := u.MessagesByUID(args.MailboxID, args.UIDs)
		if err != nil {
			return nil, err
		}
		byUID := make(map[uint32]backend.Message, len(msgs))
		for _, m := range msgs {
			byUID[m.UID] = m
		}
		res := exportBodiesResult{Sizes: make([]int64, len(args.UIDs))}
		var payload []byte
		for i, uid := range args.UIDs {
			m, ok := byUID[uid]
			if !ok {
				res.Sizes[i] = -1
				continue
			}
			body, err := u.ReadBody(&m)
			if err != nil {
				return nil, fmt.Errorf("message %d: %w", uid, err)
			}
			res.Sizes[i] = int64(len(body))
			payload = append(payload, body...)
		}
		if req.resp != nil {
			req.resp.payload = payload
		}
		return nil, req.setData(res)
	}
	return nil, fmt.Errorf("unknown operation %q", req.Op)
}
