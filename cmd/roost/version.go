package main

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Set at link time by release builds and the Dockerfile:
//
//	go build -ldflags "-X main.version=$(git describe --tags --always --dirty) -X main.commit=$(git rev-parse HEAD)" ./cmd/roost
//
// Both are read only through readBuildInfo; without them the binary falls
// back on what the Go toolchain recorded (the module version, which since
// Go 1.24 a build inside a git checkout derives from the tags, and the VCS
// revision).
var (
	version string
	commit  string
)

// buildInfo says what a binary was built from.
type buildInfo struct {
	Version   string // v0.2.0, v0.2.1-0.20261201120000-0123456789ab, or "devel"
	Commit    string // the full VCS revision, or "unknown"
	Modified  bool   // built from a work tree with uncommitted changes
	GoVersion string
}

// readBuildInfo combines the link-time values with the toolchain's record.
func readBuildInfo() buildInfo {
	info := buildInfo{Version: version, Commit: commit}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		info.GoVersion = bi.GoVersion
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if info.Commit == "" {
					info.Commit = s.Value
				}
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if strings.HasSuffix(info.Version, "-dirty") || strings.HasSuffix(info.Version, "+dirty") {
		info.Modified = true
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	if info.GoVersion == "" {
		info.GoVersion = "unknown"
	}
	return info
}

// shortCommit is the commit as git abbreviates it in logs (12 digits).
func (b buildInfo) shortCommit() string {
	if len(b.Commit) > 12 && b.Commit != "unknown" {
		return b.Commit[:12]
	}
	return b.Commit
}

// String is what `roost version` prints.
func (b buildInfo) String() string {
	mod := ""
	if b.Modified && !strings.Contains(b.Version, "dirty") {
		mod = ", modified"
	}
	return fmt.Sprintf("roost %s (commit %s%s, %s)", b.Version, b.shortCommit(), mod, b.GoVersion)
}
