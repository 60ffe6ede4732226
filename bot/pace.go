package bot

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// The bot paces its Slack Web API calls to Slack's published rate limits,
// rather than making them and handling the 429s: a call takes its turn
// here first. A call that may wait (a click's work, the outbox loop's
// delivery) waits for its turn; one that must not (a notice sent at once
// by the goroutine that stored a change, a reason form whose trigger_id
// expires in 3 s) is made only if its turn comes in time; if not, it is not
// made, and the error says when the turn will come: the outbox then tries
// it again at about that time (approvals.RetryAfter), and a reason form is
// refused with a word to the requester.
//
// Slack publishes its limits per method, per app and workspace, with
// chat.postMessage also limited per channel (about one message a second,
// short bursts allowed), and the tiers as floors ("Tier 4: 100+ per
// minute"): https://docs.slack.dev/apis/web-api/rate-limits. These are what
// PaceLimits says; the burst sizes are the bot's choice (Slack gives no
// number). Every approval prompt goes to the approver's one DM, so a burst of
// N requests reaches an approver in about N seconds.

// PaceLimit is one limit the bot paces a Slack Web API method to: a call
// per Every on average, Burst at once, per channel if PerChannel, else per
// workspace.
type PaceLimit struct {
	Method     string
	PerChannel bool
	Every      time.Duration
	Burst      int
}

// PaceLimits are the limits the bot keeps to, Slack's published ones.
func PaceLimits() []PaceLimit {
	const (
		tier3 = time.Minute / 50  // Tier 3: 50+ per minute
		tier4 = time.Minute / 100 // Tier 4: 100+ per minute
	)
	return []PaceLimit{
		// chat.postMessage: "one message per second per channel", short
		// bursts allowed, and "several hundred messages per minute"
		// across the workspace.
		{Method: "chat.postMessage", PerChannel: true, Every: time.Second, Burst: 5},
		{Method: "chat.postMessage", Every: time.Minute / 300, Burst: 20},
		{Method: "chat.update", Every: tier3, Burst: 10},
		{Method: "chat.postEphemeral", Every: tier4, Burst: 20},
		{Method: "views.open", Every: tier4, Burst: 20},
		{Method: "views.publish", Every: tier4, Burst: 20},
		{Method: "users.info", Every: tier4, Burst: 20},
		// users.lookupByEmail: Tier 3; one per confirmed request (the
		// Cloud PC user's heads-up).
		{Method: "users.lookupByEmail", Every: tier3, Burst: 10},
	}
}

// paceScale speeds the pace up (benchmarks only: benchknobs.go); 1 is
// Slack's.
var paceScale = 1.0

const (
	// maxPaceWait is the longest a call waits for its turn.
	maxPaceWait = 30 * time.Second
	// immediateBudget: a call with less time than this left is a notice
	// sent at once (approvals: 3 s), which the outbox sends later if its
	// turn has not come: it takes a free turn or none.
	immediateBudget = 5 * time.Second
	// triggerLife is how long after its interaction a trigger_id opens a
	// modal (Slack: 3 s), less a margin for the call itself.
	triggerLife = 2500 * time.Millisecond
)

// pacer books turns with the generic cell rate algorithm: for each limit
// (and channel), next is the theoretical time of the next call; a call may
// go (Burst−1)·Every before it, and moves it on by Every.
type pacer struct {
	mu     sync.Mutex
	limits map[string][]PaceLimit // per channel first
	next   map[paceKey]time.Time
}

type paceKey struct {
	limit   int
	method  string
	channel string
}

func newPacer(limits []PaceLimit, scale float64) *pacer {
	p := &pacer{limits: map[string][]PaceLimit{}, next: map[paceKey]time.Time{}}
	for _, l := range limits {
		if scale > 0 {
			l.Every = time.Duration(float64(l.Every) / scale)
		}
		p.limits[l.Method] = append(p.limits[l.Method], l)
	}
	for _, ls := range p.limits {
		slices.SortStableFunc(ls, func(a, b PaceLimit) int {
			switch {
			case a.PerChannel == b.PerChannel:
				return 0
			case a.PerChannel:
				return -1
			}
			return 1
		})
	}
	return p
}

