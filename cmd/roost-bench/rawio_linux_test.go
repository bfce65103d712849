package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// rawPair returns both ends of a loopback TCP connection, the client's
// wrapped by fastIO.
func rawPair(t *testing.T) (client net.Conn, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	client = fastIO(conn)
	if _, ok := client.(*rawIOConn); !ok {
		t.Fatalf("fastIO gave %T, want *rawIOConn", client)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestRawIOConnTransfers sends more than the socket buffers hold both ways,
// so that writes must wait for room and reads for data.
func TestRawIOConnTransfers(t *testing.T) {
	client, server := rawPair(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	echoed := make(chan error, 1)
	go func() {
		// The server echoes everything back.
		_, err := io.CopyN(server, server, int64(len(data)))
		echoed <- err
	}()
	wrote := make(chan error, 1)
	go func() {
		n, err := client.Write(data)
		if err == nil && n != len(data) {
			err = errors.New("short write")
		}
		wrote <- err
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := <-echoed; err != nil {
		t.Fatalf("echo: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the data came back changed")
	}
}

func TestRawIOConnDeadlineEOFAndClose(t *testing.T) {
	client, server := rawPair(t)

	client.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := client.Read(make([]byte, 10))
	var oe *net.OpError
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("read past the deadline: %v, want a read OpError wrapping os.ErrDeadlineExceeded", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("read past the deadline: %v is not a net.Error timeout", err)
	}
	client.SetReadDeadline(time.Time{})

	if _, err := server.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	server.Close()
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "hello" {
		t.Fatalf("ReadAll = %q, %v; want hello and EOF", got, err)
	}

	// Close from another goroutine unblocks a reader, as context
	// cancellation in dialMail relies on.
	client2, _ := rawPair(t)
	done := make(chan error, 1)
	go func() {
		_, err := client2.Read(make([]byte, 1))
		done <- err
	}()
	client2.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a closed connection: %v, want net.ErrClosed", err)
	}
	if _, err := client2.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed connection: %v, want net.ErrClosed", err)
	}
}
