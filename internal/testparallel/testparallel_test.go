package testparallel

import (
	"flag"
	"runtime"
	"strconv"
	"testing"
)

// Under go test, -test.parallel is set (to GOMAXPROCS by default), so
// Raise leaves it alone only when the command line named it; this test
// binary's own flag shows which number Raise chose.
func TestRaiseSetsParallelPerCPUUnlessGiven(t *testing.T) {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	before := flag.Lookup("test.parallel").Value.String()
	Raise(3, 1)
	got := flag.Lookup("test.parallel").Value.String()
	if given {
		if got != before {
			t.Errorf("-parallel %s was given, Raise changed it to %s", before, got)
		}
		return
	}
	perCPU := 3
	if RaceDetector {
		perCPU = 1
	}
	if want := strconv.Itoa(perCPU * runtime.GOMAXPROCS(0)); got != want {
		t.Errorf("-test.parallel = %s, want %s (race detector %v)", got, want, RaceDetector)
	}
}
