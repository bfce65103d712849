package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfig(t *testing.T) {
	full := `
data_dir = "/var/lib/roost"
hostname = "mail.example.org"
[log]
level = "debug"
format = "json"
[smtp]
listen = ":25"
max_message_bytes = 1000
command_timeout = "1m"
[lmtp]
listen = "unix:/run/roost/lmtp.sock"
max_recipients = 7
[imap]
listen = ""
tls_listen = "0.0.0.0:993"
auth_failure_delay = "0s"
max_line_length = 1048576
max_bad_commands = 5
compress = false
command_timeout = "10s"
[pop3]
keep_flags = true
[tls]
cert = "/etc/roost/cert.pem"
key = "/etc/roost/key.pem"
[auth]
plaintext = "tls"
login_cache_ttl = "0s"
[autoconfig]
submission_host = "smtp.example.org"
submission_port = 465
`
	fullFile := writeFile(t, "full.toml", full)
	otherFile := writeFile(t, "other.toml", `hostname = "other.example.org"`)

	tests := []struct {
		name    string
		path    string   // --config
		env     []string // environment
		file    string   // written to a temp file and passed as --config when path is ""
		check   func(t *testing.T, c *Config)
		wantErr string // substring of the error; "" means success
	}{
		{
			name: "defaults",
			check: func(t *testing.T, c *Config) {
				want := defaultConfig()
				want.Hostname, _ = os.Hostname()
				want.Autoconfig.Hostname = want.Hostname
				wd, _ := os.Getwd()
				want.DataDir = filepath.Join(wd, "roost-data") // made absolute
				if *c != want {
					t.Errorf("got %+v\nwant %+v", *c, want)
				}
				if c.DataDir != want.DataDir || c.SMTP.Listen != "127.0.0.1:2525" || c.LMTP.Listen != "127.0.0.1:2424" ||
					c.IMAP.Listen != "127.0.0.1:1143" || c.IMAP.TLSListen != "127.0.0.1:1993" ||
					c.POP3.Listen != "127.0.0.1:1110" || c.POP3.TLSListen != "127.0.0.1:1995" || c.HTTP.Listen != "127.0.0.1:8080" {
					t.Errorf("default listeners wrong: %+v", *c)
				}
				if c.LMTP.MaxMessageBytes != 50<<20 || c.Auth.Plaintext != "tls-or-loopback" || c.IMAP.IdleTimeout != 30*time.Minute {
					t.Errorf("defaults wrong: %+v", *c)
				}
			},
		},
		{
			name: "file",
			path: fullFile,
			check: func(t *testing.T, c *Config) {
				if c.DataDir != "/var/lib/roost" || c.Hostname != "mail.example.org" || c.Autoconfig.Hostname != "mail.example.org" {
					t.Errorf("top level: %+v", *c)
				}
				if c.Log != (LogConfig{Level: "debug", Format: "json"}) {
					t.Errorf("log: %+v", c.Log)
				}
				if c.SMTP.Listen != ":25" || c.SMTP.MaxMessageBytes != 1000 || c.SMTP.CommandTimeout != time.Minute || c.SMTP.DataTimeout != 5*time.Minute {
					t.Errorf("smtp: %+v", c.SMTP)
				}
				// LMTP's size limit follows SMTP's unless set.
				if c.LMTP.Listen != "unix:/run/roost/lmtp.sock" || c.LMTP.MaxRecipients != 7 || c.LMTP.MaxMessageBytes != 1000 {
					t.Errorf("lmtp: %+v", c.LMTP)
				}
				if c.IMAP.Listen != "" || c.IMAP.TLSListen != "0.0.0.0:993" || c.IMAP.AuthFailureDelay != 0 ||
					c.IMAP.MaxLineLength != 1<<20 || c.IMAP.MaxBadCommands != 5 || c.IMAP.Compress || c.IMAP.CommandTimeout != 10*time.Second {
					t.Errorf("imap: %+v", c.IMAP)
				}
				if !c.POP3.KeepFlags || c.TLS.Cert != "/etc/roost/cert.pem" || c.Auth.Plaintext != "tls" || c.Auth.LoginCacheTTL != 0 {
					t.Errorf("pop3/tls/auth: %+v %+v %+v", c.POP3, c.TLS, c.Auth)
				}
				if c.Autoconfig.SubmissionHost != "smtp.example.org" || c.Autoconfig.SubmissionPort != 465 || c.Autoconfig.IMAPSPort != 993 {
					t.Errorf("autoconfig: %+v", c.Autoconfig)
				}
			},
		},
		{
			name: "env overrides file",
			path: fullFile,
			env: []string{
				"ROOST_DATA_DIR=/srv/roost", "ROOST_IMAP_TLS_LISTEN=", "ROOST_SMTP_MAX_MESSAGE_BYTES=2000",
				"ROOST_POP3_KEEP_FLAGS=false", "ROOST_AUTH_FAILURE_WINDOW=1h", "ROOST_AUTOCONFIG_IMAPS_PORT=10993",
				"ROOST_LMTP_MAX_MESSAGE_BYTES=3000", "ROOST_LOG_LEVEL=warn",
			},
			check: func(t *testing.T, c *Config) {
				if c.DataDir != "/srv/roost" || c.IMAP.TLSListen != "" || c.SMTP.MaxMessageBytes != 2000 || c.POP3.KeepFlags ||
					c.Auth.FailureWindow != time.Hour || c.Autoconfig.IMAPSPort != 10993 || c.LMTP.MaxMessageBytes != 3000 || c.Log.Level != "warn" {
					t.Errorf("%+v", *c)
				}
				if c.Hostname != "mail.example.org" {
					t.Errorf("hostname from the file lost: %q", c.Hostname)
				}
			},
		},
		{
			name: "env alone, lmtp size follows smtp",
			env:  []string{"ROOST_SMTP_MAX_MESSAGE_BYTES=12345", "ROOST_HOSTNAME=h.example", "ROOST_AUTOCONFIG_HOSTNAME=pub.example"},
			check: func(t *testing.T, c *Config) {
				if c.LMTP.MaxMessageBytes != 12345 || c.Hostname != "h.example" || c.Autoconfig.Hostname != "pub.example" {
					t.Errorf("%+v", *c)
				}
			},
		},
		{
			name: "ROOST_CONFIG names the file",
			env:  []string{"ROOST_CONFIG=" + otherFile, "ROOST_REQUIRE_INTEROP=1"},
			check: func(t *testing.T, c *Config) {
				if c.Hostname != "other.example.org" {
					t.Errorf("hostname %q", c.Hostname)
				}
			},
		},
		{
			name: "--config wins over ROOST_CONFIG",
			path: fullFile,
			env:  []string{"ROOST_CONFIG=" + otherFile},
			check: func(t *testing.T, c *Config) {
				if c.Hostname != "mail.example.org" {
					t.Errorf("hostname %q", c.Hostname)
				}
			},
		},
		{name: "missing file", path: "/nonexistent/roost.toml", wantErr: "/nonexistent/roost.toml"},
		{name: "bad toml", file: "data_dir = \n", wantErr: "config file"},
		{name: "unknown top-level key", file: `datadir = "x"`, wantErr: `unknown key "datadir"`},
		{name: "unknown key in section", file: "[imap]\nlisten_tls = \"x:1\"", wantErr: `unknown key "imap.listen_tls"`},
		{name: "unknown section", file: "[sending]\nlisten = \":587\"", wantErr: `unknown key "sending.listen"`},
		{name: "section as value", file: `smtp = "x"`, wantErr: `unknown key "smtp"`},
		{name: "unknown env", env: []string{"ROOST_IMAP_LISTEN_TLS=x"}, wantErr: "ROOST_IMAP_LISTEN_TLS"},
		{name: "unknown env section", env: []string{"ROOST_FOO=1"}, wantErr: "ROOST_FOO"},
		{name: "lower-case env", env: []string{"ROOST_imap_listen=:1"}, wantErr: "ROOST_imap_listen"},
		{name: "bad duration", file: "[smtp]\ncommand_timeout = \"5 minutes\"", wantErr: "smtp.command_timeout"},
		{name: "number for duration", file: "[imap]\nidle_timeout = 30", wantErr: "imap.idle_timeout"},
		{name: "negative duration", file: "[auth]\nlockout = \"-5m\"", wantErr: "auth.lockout: must not be negative"},
		{name: "zero duration", file: "[pop3]\nidle_timeout = \"0s\"", wantErr: "pop3.idle_timeout: must be greater than zero"},
		{name: "negative size", file: "[smtp]\nmax_message_bytes = -1", wantErr: "smtp.max_message_bytes: must not be negative"},
		{name: "negative shards", env: []string{"ROOST_SHARDS=-2"}, wantErr: "shards"},
		{name: "shards from env", env: []string{"ROOST_SHARDS=4"}, check: func(t *testing.T, c *Config) {
			if c.Shards != 4 {
				t.Errorf("shards = %d", c.Shards)
			}
		}},
		{name: "zero size", file: "[imap]\nappend_limit = 0", wantErr: "imap.append_limit"},
		{name: "group commit delay off", file: "[store]\ngroup_commit_delay = \"0s\"", check: func(t *testing.T, c *Config) {
			if c.Store.GroupCommitDelay != 0 || groupCommitDelay(c.Store.GroupCommitDelay) >= 0 {
				t.Errorf("group_commit_delay 0s: %v, for the store %v (want negative: never)", c.Store.GroupCommitDelay, groupCommitDelay(c.Store.GroupCommitDelay))
			}
		}},
		{name: "group commit delay", file: "[store]\ngroup_commit_delay = \"500us\"", check: func(t *testing.T, c *Config) {
			if c.Store.GroupCommitDelay != 500*time.Microsecond || groupCommitDelay(c.Store.GroupCommitDelay) != 500*time.Microsecond {
				t.Errorf("group_commit_delay 500us: %v", c.Store.GroupCommitDelay)
			}
		}},
		{name: "group commit delay over 1s", file: "[store]\ngroup_commit_delay = \"2s\"", wantErr: "store.group_commit_delay: must be at most"},
		{name: "IMAP line length above 1 MiB", file: "[imap]\nmax_line_length = 1048577", wantErr: "imap.max_line_length: must be at most 1048576"},
		{name: "IMAP line length below RFC 9051", file: "[imap]\nmax_line_length = 7999", wantErr: "imap.max_line_length: must be at least 8000"},
		{name: "zero bad commands", file: "[imap]\nmax_bad_commands = 0", wantErr: "imap.max_bad_commands"},
		{name: "zero command timeout", file: "[imap]\ncommand_timeout = \"0s\"", wantErr: "imap.command_timeout"},
		{name: "line length below RFC 5321", file: "[lmtp]\nmax_line_length = 999", wantErr: "lmtp.max_line_length: must be at least 1000"},
		{name: "string for number", file: "[smtp]\nmax_recipients = \"many\"", wantErr: "smtp.max_recipients"},
		{name: "fraction", file: "[smtp]\nmax_recipients = 1.5", wantErr: "smtp.max_recipients"},
		{name: "number for string", file: "hostname = 42", wantErr: "hostname"},
		{name: "bad bool", env: []string{"ROOST_POP3_KEEP_FLAGS=maybe"}, wantErr: "ROOST_POP3_KEEP_FLAGS"},
		{name: "bad env number", env: []string{"ROOST_SMTP_MAX_MESSAGE_BYTES=50MB"}, wantErr: "ROOST_SMTP_MAX_MESSAGE_BYTES (smtp.max_message_bytes)"},
		{name: "bad env duration", env: []string{"ROOST_IMAP_LOGIN_TIMEOUT=soon"}, wantErr: "ROOST_IMAP_LOGIN_TIMEOUT"},
		{name: "listen without port", file: "[imap]\nlisten = \"127.0.0.1\"", wantErr: "imap.listen"},
		{name: "listen bad port", file: "[pop3]\ntls_listen = \"127.0.0.1:pop3s\"", wantErr: "pop3.tls_listen"},
		{name: "listen port too big", env: []string{"ROOST_HTTP_LISTEN=:70000"}, wantErr: "ROOST_HTTP_LISTEN"},
		{name: "unix only for lmtp", file: "[imap]\nlisten = \"unix:/tmp/imap.sock\"", wantErr: "imap.listen"},
		{name: "unix without path", file: "[lmtp]\nlisten = \"unix:\"", wantErr: "lmtp.listen"},
		{name: "unknown plaintext policy", file: "[auth]\nplaintext = \"never\"", wantErr: "auth.plaintext"},
		{name: "unknown log format", env: []string{"ROOST_LOG_FORMAT=xml"}, wantErr: "ROOST_LOG_FORMAT"},
		{name: "port out of range", file: "[autoconfig]\nimaps_port = 99999", wantErr: "autoconfig.imaps_port"},
		{name: "zero port", file: "[autoconfig]\npop3_port = 0", wantErr: "autoconfig.pop3_port"},
		{name: "empty data_dir", env: []string{"ROOST_DATA_DIR="}, wantErr: "ROOST_DATA_DIR"},
		{name: "cert without key", file: "[tls]\ncert = \"/c.pem\"", wantErr: "tls.key"},
		{name: "zero submission port is fine", file: "[autoconfig]\nsubmission_port = 0", check: func(t *testing.T, c *Config) {}},
		{name: "outbound settings", file: "[smtp]\nmax_message_bytes = 5000\n[outbound]\nrelay = \"smtp.isp.test:587\"\nrelay_username = \"u\"\nrelay_password = \"p\"\nrequire_tls = true\ndns_server = \"127.0.0.1:5353\"\nretry_schedule = \"1m,2m\"",
			check: func(t *testing.T, c *Config) {
				d, err := c.Outbound.retrySchedule()
				if err != nil || len(d) != 2 || d[1] != 2*time.Minute || !c.Outbound.RequireTLS || c.Outbound.Relay != "smtp.isp.test:587" {
					t.Errorf("outbound %+v, schedule %v %v", c.Outbound, d, err)
				}
				if c.Submission.MaxMessageBytes != 5000 {
					t.Errorf("submission max_message_bytes %d, want smtp's", c.Submission.MaxMessageBytes)
				}
			}},
		{name: "bad retry schedule", file: "[outbound]\nretry_schedule = \"5m, soon\"", wantErr: "outbound.retry_schedule"},
		{name: "empty retry schedule", env: []string{"ROOST_OUTBOUND_RETRY_SCHEDULE="}, wantErr: "ROOST_OUTBOUND_RETRY_SCHEDULE"},
		{name: "relay without port", file: "[outbound]\nrelay = \"smtp.isp.test\"", wantErr: "outbound.relay"},
		{name: "relay password alone", file: "[outbound]\nrelay = \"a:25\"\nrelay_password = \"p\"", wantErr: "relay_username"},
		{name: "relay credentials without relay", file: "[outbound]\nrelay_username = \"u\"\nrelay_password = \"p\"", wantErr: "outbound.relay"},
		{name: "dns server by name", file: "[outbound]\ndns_server = \"dns.google\"", wantErr: "outbound.dns_server"},
		{name: "submission listen", env: []string{"ROOST_SUBMISSION_LISTEN=:587", "ROOST_SUBMISSION_TLS_LISTEN="}, check: func(t *testing.T, c *Config) {
			if c.Submission.Listen != ":587" || c.Submission.TLSListen != "" {
				t.Errorf("submission %+v", c.Submission)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if tt.file != "" {
				path = writeFile(t, "roost.toml", tt.file)
			}
			cfg, err := loadConfig(path, tt.env)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("no error; want one containing %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %q does not contain %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cfg)
		})
	}
}

// TestEnvNames checks the documented mapping for every key, both ways.
func TestEnvNames(t *testing.T) {
	var cfg Config
	sections := configSections()
	seen := make(map[string]string)
	for _, f := range configFields(&cfg) {
		name := envName(f.key)
		if got := envKey(name, sections); got != f.key {
			t.Errorf("%s: %s maps back to %s", f.key, name, got)
		}
		if other, dup := seen[name]; dup {
			t.Errorf("%s and %s share the variable %s", f.key, other, name)
		}
		seen[name] = f.key
	}
	for key, name := range map[string]string{
		"data_dir": "ROOST_DATA_DIR", "imap.tls_listen": "ROOST_IMAP_TLS_LISTEN",
		"smtp.max_message_bytes": "ROOST_SMTP_MAX_MESSAGE_BYTES", "autoconfig.imaps_port": "ROOST_AUTOCONFIG_IMAPS_PORT",
	} {
		if got := envName(key); got != name {
			t.Errorf("envName(%s) = %s, want %s", key, got, name)
		}
	}
}

// TestREADMEConfigReference checks that the README's example config names
// every key with its default and loads as it stands.
func TestREADMEConfigReference(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)## Configuration.*?```toml\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no ```toml block under ## Configuration")
	}
	block := string(m[1])
	cfg, err := loadConfig(writeFile(t, "readme.toml", block), nil)
	if err != nil {
		t.Fatalf("the README's config does not load: %v", err)
	}
	want := defaultConfig()
	want.Hostname, want.Autoconfig.Hostname = cfg.Hostname, cfg.Autoconfig.Hostname
	wd, _ := os.Getwd()
	want.DataDir = filepath.Join(wd, "roost-data")
	if *cfg != want {
		t.Errorf("the README's config differs from the defaults:\n got %+v\nwant %+v", *cfg, want)
	}
	// Every key is written out (hostname and autoconfig.hostname may be
	// commented out, as their default is computed).
	section := ""
	keys := make(map[string]bool)
	for _, line := range strings.Split(block, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
		if strings.HasPrefix(line, "[") {
			name, _, _ := strings.Cut(line[1:], "]")
			section = name + "."
			continue
		}
		if k, _, ok := strings.Cut(line, "="); ok {
			if k = strings.TrimSpace(k); k != "" && !strings.ContainsAny(k, " \t") {
				keys[section+k] = true
			}
		}
	}
	for _, f := range configFields(&want) {
		if !keys[f.key] {
			t.Errorf("README config reference lacks %s", f.key)
		}
	}
}
