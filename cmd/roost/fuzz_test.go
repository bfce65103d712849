package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/knadh/koanf/parsers/toml/v2"
)

// FuzzLoadConfig fuzzes the config loader with a TOML file and ROOST_
// environment variables (one NAME=VALUE per line).
//
// Properties: it never panics; it either fails with an error or returns a
// config that satisfies every constraint (so `roost serve` never starts
// with a value it would have refused); and such a config round-trips:
// written back as TOML (every key, durations as strings) and loaded again
// it is the same config.
func FuzzLoadConfig(f *testing.F) {
	seeds := []struct{ file, env string }{
		{"", ""},
		{`data_dir = "/var/lib/roost"` + "\nhostname = \"mail.example.org\"\n[smtp]\nlisten = \":25\"\nmax_message_bytes = 1000\n", ""},
		{"[imap]\nidle_timeout = \"45m\"\nmax_line_length = 8000\n[pop3]\nkeep_flags = true\ncommand_timeout = \"1s\"\n", "ROOST_POP3_MAX_LINE_LENGTH=64\n"},
		{"[lmtp]\nlisten = \"unix:/run/roost/lmtp.sock\"\n[auth]\nplaintext = \"tls\"\nlogin_cache_ttl = \"0s\"\n", "ROOST_SHARDS=4\nROOST_IMAP_LISTEN=\n"},
		{"[tls]\ncert = \"c\"\nkey = \"k\"\n[autoconfig]\nsubmission_port = 465\n", "ROOST_AUTOCONFIG_HOSTNAME=mx.example.org"},
		{"[smtp]\nmax_line_length = 999\n", ""},
		{"[smtp]\ncommand_timeout = 5\n", ""},
		{"[log]\nlevel = \"loud\"\n", ""},
		{"shards = -1\n", ""},
		{"[pop3]\nmax_connections = 1.5\n", ""},
		{"[smtp.extra]\nx = 1\n", ""},
		{"hostname = \"\\u0000\"\n", "ROOST_DATA_DIR=\xff\n"},
		{"[[smtp]]\n", ""},
		{"", "ROOST_NOPE=1\nROOST_CONFIG=/nonexistent\n"},
	}
	for _, s := range seeds {
		f.Add([]byte(s.file), s.env)
	}
	dir := f.TempDir()
	path := filepath.Join(dir, "roost.toml")
	again := filepath.Join(dir, "again.toml")
	f.Fuzz(func(t *testing.T, file []byte, env string) {
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		var environ []string
		for _, l := range strings.Split(env, "\n") {
			if l != "" && !strings.HasPrefix(l, envConfigFile+"=") {
				environ = append(environ, l)
			}
		}
		cfg, err := loadConfig(path, environ)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		// Every value obeys its constraints.
		for _, fl := range configFields(cfg) {
			if err := setField(fl, rawValue(fl.value)); err != nil {
				t.Fatalf("loaded %s = %v, which the loader refuses: %v", fl.key, fl.value.Interface(), err)
			}
		}
		if err := cfg.check(); err != nil {
			t.Fatalf("loaded a config that fails its own check: %v", err)
		}

		tree := map[string]any{}
		representable := true
		for _, fl := range configFields(cfg) {
			v := rawValue(fl.value)
			if s, ok := v.(string); ok && !utf8.ValidString(s) {
				representable = false // TOML text is UTF-8; only the environment can say this
			}
			m := tree
			parts := strings.Split(fl.key, ".")
			for _, p := range parts[:len(parts)-1] {
				if m[p] == nil {
					m[p] = map[string]any{}
				}
				m = m[p].(map[string]any)
			}
			m[parts[len(parts)-1]] = v
		}
		if !representable {
			return
		}
		out, err := toml.Parser().Marshal(tree)
		if err != nil {
			t.Fatalf("cannot write the config back: %v", err)
		}
		if err := os.WriteFile(again, out, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg2, err := loadConfig(again, nil)
		if err != nil {
			t.Fatalf("the config written back does not load: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(cfg, cfg2) {
			t.Fatalf("round trip changed the config:\n got %+v\nwant %+v\n%s", *cfg2, *cfg, out)
		}
	})
}

// rawValue is a config value as TOML gives it to setField.
func rawValue(v reflect.Value) any {
	switch x := v.Interface().(type) {
	case time.Duration:
		return x.String()
	case int:
		return int64(x)
	}
	return v.Interface()
}
