package main

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// sampleRollup is /proc/PID/smaps_rollup of a Dovecot imap process (Linux 6.1).
const sampleRollup = `55d6a8e4e000-7ffd3c5f7000 ---p 00000000 00:00 0                          [rollup]
Rss:                5632 kB
Pss:                1391 kB
Pss_Dirty:           744 kB
Pss_Anon:            712 kB
Pss_File:            679 kB
Pss_Shmem:             0 kB
Shared_Clean:       4656 kB
Shared_Dirty:          0 kB
Private_Clean:       256 kB
Private_Dirty:       720 kB
Referenced:         5632 kB
Anonymous:           712 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
ShmemPmdMapped:        0 kB
FilePmdMapped:         0 kB
Shared_Hugetlb:        0 kB
Private_Hugetlb:       0 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
`

func TestParseSmapsRollup(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr bool
	}{
		{"dovecot imap", sampleRollup, 1391, false},
		// Pss_Dirty etc. must not be mistaken for Pss.
		{"only Pss_ fields", "Rss: 10 kB\nPss_Anon: 5 kB\n", 0, true},
		{"no Pss", "Rss: 10 kB\n", 0, true},
		{"empty", "", 0, true},
		{"bad unit", "Pss: 10 MB\n", 0, true},
		{"bad number", "Pss: ten kB\n", 0, true},
		{"zero", "Pss: 0 kB\n", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSmapsRollup(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

// fakeProc builds a /proc-like tree: pid -> comm, with a smaps_rollup whose
// Pss is pss KiB (no smaps_rollup when pss < 0).
func fakeProc(t *testing.T, procs map[int]struct {
	comm string
	pss  int
}) string {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "comm"), []byte(p.comm+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if p.pss >= 0 {
			rollup := strings.Replace(sampleRollup, "Pss:                1391 kB", "Pss: "+strconv.Itoa(p.pss)+" kB", 1)
			if err := os.WriteFile(filepath.Join(dir, "smaps_rollup"), []byte(rollup), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Entries that are not processes.
	os.MkdirAll(filepath.Join(root, "sys"), 0o755)
	os.WriteFile(filepath.Join(root, "meminfo"), nil, 0o644)
	return root
}

func TestPSSProbe(t *testing.T) {
	root := fakeProc(t, map[int]struct {
		comm string
		pss  int
	}{
		100: {"dovecot", 2000},
		101: {"imap-login", 900},
		102: {"imap", 1300},
		103: {"imap", 1400},
		104: {"auth", 800},
		105: {"sshd", 5000},
		106: {"roost", 30000},
		107: {"roost-bench", 7000}, // the tool itself: excluded
	})
	tests := []struct {
		name      string
		pids      []int
		names     []string
		want      int64
		wantProcs int
		wantErr   bool
	}{
		{"dovecot family", nil, []string{"dovecot", "imap", "auth"}, 2000 + 900 + 1300 + 1400 + 800, 5, false},
		{"prefix imap matches imap-login", nil, []string{"imap"}, 900 + 1300 + 1400, 3, false},
		{"roost without the tool", nil, []string{"roost"}, 30000, 1, false},
		{"explicit pids", []int{100, 105}, nil, 7000, 2, false},
		{"pid and name overlap counted once", []int{102}, []string{"imap"}, 900 + 1300 + 1400, 3, false},
		{"no match", nil, []string{"postfix"}, 0, 0, true},
		{"missing pid", []int{999}, nil, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pssProbe{procRoot: root, pids: tt.pids, names: tt.names, self: 107}
			got, procs, err := p.measure()
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want || procs != tt.wantProcs {
				t.Errorf("measure() = %d KiB over %d processes, want %d over %d", got, procs, tt.want, tt.wantProcs)
			}
		})
	}
}

func TestFindPIDsByComm(t *testing.T) {
	root := fakeProc(t, map[int]struct {
		comm string
		pss  int
	}{
		10: {"imap", 1}, 2: {"imap-login", 1}, 30: {"pop3", 1}, 4: {"lmtp", -1},
	})
	got, err := findPIDsByComm(root, []string{"imap", "lmtp"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{2, 4, 10}; !slices.Equal(got, want) {
		t.Errorf("findPIDsByComm = %v, want %v", got, want)
	}
}

func TestReadPSSThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/smaps_rollup"); err != nil {
		t.Skip("no /proc/self/smaps_rollup on this system")
	}
	kib, err := readPSS("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if kib <= 0 {
		t.Errorf("PSS of the test process = %d KiB, want > 0", kib)
	}
}
