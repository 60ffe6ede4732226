package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// ephemeral is the ack payload that answers a slash command privately.
type ephemeral struct {
	ResponseType string        `json:"response_type"`
	Text         string        `json:"text"`
	Blocks       []slack.Block `json:"blocks,omitempty"`
}

// handleSlashCommand validates in memory (command text and policy), acks
// with the reply, and only then hands the I/O to a worker (queue.go). A
// full queue is said in the ack, and nothing is recorded.
func (b *Bot) handleSlashCommand(sm *socketmode.Client, req *socketmode.Request, sc slack.SlashCommand, arrived time.Time) {
	parsed, err := ParseCommand(sc.Text)
	switch {
	case err != nil:
		b.refuseCommand(sm, req, sc, err, true)
		return
	case parsed.Help:
		b.ack(sm, req, ephemeral{ResponseType: "ephemeral", Text: Usage})
		return
	case parsed.Reason == "":
		if err := b.mayAsk(sc, parsed); err != nil {
			b.refuseCommand(sm, req, sc, err, false)
			return
		}
		if _, ok := reasonFormMetadata(sc, parsed); !ok {
			b.ack(sm, req, ephemeral{ResponseType: "ephemeral", Text: listTooLongForFormText})
			b.log.Info("reason form not opened: the list does not fit in it", "user", sc.UserID)
			return
		}
		if !b.forms.book() {
			b.ack(sm, req, ephemeral{ResponseType: "ephemeral", Text: busyFormText})
			b.log.Warn("reason form not opened: too many at once", "user", sc.UserID)
			return
		}
		// The trigger_id lives about 3 s: open the form right after the ack.
		b.ack(sm, req, nil)
		b.forms.push(job{run: func(ctx context.Context) { b.askForReason(withTrigger(ctx, arrived), sc, parsed) }})
		return
	}
	r, err := b.newRequest(sc.UserID, sc.ChannelID, parsed, parsed.Reason)
	if err != nil {
		b.refuseCommand(sm, req, sc, err, false)
		return
	}
	if !b.requests.book() {
		b.ack(sm, req, ephemeral{ResponseType: "ephemeral", Text: busyRequestText})
		b.log.Warn("request refused: too many at once", "user", sc.UserID, "target", r.Target)
		return
	}
	text, blocks := requesterConfirmation(r)
	b.ack(sm, req, ephemeral{ResponseType: "ephemeral", Text: text, Blocks: blocks})
	b.requests.push(b.openJob(r, sc.ResponseURL, nil))
}

// Said in the ack when a work queue is full, or a batch's list is too long
// for the reason form to carry.
const (
	busyRequestText        = ":warning: Too many requests at this moment: yours was not recorded. Please try again in a minute."
	busyFormText           = ":warning: Too many requests at this moment to open the form. Please give the reason after the target: `/reprovision <target> <reason>`."
	listTooLongForFormText = ":warning: That list is too long for the form that asks for a reason. Please give the reason after the list: `/reprovision <cloud PC>,<cloud PC>,… <reason>`."
)

// newRequest builds, in memory, the request c asks for with reason: one
// Cloud PC, or a batch.
func (b *Bot) newRequest(user, channel string, c Command, reason string) (*approvals.Request, error) {
	if c.IsBatch() {
		return b.wf.NewBatch(user, channel, c.Targets, c.Policy, reason, c.Options)
	}
	return b.wf.NewRequestWith(user, channel, c.Target, reason, c.Options)
}

// mayAsk checks, before the reason form opens, what recording c will
// check: the policy, and a batch's size and approvals (NewBatch builds
// the batch in memory only, and it is dropped).
func (b *Bot) mayAsk(sc slack.SlashCommand, c Command) error {
	if c.IsBatch() {
		_, err := b.newRequest(sc.UserID, sc.ChannelID, c, "")
		return err
	}
	return b.wf.Policy().MayRequest(sc.UserID, sc.ChannelID)
}

