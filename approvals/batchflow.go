package approvals

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A batch (batch.go) goes through the same asking, approving, denying,
// canceling and expiry as one Cloud PC. What differs starts when the last
// approver signs in: the look-up finds every Cloud PC (lookUpBatch), the
// approver confirms the list once, and the run (runBatch) sends one
// reprovision call per Cloud PC, at most Config.BatchParallel at a time,
// each after a status re-check, paced by the Graph port (which keeps the
// bot under its request rate and pauses on Retry-After). Every member's
// result is stored before the next step that depends on it, and news of it
// goes under the prompt.

// Batch limits' defaults.
const (
	DefaultBatchMax       = 50
	DefaultBatchTwoPerson = 10
	DefaultBatchParallel  = 4
)

// MaxBatchTargets bounds any batch: more calls than this under one approval
// is not what the bot is for, whatever Config.BatchMax says.
const MaxBatchTargets = 500

// NewBatch applies the policy and builds a pending batch request in memory
// (like NewRequest): targets are Cloud PC ids, device names or user
// principal names the adapter has checked, or policy names a provisioning
// policy (by id or display name). Repeats collapse (ignoring case). More
// targets than Config.BatchMax is a RefusedBatchTooLarge; a batch larger
// than Config.BatchTwoPerson (a policy batch counts as larger unless the
// limit is the maximum) needs two approvals at least.
func (w *Workflow) NewBatch(user, channel string, targets []string, policy, reason string, opts Options) (*Request, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	var unique []string
	for _, t := range targets {
		t = strings.TrimSpace(t)
		if t != "" && !slices.ContainsFunc(unique, func(u string) bool { return strings.EqualFold(u, t) }) {
			unique = append(unique, t)
		}
	}
	if (len(unique) == 0) == (policy == "") {
		return nil, errors.New("approvals: a batch names Cloud PCs or a provisioning policy")
	}
	if len(unique) > w.cfg.BatchMax {
		return nil, &Refusal{Kind: RefusedBatchTooLarge, Action: ActionRequest, Count: len(unique), Max: w.cfg.BatchMax}
	}
	required := w.cfg.Policy.required()
	if len(unique) > w.cfg.BatchTwoPerson || (policy != "" && w.cfg.BatchTwoPerson < w.cfg.BatchMax) {
		required = max(required, 2)
	}
	if err := w.cfg.Policy.mayRequest(user, channel, required); err != nil {
		return nil, err
	}
	label := policy
	if policy == "" {
		label = strings.Join(unique, ",")
	}
	r := w.cfg.Policy.NewRequest(time.Now(), user, channel, label, reason)
	r.CloudPCID = "" // a batch holds its members' Cloud PCs, not one of its own
	r.Options, r.ApprovalsRequired = opts, required
	r.Batch = &Batch{Targets: unique, Policy: policy}
	return r, nil
}

// lookUpBatch finds the batch's Cloud PCs with the last approver's sign-in:
// each listed target (an id read, a name or UPN resolved; one that matches
// none or several is left out), or the provisioning policy's. A Cloud PC
// named twice is listed once.
func (w *Workflow) lookUpBatch(ctx context.Context, r *Request, s *Session) ([]Member, ProvisioningPolicy, error) {
	if r.Batch.Policy != "" {
		return w.lookUpPolicy(ctx, r, s)
	}
	members := make([]Member, len(r.Batch.Targets))
	errs := make([]error, len(r.Batch.Targets))
	w.inParallel(len(r.Batch.Targets), func(i int) {
		members[i], errs[i] = w.lookUpTarget(ctx, r, s, r.Batch.Targets[i])
	})
	if err := errors.Join(errs...); err != nil {
		return nil, ProvisioningPolicy{}, err
	}
	return uniqueMembers(members), ProvisioningPolicy{}, nil
}

