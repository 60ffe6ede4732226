// Package testparallel sets how many parallel tests a test binary runs at
// once, for packages whose tests mostly wait (on timers, retries and the
// fakes) rather than compute: go test's default, GOMAXPROCS at once, leaves
// the CPUs idle while a slow package holds one of go test's -p slots.
package testparallel

import (
	"flag"
	"runtime"
	"strconv"
)

// Raise sets -test.parallel to perCPU parallel tests per CPU, or to
// perCPUUnderRace under the race detector (which makes the same tests
// several times as CPU-hungry, so that more at once only makes their
// deadlines tighter), unless the command line sets -parallel or -fuzz (go
// test -fuzz starts -parallel fuzzing processes, which compute: more than
// one per CPU only take turns). Call it from TestMain before m.Run.
func Raise(perCPU, perCPUUnderRace int) {
	if !flag.Parsed() {
		flag.Parse()
	}
	raise(flag.CommandLine, perCPU, perCPUUnderRace)
}

// raise is Raise on the flags of fs (the test binary's: test.parallel and
// test.fuzz).
func raise(fs *flag.FlagSet, perCPU, perCPUUnderRace int) {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if set || fuzzing(fs) {
		return
	}
	n := perCPU
	if RaceDetector {
		n = perCPUUnderRace
	}
	_ = fs.Set("test.parallel", strconv.Itoa(n*runtime.GOMAXPROCS(0)))
}

// fuzzing reports whether fs asks for a fuzz target to be run (-test.fuzz);
// false without that flag (outside a test binary).
func fuzzing(fs *flag.FlagSet) bool {
	f := fs.Lookup("test.fuzz")
	return f != nil && f.Value.String() != ""
}
