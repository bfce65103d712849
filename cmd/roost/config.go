package main

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/roostmail/roost/backend"
	"github.com/roostmail/roost/store"
)

// envPrefix starts every environment variable that sets a config key:
// ROOST_ + the key path upper-cased with "." replaced by "_"
// (imap.tls_listen → ROOST_IMAP_TLS_LISTEN).
const envPrefix = "ROOST_"

// envConfigFile names the config file when --config is not given.
const envConfigFile = "ROOST_CONFIG"

// envIgnored are ROOST_ variables that are not config keys and are
// therefore not "unknown keys": ROOST_CONFIG itself, and the switch CI sets
// for interop tests (internal/testutil.RequireInteropEnv), which a test that
// runs `roost serve` passes on to it.
var envIgnored = []string{envConfigFile, "ROOST_REQUIRE_INTEROP"}

// Config is Roost's whole configuration. The koanf tags are the key names,
// which are contracts (README "Configuration"). Constraints per field:
//
//	min:"N"   the least value allowed (default 1: numbers and durations must be > 0)
//	max:"N"   the largest value allowed
//	port:"1"  a TCP port number (0 allowed with min:"0")
//	listen:"tcp"  a listen address, "" disables (lmtp.listen also takes unix:/path)
//	oneof:"a,b"  one of the given words
type Config struct {
	DataDir  string `koanf:"data_dir"`
	Hostname string `koanf:"hostname" min:"0"`
	// Shards is how many mail files the accounts share; 0: one file per
	// account. Fixed once accounts exist (store.Options.Shards).
	Shards int `koanf:"shards" min:"0"`

	Store      StoreConfig      `koanf:"store"`
	Log        LogConfig        `koanf:"log"`
	SMTP       SMTPConfig       `koanf:"smtp"`
	LMTP       SMTPConfig       `koanf:"lmtp"`
	Submission SubmissionConfig `koanf:"submission"`
	Outbound   OutboundConfig   `koanf:"outbound"`
	IMAP       IMAPConfig       `koanf:"imap"`
	POP3       POP3Config       `koanf:"pop3"`
	HTTP       HTTPConfig       `koanf:"http"`
	Metrics    MetricsConfig    `koanf:"metrics"`
	TLS        TLSConfig        `koanf:"tls"`
	Auth       AuthConfig       `koanf:"auth"`
	Autoconfig AutoconfigConfig `koanf:"autoconfig"`
	Accounts   AccountsConfig   `koanf:"accounts"`
	Retention  RetentionConfig  `koanf:"retention"`
}

// AccountsConfig is [accounts].
type AccountsConfig struct {
	// DefaultQuota is the quota in bytes of accounts without one of their
	// own (roost user quota); 0: none.
	DefaultQuota int64 `koanf:"default_quota" min:"0"`
	// DefaultQuotaMessages is the same for the number of messages.
	DefaultQuotaMessages int64 `koanf:"default_quota_messages" min:"0"`
	// OverQuota is how SMTP and LMTP refuse a full mailbox: "defer"
	// (452 4.2.2, the sender retries) or "reject" (552 5.2.2, it bounces).
	OverQuota string `koanf:"over_quota" oneof:"defer,reject"`
}

// RetentionConfig is [retention]: how long messages stay in the mailboxes
// of each special use before they are expunged; "0s" keeps them.
type RetentionConfig struct {
	Trash    time.Duration `koanf:"trash" min:"0"`
	Junk     time.Duration `koanf:"junk" min:"0"`
	Sent     time.Duration `koanf:"sent" min:"0"`
	Drafts   time.Duration `koanf:"drafts" min:"0"`
	Archive  time.Duration `koanf:"archive" min:"0"`
	Interval time.Duration `koanf:"interval"`
}

// policy maps the config onto special-use attributes.
func (r RetentionConfig) policy() backend.RetentionPolicy {
	p := backend.RetentionPolicy{}
	for use, d := range map[string]time.Duration{`\Trash`: r.Trash, `\Junk`: r.Junk, `\Sent`: r.Sent,
		`\Drafts`: r.Drafts, `\Archive`: r.Archive} {
		if d > 0 {
			p[use] = d
		}
	}
	return p
}

