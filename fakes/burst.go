package fakes

import (
	"testing"
	"time"
)

// Knobs for load benchmarks: firing many envelopes at once, cheap counts
// to wait on (Calls and Acks copy everything), and Slack's published rate
// limits, observed rather than enforced.

// SendSlashCommands delivers the commands back to back, as fast as the
// connection takes them, and returns their envelope ids in order. Ack
// latencies are Ack.AckedAt − Ack.WrittenAt.
func (s *Slack) SendSlashCommands(t testing.TB, cmds []SlashCommand) []string {
	t.Helper()
	ids := make([]string, len(cmds))
	for i, c := range cmds {
		ids[i] = s.SendSlashCommand(t, c)
	}
	return ids
}

// AckCount is the number of acks received so far.
func (s *Slack) AckCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sm.acks)
}

// CallStats sums up the Web API calls of one method.
type CallStats struct {
	// Calls counts every call; OK those answered ok; Errors those answered
	// with an error (FailNext and method errors); Faults those refused by
	// a fault knob (RateLimit, Outage); OverPace those over a limit given
	// to ObservePace.
	Calls, OK, Errors, Faults, OverPace int
	// First and Last are the times of the first and the last ok call.
	First, Last time.Time
}

// CallStats sums up the calls of method, only those to channel unless ""
// (a user id means the app's DM with the user, as chat.postMessage takes
// it). It copies nothing: cheap enough to poll during a burst.
func (s *Slack) CallStats(method, channel string) CallStats {
	if isUserID(channel) {
		channel = DMChannel(channel)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var st CallStats
	for i := range s.calls {
		c := &s.calls[i]
		if c.Method != method {
			continue
		}
		if channel != "" {
			if ch, _ := resolveChannel(c.Params["channel"]); ch != channel {
				continue
			}
		}
		st.Calls++
		if c.OverPace {
			st.OverPace++
		}
		switch {
		case c.Fault != "":
			st.Faults++
		case c.Error != "" || c.Status != 200:
			st.Errors++
		default:
			st.OK++
			if st.First.IsZero() {
				st.First = c.At
			}
			st.Last = c.At
		}
	}
	return st
}

// PaceRule is one of Slack's published Web API rate limits: Method may be
// called once per Every on average, Burst calls at once, per channel when
// PerChannel (chat.postMessage: about one message per second per channel)
// else per workspace (the tiers: Tier 3 50+ a minute, Tier 4 100+).
type PaceRule struct {
	Method     string
	PerChannel bool
	Every      time.Duration
	Burst      int
}

// ObservePace makes the fake check every later call against rules (several
// may name one method, e.g. per channel and per workspace): a call over any
// of them is marked Call.OverPace and counted in CallStats.OverPace, but is
// served all the same. It shows how far a client would be from Slack's
// limits without changing what it does. A call over a limit does not use
// up the allowance (Slack would have refused it). Replaces earlier rules.
func (s *Slack) ObservePace(rules ...PaceRule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pace = paceWatch{rules: rules, next: map[paceKey]time.Time{}}
}

type paceKey struct {
	rule    int
	channel string
}

// paceWatch applies PaceRules with the generic cell rate algorithm: next
// is, per rule and channel, when the allowance is whole again minus one
// call; a call conforms unless it comes more than (Burst−1)·Every before it.
type paceWatch struct {
	rules []PaceRule
	next  map[paceKey]time.Time
}

// over says whether a call of method to channel at now goes over a rule,
// and takes its share of the allowance if not. Call with s.mu held.
func (p *paceWatch) over(method, channel string, now time.Time) bool {
	if len(p.rules) == 0 {
		return false
	}
	if ch, ok := resolveChannel(channel); ok {
		channel = ch
	}
	var keys []paceKey
	for i, r := range p.rules {
		if r.Method != method || r.Every <= 0 {
			continue
		}
		k := paceKey{rule: i}
		if r.PerChannel {
			k.channel = channel
		}
		tolerance := time.Duration(max(r.Burst, 1)-1) * r.Every
		if now.Before(p.next[k].Add(-tolerance)) {
			return true
		}
		keys = append(keys, k)
	}
	for _, k := range keys {
		p.next[k] = later(p.next[k], now).Add(p.rules[k.rule].Every)
	}
	return false
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
