package netlimit

import (
	"bufio"
	"net"
	"testing"
)

func TestLimits(t *testing.T) {
	for _, tc := range []struct {
		name         string
		opts         Options
		open         int // connections opened and kept
		wantAccepted int
		wantReason   string
	}{
		{"overall", Options{MaxConns: 2}, 3, 2, "overall"},
		{"per ip", Options{MaxConnsPerIP: 1}, 2, 1, "per-ip"},
		{"unlimited", Options{}, 5, 5, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			reasons := make(chan string, 10)
			tc.opts.Reject = func(c net.Conn, reason string) {
				c.Write([]byte("BYE " + reason + "\r\n"))
				reasons <- reason
			}
			l := Wrap(ln, tc.opts)
			defer l.Close()
			accepted := make(chan net.Conn, 10)
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					accepted <- c
				}
			}()
			var clients []net.Conn
			for i := 0; i < tc.open; i++ {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				clients = append(clients, c)
			}
			var server []net.Conn
			for i := 0; i < tc.wantAccepted; i++ {
				server = append(server, <-accepted)
			}
			if tc.wantReason != "" {
				if r := <-reasons; r != tc.wantReason {
					t.Fatalf("reason %q, want %q", r, tc.wantReason)
				}
				// The rejected client reads the protocol's refusal.
				line, _ := bufio.NewReader(clients[len(clients)-1]).ReadString('\n')
				if line != "BYE "+tc.wantReason+"\r\n" {
					t.Fatalf("rejected client read %q", line)
				}
				// Closing an accepted connection frees its slot.
				server[0].Close()
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				<-accepted
			}
			if got := l.Open(); got != tc.wantAccepted {
				t.Fatalf("open = %d, want %d", got, tc.wantAccepted)
			}
		})
	}
}

func TestLimit(t *testing.T) {
	for _, tc := range []struct{ in, def, want int }{{0, 50, 50}, {-1, 50, 0}, {7, 50, 7}} {
		if got := Limit(tc.in, tc.def); got != tc.want {
			t.Errorf("Limit(%d, %d) = %d, want %d", tc.in, tc.def, got, tc.want)
		}
	}
}

func TestPreAuth(t *testing.T) {
	p := NewPreAuth(2)
	evicted := make(chan int, 10)
	admit := func(i int) *Ticket { return p.Admit(func() { evicted <- i }) }
	t1, t2 := admit(1), admit(2)
	if p.Waiting() != 2 {
		t.Fatalf("waiting %d, want 2", p.Waiting())
	}
	t3 := admit(3) // over the cap: the oldest goes
	if got := <-evicted; got != 1 {
		t.Fatalf("evicted %d, want 1 (the oldest)", got)
	}
	if t1.Done() {
		t.Error("Done of an evicted ticket reported true")
	}
	if !t2.Done() || !t2.Done() {
		t.Error("Done of a waiting ticket (twice) reported false")
	}
	// A logged-in connection no longer counts: two more fit beside t3.
	t4 := admit(4)
	if p.Waiting() != 2 || len(evicted) != 0 {
		t.Fatalf("waiting %d, %d evicted; want 2, none", p.Waiting(), len(evicted))
	}
	admit(5)
	if got := <-evicted; got != 3 {
		t.Fatalf("evicted %d, want 3", got)
	}
	t3.Done()
	t4.Done()
	if p.Evicted() != 2 || p.Waiting() != 1 {
		t.Errorf("Evicted %d, Waiting %d; want 2, 1", p.Evicted(), p.Waiting())
	}
	var none *PreAuth = NewPreAuth(0)
	if tk := none.Admit(func() { t.Error("evicted without a cap") }); !tk.Done() || none.Waiting() != 0 {
		t.Error("a nil PreAuth is not a no-op")
	}
}