// StoreConfig is [store]: the upkeep of the mail files (store.Options).
type StoreConfig struct {
	TombstoneRetention time.Duration `koanf:"tombstone_retention"`
	IdleClose          time.Duration `koanf:"idle_close"`
	MaxOpenFiles       int           `koanf:"max_open_files"`
	// GroupCommitDelay: how long a journal sync may wait for deliveries
	// under way to share it (store.Options.GroupCommitDelay); 0: never.
	GroupCommitDelay time.Duration `koanf:"group_commit_delay" min:"0" max:"1000000000"`
}

// LogConfig is [log].
type LogConfig struct {
	Level  string `koanf:"level" oneof:"debug,info,warn,error"`
	Format string `koanf:"format" oneof:"text,json"`
}

// SMTPConfig is [smtp] (the MX) and [lmtp] (delivery from a local MTA).
type SMTPConfig struct {
	Listen              string        `koanf:"listen" listen:"tcp"`
	MaxMessageBytes     int64         `koanf:"max_message_bytes"`
	MaxRecipients       int           `koanf:"max_recipients"`
	MaxLineLength       int           `koanf:"max_line_length" min:"1000"` // RFC 5321 §4.5.3.1.6
	CommandTimeout      time.Duration `koanf:"command_timeout"`
	DataTimeout         time.Duration `koanf:"data_timeout"`
	MaxConnections      int           `koanf:"max_connections"`
	MaxConnectionsPerIP int           `koanf:"max_connections_per_ip"`
	MaxUnauthenticated  int           `koanf:"max_unauthenticated" min:"0"` // 0: no cap
	MaxErrors           int           `koanf:"max_errors"`
}

// SubmissionConfig is [submission]: Roost's users send mail here (RFC 6409).
type SubmissionConfig struct {
	Listen              string        `koanf:"listen" listen:"tcp"`
	TLSListen           string        `koanf:"tls_listen" listen:"tcp"`
	MaxMessageBytes     int64         `koanf:"max_message_bytes"`
	MaxRecipients       int           `koanf:"max_recipients"`
	MaxLineLength       int           `koanf:"max_line_length" min:"1000"`
	CommandTimeout      time.Duration `koanf:"command_timeout"`
	DataTimeout         time.Duration `koanf:"data_timeout"`
	MaxConnections      int           `koanf:"max_connections"`
	MaxConnectionsPerIP int           `koanf:"max_connections_per_ip"`
	MaxUnauthenticated  int           `koanf:"max_unauthenticated" min:"0"` // 0: no cap
	MaxErrors           int           `koanf:"max_errors"`
	AuthFailureDelay    time.Duration `koanf:"auth_failure_delay" min:"0"`
}

// OutboundConfig is [outbound]: how submitted mail is sent on.
type OutboundConfig struct {
	Relay         string `koanf:"relay" min:"0"`
	RelayUsername string `koanf:"relay_username" min:"0"`
	RelayPassword string `koanf:"relay_password" min:"0"`
	RequireTLS    bool   `koanf:"require_tls"`
	DNSServer     string `koanf:"dns_server" min:"0"`
	// RetrySchedule is a comma-separated list of durations (retrySchedule).
	RetrySchedule         string        `koanf:"retry_schedule"`
	GiveUpAfter           time.Duration `koanf:"give_up_after"`
	MaxConcurrent         int           `koanf:"max_concurrent"`
	MaxConnectionsPerHost int           `koanf:"max_connections_per_host"`
	// MXPort is the port remote MX hosts are reached on: 25, except in tests.
	MXPort int `koanf:"mx_port" port:"1"`
}

// retrySchedule parses [outbound] retry_schedule.
func (c OutboundConfig) retrySchedule() ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(c.RetrySchedule, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%q is not a positive duration (want e.g. \"5m, 15m, 1h\")", strings.TrimSpace(f))
		}
		out = append(out, d)
	}
	return out, nil
}

