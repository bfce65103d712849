package main

// The control socket lets admin commands reach a running `roost serve`,
// which holds the store's file locks (bbolt) so that no other process can
// open it.
//
// Protocol: a unix stream socket at data_dir/control.sock, mode 0600 (only
// the server's user may connect). The client writes one JSON object per
// line; the server answers each with one JSON object on one line, in order:
//
//	→ {"op":"user.add","args":["alice@example.org"],"password":"s3cret"}
//	← {"ok":true}
//	→ {"op":"user.list"}
//	← {"ok":true,"lines":["alice@example.org\tcreated=2025-01-02T03:04:05Z"]}
//	→ {"op":"user.del","args":["nobody@example.org"]}
//	← {"ok":false,"error":"no such user: nobody@example.org"}
//
// Ops: ping, status, user.add, user.passwd (both with "password"), user.del,
// user.list, user.quota (address, bytes, messages), user.disable (address,
// "reject-mail" or ""), user.enable, user.status, user.app-password.add
// (address, label), user.app-password.list, user.app-password.del (address,
// label or ID), alias.add (args: alias, account), alias.del, alias.list,
// backup (args: an absolute directory), compact (args: none, or an
// address), queue.list, queue.show, queue.retry and queue.delete (args: a
// queue ID), and the import.* and export.* ops of roost import and export
// (see migrate.go), check and check.repair (args: the addresses to check,
// none for all; "lines" holds the violations found and a summary, and
// "ok" is false when some remain). "lines" is what the CLI prints, also
// when "ok" is false. Before its answer, a long operation (compact) may
// send progress lines, which the client shows:
//
//	← {"progress":{"done":1048576,"total":56623104}}
//
// Structured parameters and results travel in "data" (a JSON value), and
// bulk bytes (message bodies) after the line: a request or response with
// "payload": N is followed by exactly N raw bytes.
//
//	→ {"op":"import.batch","args":["alice@example.org"],"data":{...},"payload":52113}
//	→ <52113 bytes>
//	← {"ok":true,"data":{"uids":[1,2,3]}}

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Control operations.
const (
	opPing        = "ping"
	opStatus      = "status"
	opUserAdd     = "user.add"
	opUserPasswd  = "user.passwd"
	opUserDel     = "user.del"
	opUserList    = "user.list"
	opAliasAdd    = "alias.add"
	opAliasDel    = "alias.del"
	opAliasList   = "alias.list"
	opBackup      = "backup"
	opQueueList   = "queue.list"
	opQueueShow   = "queue.show"
	opQueueRetry  = "queue.retry"
	opQueueDelete = "queue.delete"
	opCompact     = "compact"
	// opCheck and opCheckRepair take any number of addresses.
	opCheck       = "check"
	opCheckRepair = "check.repair"
)

// controlSocketName is the socket's file name inside data_dir.
const controlSocketName = "control.sock"

// Bounds of the control protocol.
const (
	maxControlLine     = 64 << 10         // one request line
	controlIdleTimeout = time.Minute      // between requests on one connection
	controlDialTimeout = 5 * time.Second  // client: connecting
	controlReplyWait   = 30 * time.Minute // client: waiting for an answer (a backup may be large)
	controlWriteWait   = 30 * time.Second // server: writing an answer
)

// maxUnixPath is the longest socket path Linux accepts (sun_path is 108
// bytes with the terminating NUL).
const maxUnixPath = 107

// request is one control request.
type request struct {
	Op       string          `json:"op"`
	Args     []string        `json:"args,omitempty"`
	Password string          `json:"password,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
	// Payload is the length of the raw bytes that follow the line.
	Payload int64 `json:"payload,omitempty"`

	payload []byte
	resp    *response // where an op puts data and payload of its answer
	// progress receives the progress reports of a long operation: on
	// the client, those read before the answer; on the server, what the
	// op reports (sent to the client). nil: none.
	progress func(done, total int64)
}

// response answers one request.
type response struct {
	OK      bool            `json:"ok"`
	Lines   []string        `json:"lines,omitempty"`
	Error   string          `json:"error,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
	Payload int64           `json:"payload,omitempty"`
	// Progress, when set, makes this a progress report, not the answer.
	Progress *progressReport `json:"progress,omitempty"`

	payload []byte
}

