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

// go test -fuzz runs -parallel fuzzing processes; Raise must leave that
// number at go test's default (one per CPU). On flags of its own: the test
// binary's test.parallel counts as given once Raise has set it.
func TestRaiseLeavesParallelAloneWhenFuzzing(t *testing.T) {
	for _, fuzz := range []string{"", "^FuzzParseCommand$"} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		parallel := fs.Int("test.parallel", 2, "")
		fs.String("test.fuzz", "", "")
		args := []string{}
		if fuzz != "" {
			args = append(args, "-test.fuzz="+fuzz)
		}
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		raise(fs, 8, 8)
		want := 8 * runtime.GOMAXPROCS(0)
		if fuzz != "" {
			want = 2
		}
		if *parallel != want {
			t.Errorf("-test.fuzz=%q: Raise set -test.parallel to %d, want %d", fuzz, *parallel, want)
		}
	}
}
