package bot

import (
	"sync"
	"sync/atomic"
	"time"
)

// Observer is told about the Slack side, for metrics. Its methods must be
// quick and safe for concurrent use.
type Observer interface {
	// Acked: an envelope was acked d after it arrived.
	Acked(d time.Duration)
	// Reconnected: a Socket Mode connection opened after the first.
	Reconnected()
}

type noObserver struct{}

func (noObserver) Acked(time.Duration) {}
func (noObserver) Reconnected()        {}

// Connected says whether the Socket Mode connection is open now (readiness:
// without it nobody's command or click reaches the bot).
func (b *Bot) Connected() bool { return b.connected.Load() }

// connection is what the bot knows of its Socket Mode connection.
type connection struct {
	atomic.Bool
}

// arrivals remembers when envelopes arrived, until they are acked.
type arrivals struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (a *arrivals) arrived(envelope string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.at == nil {
		a.at = map[string]time.Time{}
	}
	a.at[envelope] = now
}

// acked returns how long ago envelope arrived (false if unknown).
func (a *arrivals) acked(envelope string) (time.Duration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	at, ok := a.at[envelope]
	delete(a.at, envelope)
	return time.Since(at), ok
}

// refTimes is a small concurrent set of request references, each with when
// it was added; entries nobody took are forgotten after refMemory.
type refTimes struct {
	mu        sync.Mutex
	set       map[string]time.Time
	lastSweep time.Time
}

const refMemory = time.Hour

func (s *refTimes) add(ref string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.set == nil {
		s.set = map[string]time.Time{}
	}
	if len(s.set) >= 1024 && now.Sub(s.lastSweep) > time.Minute {
		s.lastSweep = now
		for k, t := range s.set {
			if now.Sub(t) > refMemory {
				delete(s.set, k)
			}
		}
	}
	s.set[ref] = now
}

// take removes ref and says whether it was there.
func (s *refTimes) take(ref string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.set[ref]
	delete(s.set, ref)
	return ok
}