// IMAPConfig is [imap].
type IMAPConfig struct {
	Listen                  string        `koanf:"listen" listen:"tcp"`
	TLSListen               string        `koanf:"tls_listen" listen:"tcp"`
	MaxConnections          int           `koanf:"max_connections"`
	MaxConnectionsPerIP     int           `koanf:"max_connections_per_ip"`
	MaxUnauthenticated      int           `koanf:"max_unauthenticated" min:"0"` // 0: no cap
	IdleTimeout             time.Duration `koanf:"idle_timeout"`
	LoginTimeout            time.Duration `koanf:"login_timeout"`
	AppendLimit             int64         `koanf:"append_limit"`
	MaxPendingUpdates       int           `koanf:"max_pending_updates"`
	MaxPendingNotifications int           `koanf:"max_pending_notifications"`
	MaxLineLength           int           `koanf:"max_line_length" min:"8000" max:"1048576"` // RFC 9051 §4
	AuthFailureDelay        time.Duration `koanf:"auth_failure_delay" min:"0"`
	MaxBadCommands          int           `koanf:"max_bad_commands"`
	Compress                bool          `koanf:"compress"`
	CommandTimeout          time.Duration `koanf:"command_timeout"`
	WriteTimeout            time.Duration `koanf:"write_timeout"`
}

// POP3Config is [pop3].
type POP3Config struct {
	Listen              string        `koanf:"listen" listen:"tcp"`
	TLSListen           string        `koanf:"tls_listen" listen:"tcp"`
	KeepFlags           bool          `koanf:"keep_flags"`
	MaxConnections      int           `koanf:"max_connections"`
	MaxConnectionsPerIP int           `koanf:"max_connections_per_ip"`
	MaxUnauthenticated  int           `koanf:"max_unauthenticated" min:"0"` // 0: no cap
	IdleTimeout         time.Duration `koanf:"idle_timeout"`
	CommandTimeout      time.Duration `koanf:"command_timeout"`
	MaxLineLength       int           `koanf:"max_line_length" min:"8"`
	MaxFailedLogins     int           `koanf:"max_failed_logins"`
	AuthFailureDelay    time.Duration `koanf:"auth_failure_delay" min:"0"`
}

// HTTPConfig is [http]: autoconfiguration and /healthz, the listener
// published (behind a proxy) as autoconfig.<domain>.
type HTTPConfig struct {
	Listen string `koanf:"listen" listen:"tcp"`
}

// MetricsConfig is [metrics]: /metrics (and /healthz) on a listener of
// its own, so that publishing the autoconfiguration listener does not
// publish the metrics.
type MetricsConfig struct {
	Listen string `koanf:"listen" listen:"tcp"`
}

// TLSConfig is [tls].
type TLSConfig struct {
	Cert             string        `koanf:"cert" min:"0"`
	Key              string        `koanf:"key" min:"0"`
	HandshakeTimeout time.Duration `koanf:"handshake_timeout"`
}

// AuthConfig is [auth].
type AuthConfig struct {
	Plaintext     string        `koanf:"plaintext" oneof:"tls-or-loopback,tls,always"`
	MaxFailures   int           `koanf:"max_failures"`
	FailureWindow time.Duration `koanf:"failure_window"`
	Lockout       time.Duration `koanf:"lockout"`
	LoginCacheTTL time.Duration `koanf:"login_cache_ttl" min:"0"`
	// The throttle of one (account, address) pair, and the account lock
	// (backend.AuthLimiterOptions).
	Delay                time.Duration `koanf:"delay"`
	MaxDelay             time.Duration `koanf:"max_delay"`
	AccountLockAddresses int           `koanf:"account_lock_addresses"`
	IPv6Prefix           int           `koanf:"ipv6_prefix"`
	KnownGoodTTL         time.Duration `koanf:"known_good_ttl"`
	MaxTracked           int           `koanf:"max_tracked"`
}

