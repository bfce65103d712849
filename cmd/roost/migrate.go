package main

// roost import and roost export: the admin's process reads and writes the
// Maildir or mbox files (package migrate) and sends the mail in batches to
// the store through the control socket, or straight into the store when no
// server runs, like every admin command.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/migrate"
)

// migrateJob is one import or export command line.
type migrateJob struct {
	export   bool
	format   string // "maildir" or "mbox"
	path     string // DIR or FILE
	address  string
	mailbox  string // import mbox: target mailbox (default INBOX)
	mboxo    bool
	layoutFS bool
	json     bool
}

func parseMigrate(cmd string, args []string) (migrateJob, error) {
	job := migrateJob{export: cmd == "export"}
	flags, args, err := takeFlags(args, "--mailbox", "--mboxo", "--layout", "--json")
	if err != nil {
		return job, err
	}
	forms := map[string]string{
		"import maildir": "import maildir DIR ADDRESS",
		"import mbox":    "import mbox FILE ADDRESS [--mailbox NAME] [--mboxo]",
		"export maildir": "export maildir ADDRESS DIR [--layout fs]",
		"export mbox":    "export mbox ADDRESS DIR",
	}
	if len(args) == 0 {
		return job, usagef("usage: roost %s maildir|mbox ...", cmd)
	}
	job.format = args[0]
	form, ok := forms[cmd+" "+job.format]
	if !ok {
		return job, usagef("unknown format %q (maildir or mbox)", job.format)
	}
	if err := wantArgs(args[1:], 2, form); err != nil {
		return job, err
	}
	if job.export {
		job.address, job.path = args[1], args[2]
	} else {
		job.path, job.address = args[1], args[2]
	}
	if job.address, err = backend.NormalizeAddress(job.address); err != nil {
		return job, usageError{err.Error()}
	}
	allowed := map[string][]string{"import mbox": {"--mailbox", "--mboxo"}, "export maildir": {"--layout"}}[cmd+" "+job.format]
	for name, v := range flags {
		if name == "--json" {
			job.json = true
			continue
		}
		if !slices.Contains(allowed, name) {
			return job, usagef("%s %s does not take %s", cmd, job.format, name)
		}
		switch name {
		case "--mailbox":
			job.mailbox = v
		case "--mboxo":
			job.mboxo = true
		case "--layout":
			switch v {
			case "fs":
				job.layoutFS = true
			case "maildir++":
			default:
				return job, usagef("--layout is fs or maildir++, not %q", v)
			}
		}
	}
	return job, nil
}

// adminClient sends control requests: to the server, or to a store opened
// by this process.
type adminClient interface {
	call(ctx context.Context, req request) (response, error)
	close() error
}

type directClient struct{ a *admin }

func (d directClient) call(ctx context.Context, req request) (response, error) {
	return d.a.do(ctx, req), nil
}

func (d directClient) close() error { return d.a.b.Close() }