// openJob is the queued work of an acked request: first (if set) before,
// then openRequest. If the bot stops before a worker gets to it, the
// requester is told it was not recorded.
func (b *Bot) openJob(r *approvals.Request, responseURL string, before func(ctx context.Context)) job {
	return job{
		run: func(ctx context.Context) {
			if before != nil {
				before(ctx)
			}
			b.openRequest(ctx, r, responseURL)
		},
		drop: func(ctx context.Context) {
			b.log.Error("request not recorded: the bot stopped before storing it", "ref", r.ID, "requester", r.RequesterID, "target", r.Target)
			if ctx.Err() == nil {
				b.tellUser(ctx, responseURL, r.RequestChannelID, r.RequesterID, fmt.Sprintf(
					":warning: Request %s was not recorded: the bot was restarting. Please ask again in a minute.", r.ID))
			}
		},
	}
}

// refuseCommand answers a refused command in the ack (with usage when the
// text was malformed) and records the refusal.
func (b *Bot) refuseCommand(sm *socketmode.Client, req *socketmode.Request, sc slack.SlashCommand, err error, usage bool) {
	text := ":warning: " + replyText(err)
	if usage {
		text += "\n" + Usage
	}
	b.ack(sm, req, ephemeral{ResponseType: "ephemeral", Text: text})
	b.log.Info("command refused", "user", sc.UserID, "channel", sc.ChannelID, "reason", err.Error())
	b.wf.RefusedRequest(sc.UserID, sc.ChannelID, err)
}

// reasonForm is what the reason modal carries between open and submit:
// one Cloud PC (Target), or a batch's list (Targets) or policy (Policy).
type reasonForm struct {
	Target      string   `json:"target,omitempty"`
	Targets     []string `json:"targets,omitempty"`
	Policy      string   `json:"policy,omitempty"`
	Channel     string   `json:"channel"`
	ResponseURL string   `json:"response_url,omitempty"`
}

// maxPrivateMetadata is Slack's limit on a view's private_metadata.
const maxPrivateMetadata = 3000

// reasonFormMetadata is the reason form's private_metadata for parsed;
// false when it does not fit (a long list).
func reasonFormMetadata(sc slack.SlashCommand, parsed Command) (string, bool) {
	meta, _ := json.Marshal(reasonForm{Target: parsed.Target, Targets: parsed.Targets, Policy: parsed.Policy, Channel: sc.ChannelID, ResponseURL: sc.ResponseURL})
	return string(meta), len(meta) <= maxPrivateMetadata
}

// formCommand reads back what the reason form carries, checked as the
// command was: one Cloud PC, a list or a policy, never two of them.
func formCommand(form reasonForm) (Command, error) {
	switch {
	case form.Policy != "" && form.Target == "" && len(form.Targets) == 0:
		policy, err := checkPolicy(form.Policy)
		return Command{Policy: policy}, err
	case len(form.Targets) > 1 && form.Target == "" && form.Policy == "":
		targets, err := parseTargetList(strings.Join(form.Targets, ","))
		return Command{Targets: targets}, err
	case len(form.Targets) == 0 && form.Policy == "":
		return parseTarget(form.Target)
	}
	return Command{}, errors.New("the form names no Cloud PC, or several things")
}

func (b *Bot) askForReason(ctx context.Context, sc slack.SlashCommand, parsed Command) {
	meta, _ := reasonFormMetadata(sc, parsed)
	modal := reasonModal(meta, parsed.Target, parsed.Options)
	if parsed.IsBatch() {
		modal = batchReasonModal(meta, parsed)
	}
	err := b.slackCall(ctx, "views.open", func(ctx context.Context) error {
		_, err := b.api.OpenViewContext(ctx, sc.TriggerID, modal)
		return err
	})
	var paced *pacedError
	switch {
	case errors.As(err, &paced):
		// Its turn would come after the trigger_id expires.
		b.log.Info("reason form not opened: too many at once", "user", sc.UserID, "err", err)
		b.tellUser(ctx, sc.ResponseURL, sc.ChannelID, sc.UserID, busyFormText)
	case err != nil:
		b.log.Warn("reason form not opened", "user", sc.UserID, "err", err)
		b.tellUser(ctx, sc.ResponseURL, sc.ChannelID, sc.UserID,
			":warning: I could not open the form for a reason. Please give it after the target: `/reprovision <target> <reason>`.")
	}
}