// AutoconfigConfig is [autoconfig]: what mail clients are told, which may
// differ from the listen addresses (NAT, port forwarding).
type AutoconfigConfig struct {
	Hostname       string `koanf:"hostname" min:"0"`
	IMAPSPort      int    `koanf:"imaps_port" port:"1"`
	IMAPPort       int    `koanf:"imap_port" port:"1"`
	POP3SPort      int    `koanf:"pop3s_port" port:"1"`
	POP3Port       int    `koanf:"pop3_port" port:"1"`
	SubmissionHost string `koanf:"submission_host" min:"0"`
	SubmissionPort int    `koanf:"submission_port" port:"1" min:"0"`
	// SubmissionsPort is the public implicit-TLS port of Roost's own
	// submission ([submission] tls_listen), announced when submission_host
	// is empty.
	SubmissionsPort int    `koanf:"submissions_port" port:"1"`
	DisplayName     string `koanf:"display_name" min:"0"`
}

// defaultConfig is what `roost serve` runs with when nothing is configured:
// data in ./roost-data, every listener on loopback on an unprivileged port.
func defaultConfig() Config {
	smtp := SMTPConfig{
		Listen:              "127.0.0.1:2525",
		MaxMessageBytes:     50 << 20,
		MaxRecipients:       100,
		MaxLineLength:       4096,
		CommandTimeout:      5 * time.Minute,
		DataTimeout:         5 * time.Minute,
		MaxConnections:      1000,
		MaxConnectionsPerIP: 20,
		MaxUnauthenticated:  500,
		MaxErrors:           10,
	}
	lmtp := smtp
	lmtp.Listen = "127.0.0.1:2424"
	submission := SubmissionConfig{
		Listen:              "127.0.0.1:1587",
		TLSListen:           "127.0.0.1:1465",
		MaxMessageBytes:     smtp.MaxMessageBytes,
		MaxRecipients:       smtp.MaxRecipients,
		MaxLineLength:       smtp.MaxLineLength,
		CommandTimeout:      smtp.CommandTimeout,
		DataTimeout:         smtp.DataTimeout,
		MaxConnections:      smtp.MaxConnections,
		MaxConnectionsPerIP: smtp.MaxConnectionsPerIP,
		MaxUnauthenticated:  smtp.MaxUnauthenticated,
		MaxErrors:           smtp.MaxErrors,
		AuthFailureDelay:    2 * time.Second,
	}
	return Config{
		DataDir: "./roost-data",
		Store: StoreConfig{
			TombstoneRetention: store.DefaultTombstoneRetention,
			IdleClose:          store.DefaultIdleClose,
			MaxOpenFiles:       store.DefaultMaxOpenFiles,
			GroupCommitDelay:   store.DefaultGroupCommitDelay,
		},
		Log:        LogConfig{Level: "info", Format: "text"},
		SMTP:       smtp,
		LMTP:       lmtp,
		Submission: submission,
		Outbound: OutboundConfig{
			RetrySchedule:         "5m, 15m, 30m, 1h, 2h, 4h, 8h",
			GiveUpAfter:           5 * 24 * time.Hour,
			MaxConcurrent:         20,
			MaxConnectionsPerHost: 4,
			MXPort:                25,
		},
		IMAP: IMAPConfig{
			Listen:                  "127.0.0.1:1143",
			TLSListen:               "127.0.0.1:1993",
			MaxConnections:          1000,
			MaxConnectionsPerIP:     50,
			MaxUnauthenticated:      500,
			IdleTimeout:             30 * time.Minute,
			LoginTimeout:            60 * time.Second,
			AppendLimit:             50 << 20,
			MaxPendingUpdates:       10000,
			MaxPendingNotifications: 1000,
			MaxLineLength:           65536,
			AuthFailureDelay:        2 * time.Second,
			MaxBadCommands:          20,
			Compress:                true,
			CommandTimeout:          60 * time.Second,
			WriteTimeout:            5 * time.Minute,
		},
		POP3: POP3Config{
			Listen:              "127.0.0.1:1110",
			TLSListen:           "127.0.0.1:1995",
			MaxConnections:      1000,
			MaxConnectionsPerIP: 20,
			MaxUnauthenticated:  500,
			IdleTimeout:         10 * time.Minute,
			CommandTimeout:      60 * time.Second,
			MaxLineLength:       255,
			MaxFailedLogins:     3,
			AuthFailureDelay:    2 * time.Second,
		},
		HTTP:    HTTPConfig{Listen: "127.0.0.1:8080"},
		Metrics: MetricsConfig{Listen: "127.0.0.1:9154"},
		TLS:     TLSConfig{HandshakeTimeout: 30 * time.Second},
		Auth: AuthConfig{
			Plaintext:     string(backend.PlaintextTLSOrLoopback),
			MaxFailures:   10,
			FailureWindow: 5 * time.Minute,
			Lockout:       5 * time.Minute,
			LoginCacheTTL: 5 * time.Minute,

			Delay:                time.Second,
			MaxDelay:             30 * time.Second,
			AccountLockAddresses: 10,
			IPv6Prefix:           64,
			KnownGoodTTL:         30 * 24 * time.Hour,
			MaxTracked:           50000,
		},
		Autoconfig: AutoconfigConfig{
			IMAPSPort:       993,
			IMAPPort:        143,
			POP3SPort:       995,
			POP3Port:        110,
			SubmissionsPort: 465,
			DisplayName:     "Roost",
		},
		Accounts: AccountsConfig{OverQuota: "defer"},
		Retention: RetentionConfig{
			Trash:    30 * 24 * time.Hour,
			Junk:     30 * 24 * time.Hour,
			Interval: time.Hour,
		},
	}
}