func openAdminClient(ctx context.Context, cfg *Config) (adminClient, error) {
	c, err := dialControl(ctx, controlSocketPath(cfg.DataDir))
	if errors.Is(err, errNoServer) {
		a, err := openDirect(cfg)
		if err != nil {
			return nil, err
		}
		return directClient{a}, nil
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// callOp sends one request with structured data (and raw payload) and
// decodes the structured answer into out.
func callOp(ctx context.Context, c adminClient, op, addr string, data any, payload []byte, out any) (response, error) {
	req := request{Op: op, Args: []string{addr}, payload: payload}
	if data != nil {
		raw, err := json.Marshal(data)
		if err != nil {
			return response{}, err
		}
		req.Data = raw
	}
	resp, err := c.call(ctx, req)
	if err != nil {
		return resp, err
	}
	if !resp.OK {
		return resp, errors.New(resp.Error)
	}
	if out != nil {
		if err := json.Unmarshal(resp.Data, out); err != nil {
			return resp, fmt.Errorf("%s: bad answer: %w", op, err)
		}
	}
	return resp, nil
}

// migrateSummary is what an import or export reports (--json prints it).
type migrateSummary struct {
	Command   string          `json:"command"`
	Address   string          `json:"address"`
	Path      string          `json:"path"`
	Mailboxes []mailboxReport `json:"mailboxes"`
	Messages  int             `json:"messages"` // found in the source (import) or the account (export)
	Imported  int             `json:"imported,omitempty"`
	Exported  int             `json:"exported,omitempty"`
	// Skipped were imported by an earlier run (or are a folder's internal
	// pseudo-message).
	Skipped    int       `json:"skipped"`
	Renumbered int       `json:"renumbered"`
	Failed     int       `json:"failed"`
	Problems   []problem `json:"problems,omitempty"`
	Seconds    float64   `json:"seconds"`
	PerSecond  float64   `json:"messages_per_second"`
}

type mailboxReport struct {
	Name        string `json:"name"`
	SpecialUse  string `json:"special_use,omitempty"`
	UIDValidity uint32 `json:"uid_validity"`
	KeptUIDs    bool   `json:"kept_uids"`
	Messages    int    `json:"messages"`
	Imported    int    `json:"imported,omitempty"`
	Skipped     int    `json:"skipped,omitempty"`
	Renumbered  int    `json:"renumbered,omitempty"`
	Failed      int    `json:"failed,omitempty"`
}

type problem struct {
	Where string `json:"where"`
	Error string `json:"error"`
	// Skipped is true when a message was left out because of it.
	Skipped bool `json:"skipped"`
}

// migrateRun is the state of one running import or export.
type migrateRun struct {
	ctx   context.Context
	cfg   *Config
	job   migrateJob
	c     adminClient
	env   cliEnv
	sum   migrateSummary
	start time.Time
	prog  *progress
}

func runMigrate(ctx context.Context, cfg *Config, job migrateJob, env cliEnv) error {
	c, err := openAdminClient(ctx, cfg)
	if err != nil {
		return err
	}
	cmd := "import"
	if job.export {
		cmd = "export"
	}
	r := &migrateRun{ctx: ctx, cfg: cfg, job: job, c: c, env: env, start: time.Now(),
		sum: migrateSummary{Command: cmd + " " + job.format, Address: job.address, Path: job.path}}
	r.prog = newProgress(env.stderr, !job.json)
	switch {
	case !job.export && job.format == "maildir":
		err = r.importMaildir()
	case !job.export:
		err = r.importMbox()
	case job.format == "maildir":
		err = r.exportMaildir()
	default:
		err = r.exportMbox()
	}
	r.prog.done()
	if cerr := c.close(); err == nil && cerr != nil {
		err = fmt.Errorf("close store: %w", cerr)
	}
	if err != nil {
		return err
	}
	r.sum.Seconds = time.Since(r.start).Seconds()
	if n := r.sum.Imported + r.sum.Exported; r.sum.Seconds > 0 {
		r.sum.PerSecond = float64(n) / r.sum.Seconds
	}
	r.report()
	if r.sum.Failed > 0 {
		return fmt.Errorf("%d messages could not be %sed (see above); run the command again once they are fixed, it goes on where it stopped", r.sum.Failed, cmd)
	}
	return nil
}

func (r *migrateRun) problem(where string, err error, skipped bool) {
	r.sum.Problems = append(r.sum.Problems, problem{Where: where, Error: err.Error(), Skipped: skipped})
	if skipped {
		r.sum.Failed++
	}
	if !r.job.json {
		r.prog.clear()
		verb := "warning"
		if skipped {
			verb = "skipped"
		}
		fmt.Fprintf(r.env.stderr, "roost: %s %s: %s\n", verb, where, oneLine(err.Error()))
	}
}

func (r *migrateRun) report() {
	s := &r.sum
	if r.job.json {
		out, _ := json.MarshalIndent(s, "", "  ")
		fmt.Fprintln(r.env.stdout, string(out))
		return
	}
	if r.job.export {
		fmt.Fprintf(r.env.stdout, "exported %d messages in %d mailboxes of %s to %s in %.1fs (%.0f messages/s)\n",
			s.Exported, len(s.Mailboxes), s.Address, s.Path, s.Seconds, s.PerSecond)
		return
	}
	kept := 0
	for _, mb := range s.Mailboxes {
		if mb.KeptUIDs {
			kept++
		}
	}
	fmt.Fprintf(r.env.stdout, "imported %d of %d messages into %d mailboxes of %s (UIDs kept in %d, %d messages renumbered); %d imported before; %d failed; %.1fs (%.0f messages/s)\n",
		s.Imported, s.Messages, len(s.Mailboxes), s.Address, kept, s.Renumbered, s.Skipped, s.Failed, s.Seconds, s.PerSecond)
}

// pending is one message read for a batch.
type pending struct {
	meta importMeta
	body []byte
}

// sendBatch imports msgs into a prepared mailbox and counts the results.
func (r *migrateRun) sendBatch(mb *importPrepareResult, rep *mailboxReport, msgs []pending, uidNext uint32) error {
	metas := make([]importMeta, len(msgs))
	size := 0
	for i, m := range msgs {
		metas[i] = m.meta
		size += len(m.body)
	}
	meta, err := json.Marshal(metas)
	if err != nil {
		return err
	}
	payload := make([]byte, 0, len(meta)+size)
	payload = append(payload, meta...)
	for _, m := range msgs {
		payload = append(payload, m.body...)
	}
	var res backend.ImportResult
	args := importBatchArgs{MailboxID: mb.ID, KeepUIDs: mb.KeepUIDs, UIDNext: uidNext, MetaLen: int64(len(meta))}
	if _, err := callOp(r.ctx, r.c, opImportBatch, r.job.address, args, payload, &res); err != nil {
		return fmt.Errorf("mailbox %s: %w", mb.Name, err)
	}
	n := len(msgs) - res.Skipped
	rep.Imported += n
	rep.Skipped += res.Skipped
	rep.Renumbered += res.Renumbered
	r.sum.Imported += n
	r.sum.Skipped += res.Skipped
	r.sum.Renumbered += res.Renumbered
	return nil
}

func (r *migrateRun) prepare(name, specialUse string, uidValidity uint32, subscribe bool) (*importPrepareResult, error) {
	var mb importPrepareResult
	args := importPrepareArgs{Name: name, SpecialUse: specialUse, UIDValidity: uidValidity, Subscribe: subscribe}
	if _, err := callOp(r.ctx, r.c, opImportPrepare, r.job.address, args, nil, &mb); err != nil {
		return nil, err
	}
	if uidValidity != 0 && !mb.KeepUIDs {
		r.problem("mailbox "+name, fmt.Errorf("it held mail in Roost already (UIDVALIDITY %d, not the source's %d): its messages get new UIDs, and mail apps download them again", mb.UIDValidity, uidValidity), false)
	}
	return &mb, nil
}

// imported reports which import keys the mailbox has already.
func (r *migrateRun) imported(mb *importPrepareResult, keys []string) ([]bool, error) {
	var has []bool
	if len(keys) == 0 {
		return nil, nil
	}
	_, err := callOp(r.ctx, r.c, opImportCheck, r.job.address, importCheckArgs{MailboxID: mb.ID, Keys: keys}, nil, &has)
	if err == nil && len(has) != len(keys) {
		err = fmt.Errorf("%s: %d answers for %d keys", opImportCheck, len(has), len(keys))
	}
	return has, err
}

// maxMessage is the largest message the store takes.
func (r *migrateRun) maxMessage() int64 { return backendMaxMessageBytes(r.cfg) }

func (r *migrateRun) importMaildir() error {
	folders, err := migrate.ScanMaildir(os.DirFS(r.job.path))
	if err != nil {
		return fmt.Errorf("import %s: %w", r.job.path, err)
	}
	for _, f := range folders {
		r.sum.Messages += len(f.Messages)
	}
	r.prog.start("importing", r.sum.Messages)
	for _, f := range folders {
		for _, p := range f.Problems {
			r.problem(filepath.Join(r.job.path, f.Dir), errors.New(p), false)
		}
		mb, err := r.prepare(f.Name, f.SpecialUse, f.UIDValidity, f.Subscribed)
		if err != nil {
			return fmt.Errorf("mailbox %s: %w", f.Name, err)
		}
		rep := mailboxReport{Name: mb.Name, SpecialUse: mb.SpecialUse, UIDValidity: mb.UIDValidity, KeptUIDs: mb.KeepUIDs, Messages: len(f.Messages)}
		ownUIDL := 0
		for start := 0; start < len(f.Messages) || start == 0; {
			end := start
			var bytes int64
			for end < len(f.Messages) && end-start < importBatchMessages && (bytes < importBatchBytes || end == start) {
				bytes += f.Messages[end].Size
				end++
			}
			chunk := f.Messages[start:end]
			keys := make([]string, len(chunk))
			for i, m := range chunk {
				keys[i] = "maildir:" + m.Unique
			}
			has, err := r.imported(mb, keys)
			if err != nil {
				return err
			}
			var batch []pending
			for i, m := range chunk {
				if m.POP3UIDL != "" {
					ownUIDL++
				}
				if has[i] {
					rep.Skipped++
					r.sum.Skipped++
					continue
				}
				where := filepath.Join(r.job.path, filepath.FromSlash(m.Path))
				body, err := r.readMessageFile(where)
				if err != nil {
					rep.Failed++
					r.problem(where, err, true)
					continue
				}
				batch = append(batch, pending{meta: importMeta{Key: keys[i], UID: m.UID, Flags: m.Flags, Date: m.Date, Size: int64(len(body))}, body: body})
			}
			var uidNext uint32
			if end == len(f.Messages) {
				uidNext = f.UIDNext // only at the end: earlier, it would push later UIDs below it
			}
			if len(batch) > 0 || uidNext != 0 {
				if err := r.sendBatch(mb, &rep, batch, uidNext); err != nil {
					return err
				}
			}
			r.prog.add(len(chunk))
			if end == len(f.Messages) {
				break
			}
			start = end
		}
		if ownUIDL > 0 {
			r.problem("mailbox "+f.Name, fmt.Errorf("%d messages have a POP3 UIDL of their own in dovecot-uidlist (from an earlier migration into Dovecot); Roost gives each the default form (UID and UIDVALIDITY in hex), so POP3 clients that leave mail on the server may fetch those again", ownUIDL), false)
		}
		r.sum.Mailboxes = append(r.sum.Mailboxes, rep)
	}
	return nil
}

// readMessageFile reads one message file whole; a message is never
// imported in part.
func (r *migrateRun) readMessageFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	switch {
	case !fi.Mode().IsRegular():
		return nil, errors.New("not a regular file")
	case fi.Size() == 0:
		return nil, errors.New("empty file")
	case fi.Size() > r.maxMessage():
		return nil, fmt.Errorf("%d bytes, over the largest message the store takes (%d)", fi.Size(), r.maxMessage())
	}
	body, err := io.ReadAll(io.LimitReader(f, r.maxMessage()+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) != fi.Size() {
		return nil, fmt.Errorf("changed while read (%d bytes, then %d)", fi.Size(), len(body))
	}
	body = migrate.ToCRLF(body)
	if int64(len(body)) > r.maxMessage() {
		return nil, fmt.Errorf("%d bytes with CRLF line ends, over the largest message the store takes (%d)", len(body), r.maxMessage())
	}
	return body, nil
}

// mboxKey is an mbox message's import key: Message-ID, size and date (a
// digest of the message when it has no Message-ID).
func mboxKey(body []byte, date time.Time) string {
	id := headerValue(body, "Message-Id")
	if id == "" {
		sum := sha256.Sum256(body)
		id = "sha256:" + hex.EncodeToString(sum[:])
	}
	return "mbox:" + id + "\x00" + strconv.Itoa(len(body)) + "\x00" + strconv.FormatInt(date.Unix(), 10)
}

// headerValue returns the first value of a header field, unfolded.
func headerValue(msg []byte, name string) string {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	lines := strings.Split(string(msg[:end]), "\r\n")
	canon := textproto.CanonicalMIMEHeaderKey(name)
	for i, l := range lines {
		k, v, ok := strings.Cut(l, ":")
		if !ok || textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k)) != canon {
			continue
		}
		for j := i + 1; j < len(lines) && (strings.HasPrefix(lines[j], " ") || strings.HasPrefix(lines[j], "\t")); j++ {
			v += " " + strings.TrimSpace(lines[j])
		}
		return strings.TrimSpace(v)
	}
	return ""
}