// paceSweepAt: next holds a key per channel written to; past this many,
// those whose allowance is whole again are dropped.
const paceSweepAt = 512

// reserve books the earliest turn of a call of method to channel under
// limit i, if it comes no later than now+budget, and returns how long to
// wait for it. If it comes later, nothing is booked and false says so,
// with the wait it would have been.
func (p *pacer) reserve(method string, i int, channel string, now time.Time, budget time.Duration) (time.Duration, bool) {
	l := p.limits[method][i]
	k := paceKey{limit: i, method: method}
	if l.PerChannel {
		k.channel = channel
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	tolerance := time.Duration(max(l.Burst, 1)-1) * l.Every
	start := now
	if earliest := p.next[k].Add(-tolerance); earliest.After(start) {
		start = earliest
	}
	wait := start.Sub(now)
	if wait > budget {
		return wait, false
	}
	if len(p.next) > paceSweepAt {
		for k, t := range p.next {
			if !t.After(now) {
				delete(p.next, k)
			}
		}
	}
	next := p.next[k]
	if next.Before(start) {
		next = start
	}
	p.next[k] = next.Add(l.Every)
	return wait, true
}

// margin is added to a wait, so that Slack, which times calls as they
// arrive, sees them no closer than Every despite the network's jitter.
func (l PaceLimit) margin() time.Duration { return min(l.Every/10, 100*time.Millisecond) }

// pacedError: a call was not made because its turn under Slack's limits
// would have come too late for it.
type pacedError struct {
	method string
	wait   time.Duration
}

func (e *pacedError) Error() string {
	return fmt.Sprintf("slack %s: not made: its turn under Slack's rate limits comes in %v", e.method, e.wait.Round(time.Millisecond))
}

// takeTurn waits for the turn of a call of method to channel under ctx,
// under each of the method's limits in turn (the channel's, then the
// workspace's, taken when the channel's comes, so that a call waiting for
// its channel holds no other channel back); it returns a *retryLater
// wrapping a *pacedError, without waiting, when a turn comes later than
// the call may wait (paceBudget).
func (b *Bot) takeTurn(ctx context.Context, method, channel string) error {
	limits := b.pace.limits[method]
	if len(limits) == 0 {
		return nil
	}
	now := time.Now()
	until := now.Add(paceBudget(ctx, method, now))
	for i, l := range limits {
		wait, ok := b.pace.reserve(method, i, channel, now, until.Sub(now))
		if !ok {
			// A turn booked under an earlier limit passes unused.
			return &retryLater{err: &pacedError{method: method, wait: wait}, after: wait}
		}
		if wait <= 0 {
			continue
		}
		t := time.NewTimer(wait + l.margin())
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err() // the turn passes unused
		}
		now = time.Now()
	}
	return nil
}

// paceBudget is how long a call of method under ctx may wait for its
// turn: until the trigger_id expires for views.open, nothing (a free turn
// or none) for a notice sent at once, else half of the time left, at most
// maxPaceWait.
func paceBudget(ctx context.Context, method string, now time.Time) time.Duration {
	if until, ok := ctx.Value(triggerKey{}).(time.Time); ok && method == "views.open" {
		return until.Sub(now)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		return maxPaceWait
	}
	left := deadline.Sub(now)
	if left < immediateBudget {
		return 0
	}
	return min(left/2, maxPaceWait)
}

// triggerKey is the context key of the time a trigger_id stops opening
// modals.
type triggerKey struct{}

// withTrigger is ctx for work that opens a modal with a trigger_id that
// came in an envelope arrived at arrived.
func withTrigger(ctx context.Context, arrived time.Time) context.Context {
	return context.WithValue(ctx, triggerKey{}, arrived.Add(triggerLife))
}
