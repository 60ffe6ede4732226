package graph

import (
	"os"
	"testing"

	"github.com/reprovision-bot/reprovision-bot/internal/testparallel"
)

// The client's tests mostly wait: on the rate limiter's windows, on
// Retry-After and backoff, on MSAL's polling of the fake Entra. Run one at
// a time they took 26 s on 2 CPUs; every test is parallel, 4 at once per
// CPU (go test's default, GOMAXPROCS, under the race detector).
func TestMain(m *testing.M) {
	testparallel.Raise(4, 1)
	os.Exit(m.Run())
}