func (r *migrateRun) importMbox() error {
	f, err := os.Open(r.job.path)
	if err != nil {
		return fmt.Errorf("import %s: %w", r.job.path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("import %s: a directory, not an mbox file (for a Maildir: roost import maildir)", r.job.path)
	}
	name := r.job.mailbox
	if name == "" {
		name = backend.Inbox
	}
	rd := migrate.NewMboxReader(f, migrate.MboxOptions{MboxO: r.job.mboxo, MaxMessageBytes: r.maxMessage()})
	r.prog.startBytes("importing", fi.Size())
	var mb *importPrepareResult
	var rep mailboxReport
	var batch []pending
	var batchBytes int
	var uidNext uint32
	flush := func(last bool) error {
		keys := make([]string, len(batch))
		for i, p := range batch {
			keys[i] = p.meta.Key
		}
		has, err := r.imported(mb, keys)
		if err != nil {
			return err
		}
		var send []pending
		for i, p := range batch {
			if has[i] {
				rep.Skipped++
				r.sum.Skipped++
				continue
			}
			send = append(send, p)
		}
		next := uint32(0)
		if last {
			next = uidNext
		}
		if len(send) > 0 || next != 0 {
			if err := r.sendBatch(mb, &rep, send, next); err != nil {
				return err
			}
		}
		batch, batchBytes = batch[:0], 0
		return nil
	}
	for {
		m, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("import %s: %w", r.job.path, err)
		}
		if mb == nil {
			// The first message's X-IMAPbase holds the folder's UIDVALIDITY.
			uidNext = m.UIDNext
			if mb, err = r.prepare(name, migrate.SpecialUse(name), m.UIDValidity, true); err != nil {
				return fmt.Errorf("mailbox %s: %w", name, err)
			}
			rep = mailboxReport{Name: mb.Name, SpecialUse: mb.SpecialUse, UIDValidity: mb.UIDValidity, KeptUIDs: mb.KeepUIDs}
		}
		r.prog.setBytes(m.Offset + m.Size)
		if m.Internal {
			continue // the folder's own data, no message
		}
		r.sum.Messages++
		rep.Messages++
		where := fmt.Sprintf("%s: message %d (at byte %d)", r.job.path, rep.Messages, m.Offset)
		if m.TooBig {
			rep.Failed++
			r.problem(where, fmt.Errorf("%d bytes, over the largest message the store takes (%d)", m.Size, r.maxMessage()), true)
			continue
		}
		if len(m.Body) == 0 {
			rep.Failed++
			r.problem(where, errors.New("empty message"), true)
			continue
		}
		body := migrate.ToCRLF(m.Body)
		date := m.Date
		if date.IsZero() {
			if d, err := mailDate(body); err == nil {
				date = d
			}
		}
		batch = append(batch, pending{meta: importMeta{Key: mboxKey(body, date), UID: m.UID, Flags: m.Flags, Date: date, Size: int64(len(body))}, body: body})
		batchBytes += len(body)
		if len(batch) >= importBatchMessages || batchBytes >= importBatchBytes {
			if err := flush(false); err != nil {
				return err
			}
		}
	}
	if mb == nil {
		return fmt.Errorf("import %s: no messages in it", r.job.path)
	}
	if err := flush(true); err != nil {
		return err
	}
	r.sum.Mailboxes = append(r.sum.Mailboxes, rep)
	return nil
}

