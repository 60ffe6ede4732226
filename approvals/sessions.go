package approvals

import (
	"sync"
	"time"
)

// sessions keeps approvers' sign-ins in memory only: tokens are never
// written to disk or the store, so after a restart approvers sign in again.
type sessions struct {
	ttl time.Duration

	mu sync.Mutex
	// byApprover: reusable sign-ins, valid for ttl after the sign-in itself
	// (reuse does not extend it).
	byApprover map[string]signedIn
	// byRequest: the sign-in a request in progress runs with, kept until
	// that request is done even when ttl is 0 (a fresh sign-in per approval).
	byRequest map[string]*Session
	// claims: a Conditional Access claims challenge the approver's next
	// sign-in must satisfy.
	claims map[string]string
}

type signedIn struct {
	session *Session
	at      time.Time
}

func (s *sessions) init() {
	if s.byApprover == nil {
		s.byApprover, s.byRequest = map[string]signedIn{}, map[string]*Session{}
		s.claims = map[string]string{}
	}
}

// signedIn records a fresh sign-in of approver for request ref.
func (s *sessions) signedIn(approver, ref string, session *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	if s.ttl > 0 {
		s.byApprover[approver] = signedIn{session, time.Now()}
	}
	delete(s.claims, approver)
	s.byRequest[ref] = session
}

// pin makes request ref run with session (a reused sign-in).
func (s *sessions) pin(ref string, session *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	s.byRequest[ref] = session
}

// valid returns the approver's reusable sign-in, or nil.
func (s *sessions) valid(approver string) *Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	si, ok := s.byApprover[approver]
	if !ok {
		return nil
	}
	if s.ttl <= 0 || time.Since(si.at) >= s.ttl {
		delete(s.byApprover, approver)
		return nil
	}
	return si.session
}

// anyValid returns a reusable sign-in of any of the approvers, or nil.
func (s *sessions) anyValid(approvers []string) *Session {
	for _, a := range approvers {
		if si := s.valid(a); si != nil {
			return si
		}
	}
	return nil
}

// forRequest is the sign-in pinned to ref, else the approver's reusable one.
func (s *sessions) forRequest(ref, approver string) *Session {
	s.mu.Lock()
	pinned := s.byRequest[ref]
	s.mu.Unlock()
	if pinned != nil {
		return pinned
	}
	return s.valid(approver)
}

// pinned is the sign-in pinned to ref only (nil if none).
func (s *sessions) pinned(ref string) *Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byRequest[ref]
}

// release unpins ref's sign-in once the request needs it no more.
func (s *sessions) release(ref string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byRequest, ref)
}

// forget drops an approver's sign-in because Graph wants a fresh one, and
// keeps the claims the next sign-in must satisfy.
func (s *sessions) forget(approver, ref, claims string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	delete(s.byApprover, approver)
	delete(s.byRequest, ref)
	if claims != "" {
		s.claims[approver] = claims
	}
}

func (s *sessions) claimsFor(approver string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.claims[approver]
}

// idSet is a small concurrent set of IDs (request references).
type idSet struct {
	mu  sync.Mutex
	ids map[string]bool
}

// claim adds id unless present; false if it was (someone holds it).
func (s *idSet) claim(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids[id] {
		return false
	}
	if s.ids == nil {
		s.ids = map[string]bool{}
	}
	s.ids[id] = true
	return true
}

// take removes id and says whether it was there.
func (s *idSet) take(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	present := s.ids[id]
	delete(s.ids, id)
	return present
}

func (s *idSet) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ids, id)
}

// cancels holds the cancel function of work under way per request.
type cancels struct {
	mu sync.Mutex
	m  map[string]func()
}

func (c *cancels) set(id string, cancel func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]func(){}
	}
	c.m[id] = cancel
}

func (c *cancels) clear(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

// cancel stops the work under way for id, if any.
func (c *cancels) cancel(id string) {
	c.mu.Lock()
	cancel := c.m[id]
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}
