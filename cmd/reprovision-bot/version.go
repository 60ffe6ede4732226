package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
)

// version is stamped at build time (-ldflags "-X main.version=1.2.3");
// without it the module version from the build info is shown.
var version string

// build is what the binary knows about its own build.
type build struct {
	Version, Revision, Time, GoVersion string
	Modified                           bool
}

// currentBuild reads the build info Go embeds (module version, VCS
// revision and time when built from a checkout).
func currentBuild() build {
	b := build{Version: version}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		if b.Version == "" {
			b.Version = "unknown"
		}
		return b
	}
	b.GoVersion = info.GoVersion
	if b.Version == "" {
		b.Version = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

func (b build) String() string {
	s := "reprovision-bot " + b.Version
	if b.Revision != "" {
		s += " (revision " + b.Revision
		if b.Modified {
			s += ", modified"
		}
		if b.Time != "" {
			s += ", " + b.Time
		}
		s += ")"
	}
	return s + " " + b.GoVersion
}

// runVersion prints the version, the VCS revision and time, and the Go
// version.
func runVersion(_ context.Context, args []string, _ func(string) string, stdout io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("version: unexpected argument %q", args[0])
	}
	_, err := fmt.Fprintln(stdout, currentBuild())
	return err
}