// mailDate is the Date header's time, for an mbox "From " line without one.
func mailDate(body []byte) (time.Time, error) {
	return parseMailDate(headerValue(body, "Date"))
}

func parseMailDate(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC1123Z, time.RFC1123, "Mon, 2 Jan 2006 15:04:05 -0700", "2 Jan 2006 15:04:05 -0700"} {
		if t, err := time.Parse(layout, strings.TrimSpace(strings.Split(s, " (")[0])); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("bad date %q", s)
}

// mailboxes lists the account's mailboxes for an export.
func (r *migrateRun) mailboxes() ([]exportMailbox, error) {
	var boxes []exportMailbox
	if _, err := callOp(r.ctx, r.c, opExportMailboxes, r.job.address, nil, nil, &boxes); err != nil {
		return nil, err
	}
	for _, mb := range boxes {
		r.sum.Messages += int(mb.Messages)
	}
	r.prog.start("exporting", r.sum.Messages)
	return boxes, nil
}

// eachMessage calls fn for every message of a mailbox, in UID order,
// fetching bodies in batches.
func (r *migrateRun) eachMessage(mb exportMailbox, fn func(m exportMessage, body []byte) error) error {
	var msgs []exportMessage
	if _, err := callOp(r.ctx, r.c, opExportMessages, r.job.address, exportMessagesArgs{MailboxID: mb.ID}, nil, &msgs); err != nil {
		return err
	}
	for start := 0; start < len(msgs); {
		end := start
		var size int64
		for end < len(msgs) && end-start < importBatchMessages && (size < importBatchBytes || end == start) {
			size += msgs[end].Size
			end++
		}
		uids := make([]uint32, end-start)
		for i := range uids {
			uids[i] = msgs[start+i].UID
		}
		var res exportBodiesResult
		resp, err := callOp(r.ctx, r.c, opExportBodies, r.job.address, exportBodiesArgs{MailboxID: mb.ID, UIDs: uids}, nil, &res)
		if err != nil {
			return err
		}
		data := resp.payload
		for i, n := range res.Sizes {
			if n < 0 {
				continue // expunged meanwhile
			}
			if n > int64(len(data)) {
				return fmt.Errorf("mailbox %s: answer cut short", mb.Name)
			}
			if err := fn(msgs[start+i], data[:n]); err != nil {
				return err
			}
			data = data[n:]
			r.sum.Exported++
			r.prog.add(1)
		}
		start = end
	}
	return nil
}

