package approvals

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// What a person must be told is never lost: every notice the flow sends
// (prompt redraws, news to the requester and approver, progress under the
// prompt) is first put in the store's outbox, in the same transaction as
// the change it announces (Store.Apply), then delivered at least once.
// Delivery is tried at once and, failing that, again with backoff (or when
// Slack's Retry-After says) by the workflow's outbox loop, across restarts.
// Only the interactive steps (the device code, the final confirmation) are
// sent directly: a person is waiting for them, and they make no sense late.

// OutgoingKind says what an outbox entry delivers.
type OutgoingKind string

const (
	// OutgoingPost posts the request's prompt to each approver who decides
	// it (Policy.ApproversOf) and has no copy yet, and records where: the
	// approvers are asked even when chat is down as the request comes in.
	OutgoingPost OutgoingKind = "post"
	// OutgoingPrompts redraws every copy of the request's prompt for the
	// request's state at delivery time: the latest state wins, and one
	// undelivered redraw per request stands for all.
	OutgoingPrompts OutgoingKind = "prompts"
	// OutgoingNotice tells User a Notice. A NoticeStatus shows the
	// request's state at delivery time, so one undelivered status notice
	// per request and person stands for all; the other kinds are each
	// delivered.
	OutgoingNotice OutgoingKind = "notice"
	// OutgoingProgress posts a follow-through update beside the prompt.
	OutgoingProgress OutgoingKind = "progress"
)

// Outgoing is one entry of the outbox.
type Outgoing struct {
	// ID is set by the store.
	ID        int64
	RequestID string
	Kind      OutgoingKind
	// User is who is told (OutgoingNotice).
	User string
	// Notice is what they are told (OutgoingNotice), with its Why and
	// Accepted.
	Notice   NoticeKind
	Why      *Outcome
	Accepted bool
	// Progress is the update (OutgoingProgress).
	Progress Progress
	// CloudPCID names the batch member a notice or progress entry is about
	// (Notice.Member, Progress.Member at delivery); "" for none.
	CloudPCID string

	// Set by the store. Generation counts how often the entry was enqueued
	// again (coalesced) while undelivered: a delivery of an older
	// generation does not remove it. Attempts and LastError are the failed
	// deliveries so far; NextAt is when it is due.
	Generation int64
	Attempts   int
	LastError  string
	CreatedAt  time.Time
	NextAt     time.Time
}

// Coalesce is the key under which an undelivered entry stands for later
// ones of the same key and request ("" for entries that are each
// delivered).
func (o Outgoing) Coalesce() string {
	switch {
	case o.Kind == OutgoingPost:
		return "post"
	case o.Kind == OutgoingPrompts:
		return "prompts"
	case o.Kind == OutgoingNotice && o.Notice == NoticeStatus:
		return "status:" + o.User
	}
	return ""
}

// Validate checks what the store relies on.
func (o Outgoing) Validate() error {
	if !ValidReference(o.RequestID) {
		return fmt.Errorf("outgoing %q: not a request reference", o.RequestID)
	}
	switch o.Kind {
	case OutgoingPost, OutgoingPrompts:
	case OutgoingNotice:
		if o.User == "" || o.Notice == "" {
			return errors.New("outgoing notice: user and notice kind are required")
		}
	case OutgoingProgress:
		if o.Progress.Kind == "" {
			return errors.New("outgoing progress: kind is required")
		}
	default:
		return fmt.Errorf("outgoing: unknown kind %q", o.Kind)
	}
	return nil
}

// Outbox is the store's part of delivering notices.
type Outbox interface {
	// Enqueue adds entries, due now. An entry with a Coalesce key whose
	// request already has an undelivered entry of that key updates that
	// entry instead (due now, its Generation moved on, its other fields
	// replaced, counted as new: no attempts, made now).
	Enqueue(ctx context.Context, entries ...Outgoing) error

	// Due returns undelivered entries with NextAt at or before now, of
	// request ref only if ref is not "", oldest first, at most limit.
	Due(ctx context.Context, now time.Time, ref string, limit int) ([]Outgoing, error)

	// Delivered removes the entry, unless it was enqueued again since it
	// was read (its Generation moved on): then the newer one stays due.
	Delivered(ctx context.Context, o Outgoing) error

	// Postpone records a failed delivery of the entry (Attempts + 1,
	// LastError why) and makes it due at `at`, unless it was enqueued
	// again since it was read (then it stays due now).
	Postpone(ctx context.Context, o Outgoing, at time.Time, why string) error

	// Undelivered counts the entries not delivered yet.
	Undelivered(ctx context.Context) (int, error)
}

