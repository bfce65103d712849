package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, cfg *config)
	}{
		{"deliver defaults", []string{"deliver"}, func(t *testing.T, cfg *config) {
			if cfg.lmtp != "127.0.0.1:2424" || cfg.useSMTP || cfg.concurrency != 8 || cfg.n != 100 ||
				cfg.duration != 30*time.Second || cfg.count != 0 || cfg.size.kind != sizeMixed ||
				cfg.users != "user%d@example.org" || cfg.seed != 1 || cfg.json || cfg.rcpts != 1 {
				t.Errorf("defaults = %+v", cfg)
			}
		}},
		{"issue example", []string{"deliver", "-lmtp", "127.0.0.1:2424", "-users", "user%d@example.org", "-n", "100",
			"-c", "16", "-duration", "30s", "-json"}, func(t *testing.T, cfg *config) {
			if cfg.concurrency != 16 || !cfg.json || cfg.useSMTP {
				t.Errorf("cfg = %+v", cfg)
			}
		}},
		{"smtp when only -smtp", []string{"deliver", "-smtp", "127.0.0.1:25"}, func(t *testing.T, cfg *config) {
			if !cfg.useSMTP || cfg.smtp != "127.0.0.1:25" {
				t.Errorf("useSMTP = %v, smtp = %q", cfg.useSMTP, cfg.smtp)
			}
		}},
		{"lmtp wins over smtp", []string{"deliver", "-smtp", "127.0.0.1:25", "-lmtp", "127.0.0.1:24"}, func(t *testing.T, cfg *config) {
			if cfg.useSMTP {
				t.Error("useSMTP with -lmtp given")
			}
		}},
		{"count alone has no time limit", []string{"deliver", "-count", "500"}, func(t *testing.T, cfg *config) {
			if cfg.count != 500 || cfg.duration != 0 {
				t.Errorf("count %d duration %v", cfg.count, cfg.duration)
			}
		}},
		{"count and duration: whichever first", []string{"imap", "-count", "5", "-duration", "2s"}, func(t *testing.T, cfg *config) {
			if cfg.count != 5 || cfg.duration != 2*time.Second {
				t.Errorf("count %d duration %v", cfg.count, cfg.duration)
			}
		}},
		{"imap rate and idle", []string{"imap", "-rate", "12.5", "-idle", "0"}, func(t *testing.T, cfg *config) {
			if cfg.rate != 12.5 || cfg.idleFor != 0 {
				t.Errorf("rate %v idle %v", cfg.rate, cfg.idleFor)
			}
		}},
		{"idle defaults", []string{"idle", "-pidof", "dovecot, imap,auth"}, func(t *testing.T, cfg *config) {
			if cfg.concurrency != 100 || cfg.duration != 10*time.Second || !slices.Equal(cfg.pidof, []string{"dovecot", "imap", "auth"}) {
				t.Errorf("cfg = %+v", cfg)
			}
		}},
		{"idle pids", []string{"idle", "-pid", "12,34", "-c", "5"}, func(t *testing.T, cfg *config) {
			if !slices.Equal(cfg.pids, []int{12, 34}) || cfg.concurrency != 5 {
				t.Errorf("pids %v c %d", cfg.pids, cfg.concurrency)
			}
		}},
		{"bigbox defaults", []string{"bigbox"}, func(t *testing.T, cfg *config) {
			if cfg.concurrency != 32 || cfg.messages != 100000 || cfg.size != (sizeDist{kind: sizeFixed, min: 2048, max: 2048}) || cfg.probes != 5 {
				t.Errorf("cfg = %+v", cfg)
			}
		}},
		{"bigbox size override", []string{"bigbox", "-messages", "2000", "-size", "4k"}, func(t *testing.T, cfg *config) {
			if cfg.messages != 2000 || cfg.size.min != 4096 {
				t.Errorf("cfg = %+v", cfg)
			}
		}},
		{"pop3 dele", []string{"pop3", "-dele", "-pop3", "[::1]:1110"}, func(t *testing.T, cfg *config) {
			if !cfg.dele || cfg.pop3 != "[::1]:1110" {
				t.Errorf("cfg = %+v", cfg)
			}
		}},
		{"smoke defaults", []string{"smoke"}, func(t *testing.T, cfg *config) {
			if cfg.concurrency != 2 || cfg.duration != time.Minute {
				t.Errorf("cfg = %+v", cfg)
			}
		}},
		{"escaped percent in pattern", []string{"deliver", "-users", "100%%-u%d@example.org"}, func(t *testing.T, cfg *config) {
			if got := cfg.user(3); got != "100%-u3@example.org" {
				t.Errorf("user(3) = %q", got)
			}
		}},
		{"size range", []string{"deliver", "-size", "2k-20k"}, func(t *testing.T, cfg *config) {
			if cfg.size != (sizeDist{kind: sizeRange, min: 2048, max: 20480}) {
				t.Errorf("size = %+v", cfg.size)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfig(tt.args, io.Discard)
			if err != nil {
				t.Fatalf("parseConfig(%q): %v", tt.args, err)
			}
			tt.check(t, cfg)
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"no scenario", nil},
		{"unknown scenario", []string{"flood"}},
		{"flag before scenario", []string{"-c", "3", "deliver"}},
		{"unknown flag", []string{"deliver", "-bogus"}},
		{"extra argument", []string{"deliver", "more"}},
		{"pattern without %d", []string{"deliver", "-users", "alice@example.org"}},
		{"pattern with two %d", []string{"deliver", "-users", "u%d-%d"}},
		{"pattern with %s", []string{"deliver", "-users", "u%s"}},
		{"zero accounts", []string{"deliver", "-n", "0"}},
		{"zero concurrency", []string{"imap", "-c", "0"}},
		{"negative count", []string{"deliver", "-count", "-1"}},
		{"no bound at all", []string{"deliver", "-duration", "0"}},
		{"bad size", []string{"deliver", "-size", "huge"}},
		{"bad pid", []string{"idle", "-pid", "1,x"}},
		{"negative rate", []string{"imap", "-rate", "-1"}},
		{"too many rcpts", []string{"deliver", "-n", "2", "-rcpts", "3"}},
		{"bad address", []string{"deliver", "-lmtp", "localhost"}},
		{"bigbox needs two accounts", []string{"bigbox", "-n", "1"}},
		{"zero timeout", []string{"pop3", "-timeout", "0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(tt.args, io.Discard)
			var usage usageError
			if !errors.As(err, &usage) {
				t.Errorf("parseConfig(%q) = %v, want a usageError", tt.args, err)
			}
		})
	}
}

func TestParseConfigHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"deliver", "-h"}} {
		if _, err := parseConfig(args, io.Discard); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("parseConfig(%q) = %v, want flag.ErrHelp", args, err)
		}
	}
}

// TestCPUProfileFlag: -cpuprofile writes roost-bench's own CPU profile and
// stays out of -h (it is for working on roost-bench, not for measuring).
func TestCPUProfileFlag(t *testing.T) {
	var help bytes.Buffer
	if _, err := parseConfig([]string{"deliver", "-h"}, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("deliver -h: %v", err)
	}
	if strings.Contains(help.String(), "cpuprofile") || !strings.Contains(help.String(), "-segmented") {
		t.Errorf("deliver -h lists -cpuprofile or misses -segmented:\n%s", help.String())
	}

	srv := startFakeMTA(t, true, true)
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"deliver", "-lmtp", srv.ln.Addr().String(), "-n", "2", "-c", "1",
		"-count", "5", "-size", "1k", "-q", "-cpuprofile", path}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A pprof profile is gzip-compressed protocol buffers.
	if len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
		t.Errorf("%s is not a gzip-compressed profile (%d bytes)", path, len(data))
	}

	err = run(context.Background(), []string{"deliver", "-count", "1", "-cpuprofile", filepath.Join(path, "no", "such")}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "-cpuprofile") {
		t.Errorf("run with an unwritable profile = %v, want a -cpuprofile error", err)
	}
}