func (r *migrateRun) exportMaildir() error {
	boxes, err := r.mailboxes()
	if err != nil {
		return err
	}
	w, err := migrate.NewMaildirWriter(r.job.path, r.job.layoutFS)
	if err != nil {
		return fmt.Errorf("export to %s: %w", r.job.path, err)
	}
	for _, mb := range boxes {
		fw, err := w.Folder(mb.Name, mb.UIDValidity, mb.UIDNext, mb.Subscribed)
		if err != nil {
			r.problem("mailbox "+mb.Name, err, false)
			r.sum.Failed += int(mb.Messages)
			continue
		}
		err = r.eachMessage(mb, func(m exportMessage, body []byte) error {
			return fw.Add(m.UID, m.Flags, m.Date, body)
		})
		if err == nil {
			err = fw.Close()
		}
		if err != nil {
			return fmt.Errorf("export %s: %w", mb.Name, err)
		}
		for _, p := range fw.Problems {
			r.problem("mailbox "+mb.Name, errors.New(p), false)
		}
		r.sum.Mailboxes = append(r.sum.Mailboxes, mailboxReport{Name: mb.Name, SpecialUse: mb.SpecialUse, UIDValidity: mb.UIDValidity, KeptUIDs: true, Messages: int(mb.Messages)})
	}
	return w.Close()
}