// reasonSubmitted handles the reason form. Validation errors go back in the
// ack so Slack shows them on the form.
func (b *Bot) reasonSubmitted(sm *socketmode.Client, req *socketmode.Request, cb slack.InteractionCallback) {
	var form reasonForm
	parsed, err := Command{}, json.Unmarshal([]byte(cb.View.PrivateMetadata), &form)
	if err == nil {
		parsed, err = formCommand(form)
	}
	if err != nil {
		b.ack(sm, req, nil)
		b.log.Warn("reason form with bad metadata", "user", cb.User.ID)
		return
	}
	reason := formReason(cb)
	opts, problems := formOptions(cb)
	if len(problems) > 0 {
		b.log.Warn("reason form with options it does not offer", "user", cb.User.ID)
	}
	if err := CheckReason(reason, true); err != nil {
		if problems == nil {
			problems = map[string]string{}
		}
		problems[blockReason] = err.Error()
	}
	if len(problems) > 0 {
		b.ack(sm, req, slack.NewErrorsViewSubmissionResponse(problems))
		return
	}
	parsed.Options = opts
	r, err := b.newRequest(cb.User.ID, form.Channel, parsed, reason)
	if err != nil {
		b.ack(sm, req, slack.NewErrorsViewSubmissionResponse(map[string]string{blockReason: replyText(err)}))
		return
	}
	if !b.requests.book() {
		b.ack(sm, req, slack.NewErrorsViewSubmissionResponse(map[string]string{blockReason: "Too many requests at this moment: please submit again in a minute."}))
		return
	}
	b.ack(sm, req, nil)
	b.requests.push(b.openJob(r, form.ResponseURL, func(ctx context.Context) {
		text, blocks := requesterConfirmation(r)
		b.tellUserBlocks(ctx, form.ResponseURL, form.Channel, r.RequesterID, text, blocks)
	}))
}

// formReason is the reason typed into the reason or deny form, without
// invisible characters (see stripInvisible) and surrounding white space.
func formReason(cb slack.InteractionCallback) string {
	if cb.View.State == nil {
		return ""
	}
	return strings.TrimSpace(stripInvisible(cb.View.State.Values[blockReason][inputReason].Value))
}

// formOptions reads the reprovision options chosen in the reason form.
// What a submission says comes from outside (any client can send it): only
// the choices the form offers are taken; any other value is a problem for
// its select, keyed by block for the form to show.
func formOptions(cb slack.InteractionCallback) (approvals.Options, map[string]string) {
	if cb.View.State == nil {
		return approvals.Options{}, nil
	}
	var problems map[string]string
	pick := func(blockID, actionID string, choices []formChoice, problem string) string {
		v := cb.View.State.Values[blockID][actionID].SelectedOption.Value
		if v == "" || v == asProvisioned {
			return ""
		}
		for _, c := range choices {
			if c.value == v {
				return v
			}
		}
		if problems == nil {
			problems = map[string]string{}
		}
		problems[blockID] = problem
		return ""
	}
	opts := approvals.Options{
		OSVersion:       pick(blockOS, inputOS, osChoices, "Please choose one of the Windows versions offered."),
		UserAccountType: pick(blockAccount, inputAccount, accountChoices, "Please choose one of the user account types offered."),
	}
	if problems != nil {
		return approvals.Options{}, problems
	}
	return opts, nil
}

// openRequest stores the request and prompts its approvers (the workflow
// does both); a problem is told to the requester. A prompt that waits for
// its turn under Slack's rate limits is no problem: the outbox posts it
// when the turn comes, and the receipt said whom it asks.
func (b *Bot) openRequest(ctx context.Context, r *approvals.Request, responseURL string) {
	err := b.wf.Open(ctx, r)
	paced := b.pacedPrompts.take(r.ID)
	var refusal *approvals.Refusal
	if paced && errors.As(err, &refusal) && refusal.Kind == approvals.RefusedNoApprover {
		b.log.Info("approval prompt queued: its turn under Slack's rate limits comes later", "ref", r.ID)
		return
	}
	if err != nil {
		b.tellUser(ctx, responseURL, r.RequestChannelID, r.RequesterID, replyText(err))
	}
}