// Change is one atomic change of a request, for Store.Apply.
type Change struct {
	// From: the states the request must be in, for a move or an update
	// (nil: any the move allows; any for an update).
	From []State
	// To is the state to move to ("": the state does not change, as
	// Store.Update).
	To State
	// Update edits the loaded request before it is saved (may be nil), with
	// Transition's and Update's limits.
	Update func(*Request)
	// Notify returns the outbox entries the change calls for, given the
	// request as saved; they are enqueued in the same transaction.
	Notify func(*Request) []Outgoing
}

// Op names the change of request id, for a store's error messages.
func (c Change) Op(id string) string {
	if c.To == "" {
		return "update " + id
	}
	return fmt.Sprintf("transition %s to %s", id, c.To)
}

// Edit makes the change on next, a copy of current (the request as
// stored), with the rules every store applies: a move must be one the state
// machine allows from current's state, and from one of c.From if given
// (else a *TransitionError, before Update runs), and an update too must
// find the request in one of c.From if given; Update may not change what
// KeepsIdentity guards; the state is c.To, or current's.
func (c Change) Edit(current, next *Request) error {
	if c.To != "" && !current.State.CanMoveTo(c.To) || c.From != nil && !slices.Contains(c.From, current.State) {
		return &TransitionError{Current: current, To: cmp.Or(c.To, current.State)}
	}
	if c.Update != nil {
		c.Update(next)
		if c.To != "" {
			next.State = current.State // a move's state is set below, not by Update
		}
		if err := KeepsIdentity(current, next); err != nil {
			return err
		}
	}
	if c.To != "" {
		next.State = c.To
	}
	return nil
}

// Delivery errors the Notices port returns, so the outbox knows what to do.
var (
	// ErrUndeliverable: no retry will deliver it (the channel or message
	// is gone, the user is deactivated). The entry is dropped and audited.
	ErrUndeliverable = errors.New("notice cannot be delivered")
)

// RetryAfter is implemented by delivery errors that say when to try again
// (Slack's Retry-After).
type RetryAfter interface {
	RetryAfter() time.Duration
}

// outgoingPayload is what an entry carries besides what a store keeps in
// columns of their own (request, kind, bookkeeping): one JSON encoding for
// every store.
type outgoingPayload struct {
	User     string           `json:"user,omitempty"`
	Notice   string           `json:"notice,omitempty"`
	Why      string           `json:"why,omitempty"` // EncodeOutcome
	Accepted bool             `json:"accepted,omitempty"`
	Progress *progressPayload `json:"progress,omitempty"`
	CloudPC  string           `json:"cloud_pc_id,omitempty"`
}

type progressPayload struct {
	Kind   string        `json:"kind"`
	Status string        `json:"status,omitempty"`
	Detail string        `json:"detail,omitempty"`
	Every  time.Duration `json:"every,omitempty"`
}

// Payload encodes what o carries besides its request, kind and
// bookkeeping, for a store to keep (SetPayload reads it back).
func (o Outgoing) Payload() (string, error) {
	p := outgoingPayload{User: o.User, Notice: string(o.Notice), Accepted: o.Accepted, CloudPC: o.CloudPCID}
	if o.Why != nil {
		why, err := EncodeOutcome(o.Why)
		if err != nil {
			return "", err
		}
		p.Why = why
	}
	if o.Kind == OutgoingProgress {
		p.Progress = &progressPayload{string(o.Progress.Kind), o.Progress.Status, o.Progress.Detail, o.Progress.Every}
	}
	b, err := json.Marshal(p)
	return string(b), err
}

// SetPayload sets what Payload encoded.
func (o *Outgoing) SetPayload(s string) error {
	var p outgoingPayload
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return err
	}
	o.User, o.Notice, o.Accepted, o.CloudPCID = p.User, NoticeKind(p.Notice), p.Accepted, p.CloudPC
	if p.Why != "" {
		o.Why = DecodeOutcome(p.Why)
	}
	if p.Progress != nil {
		o.Progress = Progress{Kind: ProgressKind(p.Progress.Kind), Status: p.Progress.Status, Detail: p.Progress.Detail, Every: p.Progress.Every}
	}
	return nil
}