// mboxPath is where a mailbox's mbox file goes: Dovecot's mbox layout
// (INBOX and folders as files, levels as directories); a mailbox that has
// sub-mailboxes cannot also be a file, so its messages go to NAME.mbox.
func mboxPath(dir, name string, boxes []exportMailbox) string {
	p := filepath.Join(append([]string{dir}, strings.Split(name, backend.Separator)...)...)
	for _, mb := range boxes {
		if strings.HasPrefix(mb.Name, name+backend.Separator) {
			return p + ".mbox"
		}
	}
	return p
}

func (r *migrateRun) exportMbox() error {
	boxes, err := r.mailboxes()
	if err != nil {
		return err
	}
	if entries, err := os.ReadDir(r.job.path); err == nil && len(entries) > 0 {
		return fmt.Errorf("export to %s: the directory is not empty", r.job.path)
	}
	for _, mb := range boxes {
		for _, part := range strings.Split(mb.Name, backend.Separator) {
			if part == "" || part == "." || part == ".." {
				return fmt.Errorf("mailbox %q cannot be a file name", mb.Name)
			}
		}
		path := mboxPath(r.job.path, mb.Name, boxes)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		err := migrate.WriteAtomic(path, func(w io.Writer) error {
			first := true
			return r.eachMessage(mb, func(m exportMessage, body []byte) error {
				uv := uint32(0)
				if first {
					uv, first = mb.UIDValidity, false
				}
				return migrate.WriteMboxMessage(w, returnPath(body), m.Date, body, m.UID, m.Flags, uv, mb.UIDNext)
			})
		})
		if err != nil {
			return fmt.Errorf("export %s: %w", mb.Name, err)
		}
		r.sum.Mailboxes = append(r.sum.Mailboxes, mailboxReport{Name: mb.Name, SpecialUse: mb.SpecialUse, UIDValidity: mb.UIDValidity, KeptUIDs: true, Messages: int(mb.Messages)})
	}
	return nil
}