// inParallel runs do(0…n-1) with at most Config.BatchParallel at a time.
func (w *Workflow) inParallel(n int, do func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(n, w.cfg.BatchParallel) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				do(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// lookUpTarget finds the one Cloud PC a listed target names. A target that
// names none, or several, becomes an excluded member; Graph failing is an
// error (the look-up fails as a whole and the batch may be approved again).
func (w *Workflow) lookUpTarget(ctx context.Context, r *Request, s *Session, target string) (Member, error) {
	m := Member{Target: target, Result: MemberWaiting}
	if ValidCloudPCID(target) {
		device, call, err := s.CloudPCs.Get(ctx, strings.ToLower(target))
		w.auditGraphCalls(r.ID, r.DecidedBy, call)
		var ge *GraphError
		switch {
		case errors.As(err, &ge) && ge.Kind == GraphNotFound:
			m.Result, m.Detail = MemberExcluded, "no Cloud PC has this id"
			return m, nil
		case err != nil:
			return m, err
		}
		m.CloudPCID, m.Device = device.ID, device
		return m, nil
	}
	found, calls, err := s.CloudPCs.Resolve(ctx, target)
	w.auditGraphCalls(r.ID, r.DecidedBy, calls...)
	if err != nil {
		return m, err
	}
	switch found = uniqueCloudPCs(found); len(found) {
	case 0:
		m.Result, m.Detail = MemberExcluded, "no Cloud PC matches"
	case 1:
		m.CloudPCID, m.Device = found[0].ID, found[0]
	default:
		m.Result, m.Detail = MemberExcluded, strconv.Itoa(len(found))+" Cloud PCs match"
	}
	return m, nil
}

// lookUpPolicy finds the provisioning policy and lists its Cloud PCs, by
// name.
func (w *Workflow) lookUpPolicy(ctx context.Context, r *Request, s *Session) ([]Member, ProvisioningPolicy, error) {
	policy, call, err := s.CloudPCs.FindPolicy(ctx, r.Batch.Policy)
	w.auditGraphCalls(r.ID, r.DecidedBy, call)
	if err != nil {
		return nil, policy, err
	}
	if !ValidCloudPCID(policy.ID) {
		return nil, policy, &GraphError{Kind: GraphFailed, Cause: CauseUnexpected, Method: "GET", Err: errors.New("the provisioning policy's id is not a GUID")}
	}
	pcs, calls, err := s.CloudPCs.PolicyCloudPCs(ctx, policy.ID)
	w.auditGraphCalls(r.ID, r.DecidedBy, calls...)
	if err != nil {
		return nil, policy, err
	}
	sort.SliceStable(pcs, func(i, j int) bool {
		return strings.ToLower(pcs[i].ManagedDeviceName+pcs[i].DisplayName) < strings.ToLower(pcs[j].ManagedDeviceName+pcs[j].DisplayName)
	})
	members := make([]Member, 0, len(pcs))
	for _, pc := range pcs {
		members = append(members, Member{CloudPCID: pc.ID, Device: pc, Result: MemberWaiting})
	}
	return uniqueMembers(members), policy, nil
}

// uniqueMembers drops a Cloud PC found a second time (two names for one).
func uniqueMembers(members []Member) []Member {
	seen := map[string]bool{}
	return slices.DeleteFunc(members, func(m Member) bool {
		id := strings.ToLower(m.CloudPCID)
		if id == "" {
			return false
		}
		if seen[id] {
			return true
		}
		seen[id] = true
		return false
	})
}

// offerBatch sorts what the look-up found (statuses not allowed: skipped;
// held by another open request: excluded) and moves the batch to awaiting
// confirmation with its members, holding their Cloud PCs. A batch that is
// too large, or has nothing to send, ends failed. It returns nil when the
// batch ended or moved on meanwhile.
func (w *Workflow) offerBatch(ctx context.Context, r *Request, s *Session, members []Member, policy ProvisioningPolicy) *Request {
	found := 0
	for _, m := range members {
		if m.CloudPCID != "" {
			found++
		}
	}
	if found > w.cfg.BatchMax {
		w.failBatchBeforeCall(ctx, r, &Outcome{Kind: OutcomeBatchTooLarge, Matches: found, Max: w.cfg.BatchMax}, nil, policy)
		return nil
	}
	for i := range members {
		m := &members[i]
		if m.Result == MemberWaiting && !slices.Contains(w.cfg.AllowedStatuses, m.Device.Status) {
			m.Result, m.Detail = MemberSkipped, m.Device.Status
		}
	}
	expires := time.Now().UTC().Add(confirmWindow)
	for try := 0; ; try++ {
		w.excludeHeld(ctx, r.ID, members)
		if !slices.ContainsFunc(members, func(m Member) bool { return m.Result == MemberWaiting }) {
			w.failBatchBeforeCall(ctx, r, &Outcome{Kind: OutcomeNothingToSend}, members, policy)
			return nil
		}
		confirming, err := w.store.TransitionFrom(ctx, r.ID, beforeCall, StateConfirming, func(u *Request) {
			u.Batch.Members, u.Batch.PolicyID, u.Batch.PolicyName = slices.Clone(members), policy.ID, policy.DisplayName
			u.SignedInAs, u.ExpiresAt = s.Username, expires
		})
		var te *TransitionError
		switch {
		case errors.As(err, &te):
			w.log.Info("batch moved on during look-up", "ref", r.ID, "state", string(te.Current.State))
			if !needsSignIn(te.Current) {
				w.sessions.release(r.ID)
			}
			return nil
		case errors.Is(err, ErrOpenRequestExists) && try == 0:
			continue // another request took one meanwhile: exclude it and try again
		case err != nil:
			w.log.Error("batch members not recorded", "ref", r.ID, "err", err)
			w.failBatchBeforeCall(ctx, r, &Outcome{Kind: OutcomeNotRecorded}, members, policy)
			return nil
		}
		w.auditMembers(ctx, confirming)
		return confirming
	}
}

// excludeHeld marks the waiting members whose Cloud PC another open
// request holds.
func (w *Workflow) excludeHeld(ctx context.Context, ref string, members []Member) {
	for i := range members {
		m := &members[i]
		if m.Result != MemberWaiting {
			continue
		}
		other, err := w.store.OpenFor(ctx, m.CloudPCID)
		if err == nil && other.ID != ref {
			m.Result, m.Other, m.Detail = MemberExcluded, other.ID, "open request "+other.ID
		}
	}
}

// auditMembers records the batch's members as the look-up found them, one
// record each.
func (w *Workflow) auditMembers(ctx context.Context, r *Request) {
	c := r.Batch.Counts()
	details := map[string]string{
		"members": strconv.Itoa(len(r.Batch.Members)), "waiting": strconv.Itoa(c[MemberWaiting]),
		"skipped": strconv.Itoa(c[MemberSkipped]), "excluded": strconv.Itoa(c[MemberExcluded]),
	}
	if r.Batch.PolicyID != "" {
		details["policy_id"], details["policy_name"] = r.Batch.PolicyID, r.Batch.PolicyName
	}
	w.audit(ctx, r.ID, EventBatchLookedUp, r.DecidedBy, details)
	for _, m := range r.Batch.Members {
		w.audit(ctx, r.ID, EventBatchMember, r.DecidedBy, memberDetails(m))
	}
}

// memberDetails are a member's facts for the audit trail.
func memberDetails(m Member) map[string]string {
	d := map[string]string{"result": string(m.Result)}
	add := func(k, v string) {
		if v != "" {
			d[k] = v
		}
	}
	add("target", m.Target)
	add("cloud_pc_id", m.CloudPCID)
	add("device", m.Device.ManagedDeviceName)
	add("upn", m.Device.UserPrincipalName)
	add("status", m.Device.Status)
	add("detail", m.Detail)
	add("other", m.Other)
	add("graph_code", m.GraphCode)
	add("request_id", m.GraphRequestID)
	if m.GraphStatus != 0 {
		d["graph_status"] = strconv.Itoa(m.GraphStatus)
	}
	add("tracked", m.Tracked)
	return d
}

// failBatchBeforeCall ends a batch that never sent a call, keeping what the
// look-up found (members, when not nil), and tells both sides.
func (w *Workflow) failBatchBeforeCall(ctx context.Context, r *Request, why *Outcome, members []Member, policy ProvisioningPolicy) {
	ctx, cancel := detached(ctx)
	defer cancel()
	_, err := w.settle(ctx, r.ID, step{
		from: beforeCall, to: StateFailed,
		update: func(u *Request) {
			u.Outcome = why
			if members != nil {
				u.Batch.Members = members
			}
			if policy.ID != "" {
				u.Batch.PolicyID, u.Batch.PolicyName = policy.ID, policy.DisplayName
			}
		},
		event:         EventFailed,
		tellRequester: true, tellApprover: true,
	})
	if err != nil {
		w.log.Error("could not record the batch's failure", "ref", r.ID, "err", err)
	}
}

// runBatch runs a confirmed batch: marked executing, then its members are
// sent (sendMembers) and the batch ends (endBatch). The caller has claimed
// r (inFlight).
func (w *Workflow) runBatch(r *Request, s *Session) {
	defer w.inFlight.remove(r.ID)
	ctx, cancel := context.WithTimeout(w.execCtx, workTimeout)
	defer cancel()
	if r.ExpiredAt(time.Now()) {
		w.expire(ctx, r)
		return
	}
	executing, err := w.settle(ctx, r.ID, step{
		from: beforeCall, to: StateExecuting,
		update: func(u *Request) { u.SignedInAs = s.Username },
		byLoop: true,
	})
	var te *TransitionError
	switch {
	case errors.As(err, &te):
		w.log.Info("batch moved on before its calls; not calling Graph", "ref", r.ID, "state", string(te.Current.State))
		w.tell(r.DecidedBy, Notice{Kind: NoticeStatus, Request: te.Current})
		return
	case err != nil:
		w.log.Error("could not mark the batch executing; not calling Graph", "ref", r.ID, "err", err)
		w.reopen(context.WithoutCancel(ctx), r, &Outcome{Kind: OutcomeNotRecorded}, "")
		return
	}
	w.sendMembers(executing, s)
}

// errBatchPaused: the batch stops sending for now: it was stopped, or the
// sign-in is no longer accepted (the approver resumes with a new one).
var errBatchPaused = errors.New("batch paused")

// sendMembers sends the waiting members' calls, at most BatchParallel at a
// time, then ends the batch, or halts it when Graph wants a fresh sign-in.
func (w *Workflow) sendMembers(r *Request, s *Session) {
	var waiting []string
	for _, m := range r.Batch.Members {
		if m.Result == MemberWaiting {
			waiting = append(waiting, m.CloudPCID)
		}
	}
	var mu sync.Mutex
	var signInAgain *GraphError
	w.inParallel(len(waiting), func(i int) {
		mu.Lock()
		stop := signInAgain != nil
		mu.Unlock()
		if stop || w.execCtx.Err() != nil {
			return
		}
		if ge := w.sendMember(r, s, waiting[i]); ge != nil {
			mu.Lock()
			signInAgain = ge
			mu.Unlock()
		}
	})
	ctx, cancel := detached(w.execCtx)
	defer cancel()
	if w.execCtx.Err() != nil {
		return // stopping: the next start settles the batch (halted)
	}
	if signInAgain != nil {
		w.sessions.forget(r.DecidedBy, r.ID, signInAgain.Claims)
		w.haltBatch(ctx, r.ID, &Outcome{Kind: OutcomeGraph, Graph: signInAgain})
		return
	}
	w.endBatch(ctx, r.ID)
}

// sendMember re-checks one member's status and sends its call. It returns
// Graph's error when Graph wants a fresh sign-in (the member waits again).
func (w *Workflow) sendMember(r *Request, s *Session, id string) *GraphError {
	ctx, cancel := context.WithTimeout(w.execCtx, graphTimeout)
	defer cancel()
	// Stopped meanwhile: not even the re-check goes out.
	if now, err := w.store.Get(ctx, r.ID); err == nil && (now.State != StateExecuting || now.Batch.Stopped || now.Batch.Halted) {
		return nil
	}
	device, call, err := s.CloudPCs.Get(ctx, id)
	w.auditGraphCalls(r.ID, r.DecidedBy, call)
	if err != nil {
		ge := asGraphError(err, "GET")
		if ge.Kind == GraphSignInAgain {
			return ge
		}
		if w.execCtx.Err() != nil {
			return nil // stopping: nothing was sent; it waits for the next start
		}
		w.memberResult(r.ID, id, func(m *Member) {
			m.Result, m.Detail = MemberFailed, "the status check before its call failed"
			m.GraphCode, m.GraphStatus, m.GraphRequestID = ge.Code, ge.Status, ge.RequestID
			if ge.Kind == GraphNotFound {
				m.Result, m.Detail = MemberNotSent, "the Cloud PC no longer exists"
			}
		})
		return nil
	}
	if !slices.Contains(w.cfg.AllowedStatuses, device.Status) {
		w.audit(ctx, r.ID, EventStatusRefused, "", map[string]string{"status": device.Status, "cloud_pc_id": id})
		w.memberResult(r.ID, id, func(m *Member) { m.Result, m.Detail, m.Device = MemberSkipped, device.Status, device })
		return nil
	}
	var hu HeadsUp
	if w.cfg.NotifyUser {
		hu = w.lookUpUser(ctx, &Request{ID: r.ID, Device: &device})
	}
	// Marked sending *before* the call (a restart never resends it), and
	// only while the batch still runs: a Stop wins over a turn not begun.
	var marked bool
	// Through the outbox loop, here and for each result: the next call
	// must not wait for chat (Slack paces thread lines at one a second).
	_, err = w.store.Apply(ctx, r.ID, Change{
		From: []State{StateExecuting},
		Update: func(u *Request) {
			marked = false
			m := u.Batch.Member(id)
			if u.Batch.Stopped || u.Batch.Halted || m == nil || m.Result != MemberWaiting {
				return
			}
			m.Result, m.Device, m.HeadsUp = MemberSending, device, hu
			marked = true
		},
		Notify: func(u *Request) []Outgoing {
			m := u.Batch.Member(id)
			if !marked || m == nil {
				return nil
			}
			return memberHeadsUpNews(u, m)
		},
	})
	w.wakeOutbox()
	if err != nil || !marked {
		if err != nil {
			w.log.Error("could not mark a batch member sending; not calling Graph", "ref", r.ID, "cloud_pc", id, "err", err)
		}
		return nil
	}
	if hu.Result != "" {
		w.audit(ctx, r.ID, EventUserNotified, r.DecidedBy, map[string]string{"cloud_pc_id": id, "upn": device.UserPrincipalName, "user": hu.UserID, "result": hu.Result})
	}
	call, err = s.CloudPCs.Reprovision(w.execCtx, id, r.Options)
	w.auditGraphCalls(r.ID, r.DecidedBy, call)
	requestID := call.LastRequestID()
	var ge *GraphError
	if err != nil {
		ge = asGraphError(err, "POST")
		if ge.RequestID != "" {
			requestID = ge.RequestID
		}
	}
	result := memberAfterCall(ge)
	w.memberResult(r.ID, id, func(m *Member) {
		m.Result, m.GraphRequestID = result, requestID
		if ge != nil {
			m.GraphCode, m.GraphStatus, m.Detail = ge.Code, ge.Status, ge.Message
		}
	})
	if result == MemberWaiting {
		return ge
	}
	return nil
}

// memberAfterCall maps Graph's answer to one member's call onto its result:
// accepted → sent; may have been carried out → outcome unknown; the sign-in
// was refused before anything was done → waiting again (for a fresh
// sign-in); anything else → failed.
func memberAfterCall(ge *GraphError) MemberResult {
	if ge == nil {
		return MemberSent
	}
	switch ge.Kind {
	case GraphOutcomeUnknown:
		return MemberUnknown
	case GraphSignInAgain:
		return MemberWaiting
	}
	return MemberFailed
}

// memberHeadsUpNews is the heads-up to a member's user as its call goes.
// A user who could not be told is not a DM each to the approver and the
// requester (a batch would send them dozens): the member's line under the
// prompt and the counts say so (Member.HeadsUp).
func memberHeadsUpNews(r *Request, m *Member) []Outgoing {
	if m.HeadsUp.Told() {
		return []Outgoing{notice(m.HeadsUp.UserID, Notice{Kind: NoticeHeadsUp, Request: r, Member: m})}
	}
	return nil
}

// memberResult stores one member's new result (durably: it is what Graph
// answered), with a line under the prompt and a redraw of its counts, and
// audits it. A member whose user had a heads-up and whose call did not go
// through is told so.
func (w *Workflow) memberResult(ref, id string, change func(*Member)) {
	var after Member
	err := w.durably("batch member result", func(ctx context.Context) error {
		_, err := w.store.Apply(ctx, ref, Change{
			Update: func(u *Request) {
				if m := u.Batch.Member(id); m != nil {
					change(m)
					after = *m
				}
			},
			Notify: func(u *Request) []Outgoing {
				m := u.Batch.Member(id)
				if m == nil || m.Result == MemberWaiting {
					return []Outgoing{redraw(u)}
				}
				out := []Outgoing{redraw(u), progress(u, Progress{Kind: ProgressMember, Member: m})}
				if m.HeadsUp.Told() && (m.Result == MemberFailed || m.Result == MemberUnknown) {
					out = append(out, notice(m.HeadsUp.UserID, Notice{Kind: NoticeUserUpdate, Request: u, Member: m}))
				}
				return out
			},
		})
		return err
	})
	if err != nil {
		// Stopping with the store refusing: the member stays as it was
		// stored (sending: the next start reads the call's audit record).
		w.log.Error("batch member result not stored", "ref", ref, "cloud_pc", id, "err", err)
		return
	}
	w.wakeOutbox()
	w.audit(w.execCtx, ref, EventBatchMember, "", memberDetails(after))
}

// endBatch ends a batch whose members have all had their turn (or were
// stopped): those still waiting are not sent; the batch succeeded when
// Graph accepted any call (and is followed, when configured), is outcome
// unknown when none was accepted but some may have been, was canceled when
// stopped before any call, and failed otherwise. Both sides are told.
func (w *Workflow) endBatch(ctx context.Context, ref string) {
	now := time.Now().UTC()
	var to State
	s := step{
		from: []State{StateExecuting},
		update: func(u *Request) {
			for i := range u.Batch.Members {
				if m := &u.Batch.Members[i]; m.Result == MemberWaiting {
					m.Result = MemberNotSent
				}
			}
			u.Batch.Halted = false
			if to == StateSucceeded && w.cfg.TrackFor > 0 {
				u.Tracking = Tracking{Since: now, Until: now.Add(w.cfg.TrackFor), NextCheck: now.Add(w.cfg.TrackEvery)}
			}
		},
		tellRequester: true, tellApprover: true,
		also: func(u *Request) []Outgoing {
			var out []Outgoing
			if u.Batch.StoppedBy != "" && u.Batch.StoppedBy != u.DecidedBy {
				out = append(out, notice(u.Batch.StoppedBy, Notice{Kind: NoticeStatus, Request: u}))
			}
			if u.Tracking.Active() {
				out = append(out, progress(u, Progress{Kind: ProgressAccepted, Every: w.cfg.TrackEvery}))
			}
			return out
		},
	}
	err := w.durably("batch end", func(ctx context.Context) error {
		r, err := w.store.Get(ctx, ref)
		if err != nil {
			return err
		}
		to = batchEnd(r.Batch)
		s.to = to
		s.event = map[State]EventKind{StateSucceeded: EventSucceeded, StateOutcomeUnknown: EventOutcomeUnknown, StateCanceled: EventCanceled, StateFailed: EventFailed}[to]
		s.details = batchCountDetails(r.Batch)
		done, err := w.move(ctx, ref, s)
		if err == nil {
			w.announce(ctx, done, s)
			if done.Tracking.Active() {
				w.nudge()
			}
		}
		return err
	})
	if err != nil {
		w.log.Error("batch end not stored", "ref", ref, "err", err)
	}
}

// batchEnd is the state a batch ends in (see endBatch).
func batchEnd(b *Batch) State {
	c := b.Counts()
	switch {
	case c.Sent() > 0:
		return StateSucceeded
	case c[MemberUnknown] > 0:
		return StateOutcomeUnknown
	case b.Stopped && c[MemberFailed] == 0:
		return StateCanceled
	}
	return StateFailed
}

// batchCountDetails are a batch's counts for the audit trail.
func batchCountDetails(b *Batch) map[string]string {
	d := map[string]string{}
	for result, n := range b.Counts() {
		d[string(result)] = strconv.Itoa(n)
	}
	if b.Stopped {
		d["stopped_by"] = b.StoppedBy
	}
	return d
}

// haltBatch stops sending a running batch until its approver resumes it
// with a new sign-in, or someone stops it (why: what made it halt; nil
// after a restart). Members caught sending are settled first.
func (w *Workflow) haltBatch(ctx context.Context, ref string, why *Outcome) {
	halted, err := w.apply(ctx, ref, Change{
		From: []State{StateExecuting},
		Update: func(u *Request) {
			u.Batch.Halted, u.Outcome = true, why
		},
		Notify: func(u *Request) []Outgoing {
			return []Outgoing{redraw(u), notice(u.DecidedBy, Notice{Kind: NoticeBatchHalted, Request: u, Why: why})}
		},
	})
	if err != nil {
		w.log.Error("could not halt the batch", "ref", ref, "err", err)
		return
	}
	c := halted.Batch.Counts()
	w.audit(ctx, ref, EventBatchHalted, "", map[string]string{"waiting": strconv.Itoa(c[MemberWaiting])})
	w.log.Warn("batch halted; waiting for its approver to resume or stop it", "ref", ref)
}

// recoverBatch settles a batch found executing at start: a member whose
// call may have been in flight is settled from its call's audit record, or
// is outcome unknown (never resent); members not sent yet wait for the
// approver to resume (with a new sign-in) or stop the batch.
func (w *Workflow) recoverBatch(ctx context.Context, r *Request) {
	answers := w.recordedMemberAnswers(ctx, r)
	var settled []Member
	_, err := w.apply(ctx, r.ID, Change{
		From: []State{StateExecuting},
		Update: func(u *Request) {
			settled = settled[:0]
			for i := range u.Batch.Members {
				m := &u.Batch.Members[i]
				if m.Result != MemberSending {
					continue
				}
				m.Result, m.Detail = MemberUnknown, "the bot stopped during its call"
				if a, ok := answers[strings.ToLower(m.CloudPCID)]; ok {
					var ge *GraphError
					if err := answerError(a.status, a.requestID); err != nil {
						ge = err.(*GraphError)
					}
					m.Result, m.Detail, m.GraphRequestID, m.GraphStatus = memberAfterCall(ge), "", a.requestID, a.status
				}
				settled = append(settled, *m)
			}
		},
		Notify: func(u *Request) []Outgoing {
			var out []Outgoing
			for i := range settled {
				out = append(out, progress(u, Progress{Kind: ProgressMember, Member: &settled[i]}))
			}
			return out
		},
	})
	if err != nil {
		w.log.Error("could not settle the batch after a restart", "ref", r.ID, "err", err)
		return
	}
	for _, m := range settled {
		w.audit(ctx, r.ID, EventBatchMember, "", memberDetails(m))
	}
	now, err := w.store.Get(ctx, r.ID)
	if err != nil {
		w.log.Error("could not read the batch after a restart", "ref", r.ID, "err", err)
		return
	}
	if now.Batch.Stopped || now.Batch.Counts()[MemberWaiting] == 0 {
		w.endBatch(ctx, r.ID)
		return
	}
	w.haltBatch(ctx, r.ID, &Outcome{Kind: OutcomeInFlightAtRestart})
}

type recordedCall struct {
	status    int
	requestID string
}

// recordedMemberAnswers are the answers to the batch's reprovision calls
// found in the audit trail, by Cloud PC id (the last attempt of each).
func (w *Workflow) recordedMemberAnswers(ctx context.Context, r *Request) map[string]recordedCall {
	events, err := w.store.Events(ctx, r.CreatedAt)
	if err != nil {
		w.log.Error("could not read the audit trail", "ref", r.ID, "err", err)
		return nil
	}
	answers := map[string]recordedCall{}
	for _, e := range events {
		if e.RequestID != r.ID || e.Kind != EventGraphCall || e.Details["method"] != "POST" {
			continue
		}
		path := strings.TrimSuffix(e.Details["path"], "/reprovision")
		id := strings.ToLower(path[strings.LastIndex(path, "/")+1:])
		status, _ := strconv.Atoi(e.Details["status"])
		if status != 0 {
			answers[id] = recordedCall{status, e.Details["request_id"]}
		} else {
			delete(answers, id) // a later attempt got no answer
		}
	}
	return answers
}

// StopBatch stops a running or halted batch: no more calls are sent (those
// in flight finish), and the batch ends once they have. Any approver of
// the batch may stop it.
func (w *Workflow) StopBatch(ctx context.Context, user, ref string) (*Request, error) {
	r, err := w.load(ctx, ref, ActionStopBatch)
	if err != nil {
		return nil, err
	}
	if approvers := w.cfg.Policy.ApproversOf(r); !slices.Contains(approvers, user) {
		return nil, w.refuse(ctx, user, &Refusal{Kind: RefusedNotAnApprover, Action: ActionStopBatch, Request: r, Users: approvers})
	}
	if !r.IsBatch() || r.State != StateExecuting || r.Batch.Stopped {
		return nil, &Refusal{Kind: RefusedHandled, Action: ActionStopBatch, Ref: r.ID, Request: r}
	}
	var stopped bool
	r, err = w.apply(ctx, ref, Change{
		From: []State{StateExecuting},
		Update: func(u *Request) {
			stopped = !u.Batch.Stopped
			if stopped {
				u.Batch.Stopped, u.Batch.StoppedBy = true, user
			}
		},
		Notify: func(u *Request) []Outgoing { return []Outgoing{redraw(u)} },
	})
	if err != nil {
		return nil, late(err, ActionStopBatch)
	}
	if !stopped {
		return nil, &Refusal{Kind: RefusedHandled, Action: ActionStopBatch, Ref: r.ID, Request: r}
	}
	w.audit(ctx, r.ID, EventBatchStopped, user, map[string]string{"waiting": strconv.Itoa(r.Batch.Counts()[MemberWaiting])})
	// A halted batch has nobody sending for it: it ends now. A running one
	// ends when its calls in flight are answered.
	if r.Batch.Halted && w.inFlight.claim(r.ID) {
		w.spawn(func() {
			defer w.inFlight.remove(r.ID)
			ctx, cancel := detached(w.execCtx)
			defer cancel()
			w.endBatch(ctx, r.ID)
		})
	}
	return r, nil
}

// ResumeBatch goes on with a halted batch: its approver (who confirmed it)
// signs in afresh, then the members not sent yet are sent.
func (w *Workflow) ResumeBatch(ctx context.Context, user, ref string) (*Request, error) {
	r, err := w.load(ctx, ref, ActionResumeBatch)
	if err != nil {
		return nil, err
	}
	if !r.IsBatch() || r.State != StateExecuting || !r.Batch.Halted || r.Batch.Stopped {
		return nil, &Refusal{Kind: RefusedHandled, Action: ActionResumeBatch, Ref: r.ID, Request: r}
	}
	if user != r.DecidedBy {
		return nil, w.refuse(ctx, user, &Refusal{Kind: RefusedNotConfirmer, Action: ActionResumeBatch, Request: r, Users: []string{r.DecidedBy}})
	}
	if !w.inFlight.claim(r.ID) {
		return nil, &Refusal{Kind: RefusedBusy, Action: ActionResumeBatch, Ref: r.ID, Request: r}
	}
	work := *r
	w.spawn(func() { w.resumeBatch(&work, user) })
	return r, nil
}

func (w *Workflow) resumeBatch(r *Request, user string) {
	defer w.inFlight.remove(r.ID)
	s, err := w.signIn(r, user, SignInToResumeBatch)
	if err != nil {
		w.log.Warn("sign-in to resume the batch failed", "ref", r.ID, "err", err)
		ctx, cancel := detached(w.execCtx)
		defer cancel()
		// Stopped while the approver was signing in: nobody else could end
		// it (this worker held it), so it ends now.
		if now, gerr := w.store.Get(ctx, r.ID); gerr == nil && now.State == StateExecuting && now.Batch.Stopped {
			w.endBatch(ctx, r.ID)
			return
		}
		w.tell(user, Notice{Kind: NoticeBatchHalted, Request: r, Why: w.signInOutcome(err)})
		return
	}
	ctx, cancel := context.WithTimeout(w.execCtx, workTimeout)
	defer cancel()
	var resumed bool
	running, err := w.apply(ctx, r.ID, Change{
		From: []State{StateExecuting},
		Update: func(u *Request) {
			resumed = u.Batch.Halted && !u.Batch.Stopped
			if resumed {
				u.Batch.Halted, u.Outcome, u.SignedInAs = false, nil, s.Username
			}
		},
		Notify: func(u *Request) []Outgoing { return []Outgoing{redraw(u)} },
	})
	if err != nil || !resumed {
		w.log.Info("batch not resumed", "ref", r.ID, "err", err)
		if err == nil && running.Batch.Stopped {
			w.endBatch(ctx, r.ID)
		}
		return
	}
	w.audit(ctx, r.ID, EventBatchResumed, user, map[string]string{"upn": s.Username, "waiting": strconv.Itoa(running.Batch.Counts()[MemberWaiting])})
	w.sendMembers(running, s)
}

// trackBatch looks once at every Cloud PC of a batch whose reprovision is
// still followed: one Graph call per Cloud PC, or one paged list for a
// batch by policy. A member has finished when it reads provisioned (or
// failed) after a working status was seen; the batch's following ends when
// every member has, or at Tracking.Until.
func (w *Workflow) trackBatch(ctx context.Context, r *Request) *Request {
	s := w.sessions.forRequest(r.ID, r.DecidedBy)
	if s == nil {
		return w.pauseTracking(ctx, r)
	}
	seen := map[string]CloudPC{}
	if r.Batch.PolicyID != "" {
		pcs, calls, err := s.CloudPCs.PolicyCloudPCs(ctx, r.Batch.PolicyID)
		w.auditGraphCalls(r.ID, r.DecidedBy, calls...)
		if err != nil && w.trackingRefused(ctx, r, err) {
			return w.pauseTracking(ctx, r)
		}
		for _, pc := range pcs {
			seen[strings.ToLower(pc.ID)] = pc
		}
	} else {
		for _, m := range r.Batch.Members {
			if !followed(m) {
				continue
			}
			device, call, err := s.CloudPCs.Get(ctx, m.CloudPCID)
			w.auditGraphCalls(r.ID, r.DecidedBy, call)
			if err != nil {
				if w.trackingRefused(ctx, r, err) {
					return w.pauseTracking(ctx, r)
				}
				continue
			}
			seen[strings.ToLower(m.CloudPCID)] = device
		}
	}
	now := time.Now().UTC()
	t := r.Tracking
	t.Checks++
	t.NextCheck = now.Add(w.trackInterval(t.Checks))
	members := slices.Clone(r.Batch.Members)
	var finished []int
	for i := range members {
		m := &members[i]
		device, ok := seen[strings.ToLower(m.CloudPCID)]
		if !followed(*m) || !ok {
			continue
		}
		if endStatus(device.Status) && !endStatus(m.Device.Status) {
			m.Tracked, m.Result = TrackProvisioned, MemberSucceeded
			if device.Status == "failed" {
				m.Tracked, m.Result, m.Detail = TrackFailed, MemberFailed, "the reprovision failed"
			}
			finished = append(finished, i)
		}
		m.Device = device
	}
	open := slices.ContainsFunc(members, followed)
	if !open || !now.Before(t.Until) {
		return w.endBatchTracking(ctx, r, t, members, finished)
	}
	updated, err := w.apply(ctx, r.ID, Change{
		Update: func(u *Request) { u.Tracking, u.Batch.Members = t, members },
		Notify: func(u *Request) []Outgoing { return memberNews(u, finished) },
	})
	if err != nil {
		w.log.Error("batch tracking state not stored", "ref", r.ID, "err", err)
		return nil
	}
	w.audit(ctx, r.ID, EventTracked, "", map[string]string{"followed": strconv.Itoa(countFunc(members, followed)), "finished": strconv.Itoa(len(finished))})
	return updated
}

// trackingRefused reports whether a failed look means the sign-in must be
// renewed (and forgets it).
func (w *Workflow) trackingRefused(ctx context.Context, r *Request, err error) bool {
	ge := asGraphError(err, "GET")
	w.log.Warn("batch tracking look failed", "ref", r.ID, "kind", string(ge.Kind), "err", err)
	if ge.Kind == GraphSignInAgain {
		w.sessions.forget(r.DecidedBy, r.ID, ge.Claims)
		return true
	}
	return false
}

// followed: Graph accepted the member's call and how it ends is not known.
func followed(m Member) bool { return m.Result == MemberSent && m.Tracked == "" }

func countFunc[T any](s []T, f func(T) bool) int {
	n := 0
	for _, v := range s {
		if f(v) {
			n++
		}
	}
	return n
}

// memberNews is a line under the prompt for each member that finished, and
// word to its user.
func memberNews(u *Request, finished []int) []Outgoing {
	out := []Outgoing{redraw(u)}
	for _, i := range finished {
		m := &u.Batch.Members[i]
		out = append(out, progress(u, Progress{Kind: ProgressMember, Member: m}))
		if m.HeadsUp.Told() {
			out = append(out, notice(m.HeadsUp.UserID, Notice{Kind: NoticeUserReady, Request: u, Member: m}))
		}
	}
	return out
}

// endBatchTracking ends following a batch: members still followed timed
// out (their users hear that IT knows), the Cloud PCs are free, and the
// requester gets the summary.
func (w *Workflow) endBatchTracking(ctx context.Context, r *Request, t Tracking, members []Member, finished []int) *Request {
	for i := range members {
		if followed(members[i]) {
			members[i].Tracked = TrackTimedOut
			finished = append(finished, i)
		}
	}
	t.Result, t.Paused = batchTrackResult(members), false
	updated, err := w.apply(ctx, r.ID, Change{
		Update: func(u *Request) { u.Tracking, u.Batch.Members = t, members },
		Notify: func(u *Request) []Outgoing {
			out := append(memberNews(u, finished), progress(u, Progress{Kind: ProgressEnded}))
			return append(out, notice(u.RequesterID, Notice{Kind: NoticeStatus, Request: u}))
		},
	})
	if err != nil {
		w.log.Error("batch tracking result not stored", "ref", r.ID, "err", err)
		return nil
	}
	w.sessions.release(r.ID)
	c := updated.Batch.Counts()
	w.log.Info("batch tracking finished", "ref", r.ID, "result", t.Result, "provisioned", c[MemberSucceeded])
	w.audit(ctx, r.ID, EventTracked, "", map[string]string{"result": t.Result, "provisioned": strconv.Itoa(c[MemberSucceeded]), "failed": strconv.Itoa(c[MemberFailed])})
	return updated
}

// batchTrackResult: provisioned when every followed member was; failed
// when any reprovision failed; else timed out.
func batchTrackResult(members []Member) string {
	result := TrackProvisioned
	for _, m := range members {
		switch m.Tracked {
		case TrackFailed:
			return TrackFailed
		case TrackTimedOut:
			result = TrackTimedOut
		}
	}
	return result
}

// timeOutMembers marks the members still followed as timed out (following
// the batch ended with nobody signed in to look).
func timeOutMembers(b *Batch) {
	if b == nil {
		return
	}
	for i := range b.Members {
		if followed(b.Members[i]) {
			b.Members[i].Tracked = TrackTimedOut
		}
	}
}