// configField is one leaf key of Config.
type configField struct {
	key   string // "smtp.max_message_bytes"
	value reflect.Value
	tag   reflect.StructTag
}

// configFields lists every key of cfg in declaration order, with settable
// values pointing into cfg.
func configFields(cfg *Config) []configField {
	var out []configField
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			key := prefix + f.Tag.Get("koanf")
			if f.Type.Kind() == reflect.Struct {
				walk(key+".", v.Field(i))
				continue
			}
			out = append(out, configField{key: key, value: v.Field(i), tag: f.Tag})
		}
	}
	walk("", reflect.ValueOf(cfg).Elem())
	return out
}

// configSections are the top-level tables; they split an environment
// variable name into section and key, since keys contain "_" themselves.
func configSections() []string {
	var out []string
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		if t.Field(i).Type.Kind() == reflect.Struct {
			out = append(out, t.Field(i).Tag.Get("koanf"))
		}
	}
	return out
}

// envName returns the environment variable that sets key.
func envName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// envKey maps an environment variable name (with the prefix) to a key:
// the first "_"-separated word after the prefix is the section if it names
// one (ROOST_IMAP_TLS_LISTEN → imap.tls_listen), else the key is top-level
// (ROOST_DATA_DIR → data_dir).
func envKey(name string, sections []string) string {
	rest := strings.ToLower(strings.TrimPrefix(name, envPrefix))
	if sec, key, ok := strings.Cut(rest, "_"); ok && slices.Contains(sections, sec) {
		return sec + "." + key
	}
	return rest
}

