package approvals_test

import (
	"os"
	"testing"

	"github.com/reprovision-bot/reprovision-bot/internal/testparallel"
)

// The workflow's tests mostly wait on timers and the function-field fakes:
// 4 at once per CPU (GOMAXPROCS without the race detector, under which they
// are CPU-bound and stay at go test's default). On 2 CPUs the package took
// 25 s, with 8 at once 12 s.
func TestMain(m *testing.M) {
	testparallel.Raise(4, 1)
	os.Exit(m.Run())
}