// progressReport says how far a long operation has come (bytes).
type progressReport struct {
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
}

func controlSocketPath(dataDir string) string {
	return filepath.Join(dataDir, controlSocketName)
}

// errNoServer means nothing listens on the control socket (no file, or a
// stale one left by a server that was killed).
var errNoServer = errors.New("no server answers on the control socket")

// callControl sends one request to the server behind the control socket.
func callControl(ctx context.Context, path string, req request) (response, error) {
	c, err := dialControl(ctx, path)
	if err != nil {
		return response{}, err
	}
	defer c.close()
	return c.call(ctx, req)
}

// controlConn is a client connection to the control socket, for one
// request or many (roost import sends thousands on one).
type controlConn struct {
	path string
	c    net.Conn
	r    *bufio.Reader
}

func dialControl(ctx context.Context, path string) (*controlConn, error) {
	if len(path) > maxUnixPath {
		// No server can have bound it either.
		return nil, errNoServer
	}
	d := net.Dialer{Timeout: controlDialTimeout}
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, errNoServer
		}
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return &controlConn{path: path, c: c, r: bufio.NewReaderSize(c, 64<<10)}, nil
}

func (cc *controlConn) close() error { return cc.c.Close() }

func (cc *controlConn) call(ctx context.Context, req request) (response, error) {
	path, c := cc.path, cc.c
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	c.SetDeadline(time.Now().Add(controlReplyWait))
	req.Payload = int64(len(req.payload))
	line, err := json.Marshal(req)
	if err != nil {
		return response{}, err
	}
	if _, err := c.Write(append(line, '\n')); err != nil {
		return response{}, fmt.Errorf("control socket %s: send: %w", path, err)
	}
	if len(req.payload) > 0 {
		if _, err := c.Write(req.payload); err != nil {
			return response{}, fmt.Errorf("control socket %s: send: %w", path, err)
		}
	}
	var resp response
	for {
		resp = response{}
		reply, err := cc.r.ReadBytes('\n')
		if err != nil {
			return response{}, fmt.Errorf("control socket %s: no answer from the server (it may be shutting down): %w", path, err)
		}
		if err := json.Unmarshal(reply, &resp); err != nil {
			return response{}, fmt.Errorf("control socket %s: bad answer: %w", path, err)
		}
		if resp.Progress == nil {
			break
		}
		// Still working: the reply deadline starts again.
		c.SetDeadline(time.Now().Add(controlReplyWait))
		if req.progress != nil {
			req.progress(resp.Progress.Done, resp.Progress.Total)
		}
	}
	if resp.Payload > 0 {
		resp.payload = make([]byte, resp.Payload)
		if _, err := io.ReadFull(cc.r, resp.payload); err != nil {
			return response{}, fmt.Errorf("control socket %s: answer cut short: %w", path, err)
		}
	}
	return resp, nil
}