// loadConfig reads the configuration: the embedded defaults, then the
// TOML file (path, or $ROOST_CONFIG when path is ""; none is fine), then
// ROOST_ variables from environ, each overriding the one before. Unknown
// keys and malformed values are errors that name the key and its source.
func loadConfig(path string, environ []string) (*Config, error) {
	cfg := defaultConfig()
	fields := configFields(&cfg)
	known := make(map[string]configField, len(fields))
	for _, f := range fields {
		known[f.key] = f
	}
	if path == "" {
		for _, kv := range environ {
			if v, ok := strings.CutPrefix(kv, envConfigFile+"="); ok {
				path = v
			}
		}
	}

	// set records which keys were set, so that derived defaults (the LMTP
	// size limit follows SMTP's) apply only to keys left unset.
	set := make(map[string]bool)
	if path != "" {
		k := koanf.New(".")
		if err := k.Load(file.Provider(path), toml.Parser()); err != nil {
			return nil, fmt.Errorf("config file %s: %w", path, err)
		}
		for _, key := range k.Keys() {
			f, ok := known[key]
			if !ok {
				return nil, fmt.Errorf("config file %s: unknown key %q", path, key)
			}
			if err := setField(f, k.Get(key)); err != nil {
				return nil, fmt.Errorf("config file %s: %s: %w", path, key, err)
			}
			set[key] = true
		}
	}

	sections := configSections()
	envOf := make(map[string]string) // key → variable name, for errors
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || slices.Contains(envIgnored, name) {
			continue
		}
		key := envKey(name, sections)
		if _, ok := known[key]; !ok || envName(key) != name {
			return nil, fmt.Errorf("environment variable %s: unknown config key (see the README's configuration reference)", name)
		}
		envOf[key] = name
	}
	if len(envOf) > 0 {
		k := koanf.New(".")
		err := k.Load(env.Provider(".", env.Opt{
			Prefix:      envPrefix,
			EnvironFunc: func() []string { return environ },
			TransformFunc: func(name, value string) (string, any) {
				if slices.Contains(envIgnored, name) {
					return "", nil
				}
				return envKey(name, sections), value
			},
		}), nil)
		if err != nil {
			return nil, fmt.Errorf("environment: %w", err)
		}
		for key, name := range envOf {
			if err := setField(known[key], k.Get(key)); err != nil {
				return nil, fmt.Errorf("environment variable %s (%s): %w", name, key, err)
			}
			set[key] = true
		}
	}

	// data_dir is made absolute once, here: every message then names the
	// directory really used, and the control socket path does not depend
	// on a later change of directory.
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data_dir %q: %w", cfg.DataDir, err)
	}
	cfg.DataDir = abs
	if !set["lmtp.max_message_bytes"] {
		cfg.LMTP.MaxMessageBytes = cfg.SMTP.MaxMessageBytes
	}
	if !set["submission.max_message_bytes"] {
		cfg.Submission.MaxMessageBytes = cfg.SMTP.MaxMessageBytes
	}
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("hostname is not set and the system's is unknown: %w", err)
		}
		cfg.Hostname = h
	}
	if cfg.Autoconfig.Hostname == "" {
		cfg.Autoconfig.Hostname = cfg.Hostname
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// check validates what depends on more than one key.
func (c *Config) check() error {
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return errors.New("config: tls.cert and tls.key must be set together (or neither, for a self-signed certificate)")
	}
	if _, err := backend.ParsePlaintextPolicy(c.Auth.Plaintext); err != nil {
		return fmt.Errorf("config: auth.plaintext: %w", err)
	}
	if c.Auth.IPv6Prefix > 128 {
		return fmt.Errorf("config: auth.ipv6_prefix: %d is not an IPv6 prefix length (1-128)", c.Auth.IPv6Prefix)
	}
	if c.Auth.AccountLockAddresses > 1000 {
		return fmt.Errorf("config: auth.account_lock_addresses: %d is more than 1000", c.Auth.AccountLockAddresses)
	}
	if c.Auth.MaxDelay < c.Auth.Delay {
		return fmt.Errorf("config: auth.max_delay (%s) is less than auth.delay (%s)", c.Auth.MaxDelay, c.Auth.Delay)
	}
	if _, err := c.Outbound.retrySchedule(); err != nil {
		return fmt.Errorf("config: outbound.retry_schedule: %w", err)
	}
	if r := c.Outbound.Relay; r != "" {
		if _, p, err := net.SplitHostPort(r); err != nil || p == "" {
			return fmt.Errorf("config: outbound.relay: %q is not host:port", r)
		}
	}
	if (c.Outbound.RelayUsername == "") != (c.Outbound.RelayPassword == "") {
		return errors.New("config: outbound.relay_username and relay_password must be set together")
	}
	if c.Outbound.RelayUsername != "" && c.Outbound.Relay == "" {
		return errors.New("config: outbound.relay_username is set but outbound.relay is not")
	}
	if d := c.Outbound.DNSServer; d != "" {
		host := d
		if h, _, err := net.SplitHostPort(d); err == nil {
			host = h
		}
		if net.ParseIP(host) == nil {
			return fmt.Errorf("config: outbound.dns_server: %q is not an IP address (with an optional port)", d)
		}
	}
	return nil
}

