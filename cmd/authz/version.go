package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// commit is set at build time (make build: -ldflags "-X main.commit=…"),
// for builds whose VCS stamping is off; otherwise the Go toolchain's
// vcs.revision is used.
var commit string

// version prints the module version, the commit and the Go version.
func (e env) version(args []string) error {
	if len(args) != 0 {
		return usageError{msg: "version takes no arguments", help: usage("version")}
	}
	mod, rev, dirty := "(unknown)", commit, false
	if info, ok := debug.ReadBuildInfo(); ok {
		mod = info.Main.Version
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				if rev == "" {
					rev = s.Value
				}
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if rev == "" {
		rev = "unknown"
	} else if dirty {
		rev += " (modified)"
	}
	fmt.Fprintf(e.stdout, "authz %s\ncommit %s\n%s %s/%s\n", mod, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