// returnPath is the envelope sender for the "From " line.
func returnPath(body []byte) string {
	return strings.Trim(headerValue(body, "Return-Path"), "<> ")
}

// progress draws a progress bar on a terminal (stderr), and nothing
// elsewhere: scripts get the one-line summary.
type progress struct {
	w            io.Writer
	on           bool
	what         string
	total, count int64
	bytes        bool
	last         time.Time
	started      time.Time
	drawnOnce    bool
}

func newProgress(w io.Writer, allowed bool) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, on: allowed && ok && term.IsTerminal(int(f.Fd()))}
}

func (p *progress) start(what string, total int) {
	p.what, p.total, p.bytes, p.started = what, int64(total), false, time.Now()
	p.draw(true)
}

func (p *progress) startBytes(what string, total int64) {
	p.what, p.total, p.bytes, p.started = what, total, true, time.Now()
	p.draw(true)
}

func (p *progress) add(n int) { p.count += int64(n); p.draw(false) }

func (p *progress) setBytes(n int64) { p.count = n; p.draw(false) }

func (p *progress) draw(force bool) {
	if !p.on || !force && time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	pct := int64(100)
	if p.total > 0 {
		pct = min(100, p.count*100/p.total)
	}
	const width = 30
	bar := strings.Repeat("=", int(pct*width/100)) + strings.Repeat(" ", width-int(pct*width/100))
	unit := "messages"
	done, total := p.count, p.total
	if p.bytes {
		unit, done, total = "MiB", p.count>>20, p.total>>20
	}
	fmt.Fprintf(p.w, "\r%s [%s] %3d%%  %d/%d %s\x1b[K", p.what, bar, pct, done, total, unit)
	p.drawnOnce = true
}

// clear takes the bar off the line, so that a message can be printed.
func (p *progress) clear() {
	if p.on && p.drawnOnce {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.last = time.Time{}
	}
}

func (p *progress) done() { p.clear() }