// setField stores a raw value (from TOML: string, int64, float64, bool,
// …; from the environment: string) into f, checking f's constraints.
func setField(f configField, raw any) error {
	v := f.value
	switch v.Interface().(type) {
	case time.Duration:
		s, ok := raw.(string)
		if !ok {
			return fmt.Errorf("want a duration in quotes such as \"5m\" or \"30s\", got %v", raw)
		}
		d, err := parseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q (want e.g. \"5m\", \"30s\", \"1h30m\", \"30d\")", s)
		}
		if err := checkMin(f, int64(d)); err != nil {
			return err
		}
		v.SetInt(int64(d))
	case string:
		s, ok := raw.(string)
		if !ok {
			return fmt.Errorf("want a string in quotes, got %v", raw)
		}
		if err := checkString(f, s); err != nil {
			return err
		}
		v.SetString(s)
	case bool:
		switch b := raw.(type) {
		case bool:
			v.SetBool(b)
		case string:
			parsed, err := strconv.ParseBool(strings.TrimSpace(b))
			if err != nil {
				return fmt.Errorf("want true or false, got %q", b)
			}
			v.SetBool(parsed)
		default:
			return fmt.Errorf("want true or false, got %v", raw)
		}
	case int, int64:
		var n int64
		switch x := raw.(type) {
		case int64:
			n = x
		case int:
			n = int64(x)
		case float64:
			if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
				return fmt.Errorf("want a whole number, got %v", x)
			}
			n = int64(x)
		case string:
			var err error
			n, err = strconv.ParseInt(strings.TrimSpace(x), 10, 64)
			if err != nil {
				return fmt.Errorf("want a whole number, got %q", x)
			}
		default:
			return fmt.Errorf("want a whole number, got %v", raw)
		}
		if err := checkMin(f, n); err != nil {
			return err
		}
		if f.tag.Get("port") != "" && n > 65535 {
			return fmt.Errorf("%d is not a port number (1-65535)", n)
		}
		if v.Kind() == reflect.Int && n > math.MaxInt32 {
			return fmt.Errorf("%d is too large", n)
		}
		v.SetInt(n)
	default:
		return fmt.Errorf("internal error: unsupported type %s", v.Type())
	}
	return nil
}

// parseDuration reads a Go duration, or a whole number of days ("30d"),
// which is how retention periods are written.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("bad number of days %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// checkMin enforces the field's least value (min tag, default 1).
func checkMin(f configField, n int64) error {
	least := int64(1)
	if m := f.tag.Get("min"); m != "" {
		least, _ = strconv.ParseInt(m, 10, 64)
	}
	switch {
	case n < 0:
		return errors.New("must not be negative")
	case n == 0 && least > 0:
		return errors.New("must be greater than zero")
	case n < least:
		return fmt.Errorf("must be at least %d", least)
	}
	if m := f.tag.Get("max"); m != "" {
		if most, _ := strconv.ParseInt(m, 10, 64); n > most {
			return fmt.Errorf("must be at most %d", most)
		}
	}
	return nil
}

func checkString(f configField, s string) error {
	if words := f.tag.Get("oneof"); words != "" {
		if !slices.Contains(strings.Split(words, ","), s) {
			return fmt.Errorf("unknown value %q (want one of: %s)", s, strings.ReplaceAll(words, ",", ", "))
		}
		return nil
	}
	if f.tag.Get("listen") != "" {
		// Only LMTP is spoken to by local programs over a unix socket.
		return checkListen(s, f.key == "lmtp.listen")
	}
	if s == "" && f.tag.Get("min") != "0" {
		return errors.New("must not be empty")
	}
	return nil
}

// checkListen validates a listen address: "" (disabled), host:port with a
// numeric port (host may be empty for every interface), or, where allowed,
// unix:/path.
func checkListen(s string, unixOK bool) error {
	if s == "" {
		return nil
	}
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if !unixOK {
			return fmt.Errorf("invalid listen address %q: unix sockets are only accepted for lmtp.listen", s)
		}
		if path == "" {
			return fmt.Errorf("invalid listen address %q: no socket path", s)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("invalid listen address %q (want host:port, e.g. \"127.0.0.1:143\" or \":143\")", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("invalid listen address %q: port %q is not a number from 0 to 65535", s, port)
	}
	if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, " /") {
		return fmt.Errorf("invalid listen address %q: bad host %q", s, host)
	}
	return nil
}