// listenUnix listens on a unix socket at path with the given file mode,
// replacing a stale socket (one nobody answers on) but never a live one or
// a file that is not a socket.
func listenUnix(path string, mode os.FileMode) (*net.UnixListener, error) {
	if len(path) > maxUnixPath {
		return nil, fmt.Errorf("unix socket path %s is longer than %d bytes; use a shorter path", path, maxUnixPath)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("unix socket %s is in use by another process", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return l, nil
}

// controlServer answers control requests for `roost serve`.
type controlServer struct {
	ln    *net.UnixListener
	admin *admin
	log   *slog.Logger

	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool // open connection → busy with a request
	closed bool
	nextID uint64
}

// startControl listens on path (mode 0600) and serves requests in the
// background until Shutdown.
func startControl(path string, a *admin, log *slog.Logger) (*controlServer, error) {
	ln, err := listenUnix(path, 0o600)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	s := &controlServer{ln: ln, admin: a, log: log, conns: make(map[net.Conn]bool)}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func (s *controlServer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if !closed {
				s.log.Error("control socket: accept failed; admin commands cannot reach the server", "err", err)
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.nextID++
		id := "ctl-" + strconv.FormatUint(s.nextID, 10)
		s.conns[c] = false
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c, s.log.With("conn", id))
	}
}

// setBusy marks c as running a request (true) or waiting for one (false);
// it reports false if the server is shutting down and c should stop.
func (s *controlServer) setBusy(c net.Conn, busy bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[c] = busy
	return !s.closed
}

func (s *controlServer) handle(c net.Conn, log *slog.Logger) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	r := bufio.NewReaderSize(c, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(controlIdleTimeout))
		line, err := readLine(r, maxControlLine)
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				writeResponse(c, response{Error: "request too long"})
			}
			return
		}
		if !s.setBusy(c, true) {
			return
		}
		var req request
		var resp response
		if err := json.Unmarshal(line, &req); err != nil {
			resp = response{Error: "malformed request: " + err.Error()}
		} else if req.Payload < 0 || req.Payload > s.admin.maxPayload() {
			// The bytes cannot be skipped safely: answer, then hang up.
			writeResponse(c, response{Error: fmt.Sprintf("payload of %d bytes is over the limit of %d", req.Payload, s.admin.maxPayload())})
			return
		} else {
			if req.Payload > 0 {
				req.payload = make([]byte, req.Payload)
				c.SetReadDeadline(time.Now().Add(controlIdleTimeout))
				if _, err := io.ReadFull(r, req.payload); err != nil {
					return
				}
			}
			req.progress = progressWriter(c)
			resp = s.admin.do(context.Background(), req)
			switch {
			case req.Op == opPing || req.Op == opStatus:
			case quietOps[req.Op]:
				if !resp.OK {
					log.Warn("control request", "op", req.Op, "args", req.Args, "ok", false, "error", resp.Error)
				}
			case resp.OK:
				log.Info("control request", "op", req.Op, "args", req.Args, "ok", true)
			default:
				log.Warn("control request", "op", req.Op, "args", req.Args, "ok", false, "error", resp.Error)
			}
		}
		if err := writeResponse(c, resp); err != nil {
			log.Warn("control socket: answer not delivered", "op", req.Op, "err", err)
			return
		}
		if !s.setBusy(c, false) {
			return
		}
	}
}

// progressWriter sends progress reports to c, at most a few a second.
func progressWriter(c net.Conn) func(done, total int64) {
	var last time.Time
	return func(done, total int64) {
		if now := time.Now(); now.Sub(last) >= 200*time.Millisecond || done == total {
			last = now
			writeResponse(c, response{Progress: &progressReport{Done: done, Total: total}})
		}
	}
}

func writeResponse(c net.Conn, resp response) error {
	resp.Payload = int64(len(resp.payload))
	data, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	c.SetWriteDeadline(time.Now().Add(controlWriteWait))
	if _, err = c.Write(append(data, '\n')); err == nil && len(resp.payload) > 0 {
		_, err = c.Write(resp.payload)
	}
	return err
}

var errLineTooLong = errors.New("line too long")

// readLine reads one "\n"-terminated line of at most max bytes.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, errLineTooLong
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// Shutdown stops accepting, lets requests in progress finish (bounded by
// ctx), closes idle connections and removes the socket file.
func (s *controlServer) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for c, busy := range s.conns {
		if !busy {
			c.SetReadDeadline(time.Now()) // wakes the idle reader, which then returns
		}
	}
	s.mu.Unlock()
	s.ln.Close() // also unlinks the socket file
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		<-done
		return fmt.Errorf("control socket: %w", ctx.Err())
	}
}
