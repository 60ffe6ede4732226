package bot

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// homeListLimit: "Your requests" shows the latest 20; "Awaiting you" at
// most as many, so the tab stays under Slack's 100 blocks.
const homeListLimit = 20

// appHomeOpened extracts the user from an app_home_opened event on the Home tab.
func appHomeOpened(data any) (string, bool) {
	outer, ok := data.(slackevents.EventsAPIEvent)
	if !ok {
		return "", false
	}
	ev, ok := outer.InnerEvent.Data.(*slackevents.AppHomeOpenedEvent)
	if !ok || ev.Tab != "home" || ev.User == "" {
		return "", false
	}
	return ev.User, true
}

func (b *Bot) homeOpened(ctx context.Context, user string) {
	b.homeViewers.add(user)
	b.publishHome(ctx, user)
}

// refreshHomes keeps the Home tab current for everyone r concerns who has
// looked at it since the bot started: the redraw is left to the homes loop
// while Run runs (one per user however many changes came meanwhile),
// made here otherwise.
func (b *Bot) refreshHomes(ctx context.Context, r *approvals.Request) {
	for _, user := range append([]string{r.RequesterID}, b.wf.Policy().ApproversOf(r)...) {
		if b.homeViewers.has(user) && !b.homes.mark(user) {
			b.publishHome(ctx, user)
		}
	}
}

// homeRefresh redraws Home tabs in the background, each at most once per
// round whatever number of changes asked for it: a burst of requests costs
// an approver looking at the tab a redraw per round, not one per request
// (views.publish is paced like every call, at Tier 4).
type homeRefresh struct {
	mu      sync.Mutex
	dirty   map[string]bool
	running bool
	wake    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func (h *homeRefresh) init() {
	h.dirty = map[string]bool{}
	h.wake = make(chan struct{}, 1)
	h.done = make(chan struct{})
}

// mark asks for user's Home tab to be redrawn; false when the loop is not
// running (the caller redraws it).
func (h *homeRefresh) mark(user string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.running {
		return false
	}
	h.dirty[user] = true
	select {
	case h.wake <- struct{}{}:
	default:
	}
	return true
}

// run redraws the tabs asked for, until stop or ctx ends.
func (h *homeRefresh) run(ctx context.Context, publish func(ctx context.Context, user string)) {
	h.mu.Lock()
	h.running = true
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.running = false
		h.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.done:
			return
		case <-h.wake:
		}
		h.mu.Lock()
		users := make([]string, 0, len(h.dirty))
		for u := range h.dirty {
			users = append(users, u)
		}
		clear(h.dirty)
		h.mu.Unlock()
		slices.Sort(users)
		for _, u := range users {
			pctx, cancel := context.WithTimeout(ctx, interactionTimeout)
			publish(pctx, u)
			cancel()
		}
	}
}

// stop ends run (a redraw under way finishes first).
func (h *homeRefresh) stop() { h.once.Do(func() { close(h.done) }) }

// publishHome renders user's Home tab: for approvers the requests awaiting
// them (with their buttons), for everyone their own latest requests.
func (b *Bot) publishHome(ctx context.Context, user string) {
	blocks := []slack.Block{slack.NewHeaderBlock(plain("Cloud PC reprovisioning"))}
	if slices.Contains(b.wf.Policy().Approvers, user) {
		awaiting, err := b.wf.AwaitingDecision(ctx, user, homeListLimit)
		if err != nil {
			b.log.Error("home: pending requests not listed", "err", err)
			return
		}
		blocks = append(blocks, awaitingBlocks(awaiting)...)
	}
	mine, err := b.wf.RequestsOf(ctx, user, homeListLimit)
	if err != nil {
		b.log.Error("home: requests not listed", "err", err)
		return
	}
	blocks = append(blocks, yourRequestsBlocks(mine)...)
	view := slack.HomeTabViewRequest{Type: slack.VTHomeTab, Blocks: slack.Blocks{BlockSet: blocks}}
	err = b.slackCall(ctx, "views.publish", func(ctx context.Context) error {
		_, err := b.api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: user, View: view})
		return err
	})
	if err != nil {
		b.log.Error("home not published", "user", user, "err", err)
	}
}

// yourRequestsBlocks is the "Your requests" section: the user's own
// requests, as the requester may see them.
func yourRequestsBlocks(mine []*approvals.Request) []slack.Block {
	blocks := []slack.Block{section("*Your requests*")}
	for _, r := range mine {
		blocks = append(blocks, section(fmt.Sprintf("*%s* %s%s, %s\n%s", r.ID, requesterReprovisionWhat(r), withOptions(r.Options), slackDate(r.CreatedAt), statusLine(r))))
	}
	if len(mine) == 0 {
		blocks = append(blocks, section("_None yet. Use `/reprovision <cloud PC> <reason>` to ask._"))
	}
	return blocks
}

// awaitingBlocks is the approver's "Awaiting you" section, with buttons.
func awaitingBlocks(pending []*approvals.Request) []slack.Block {
	blocks := []slack.Block{section("*Awaiting you*")}
	for _, r := range pending {
		text := fmt.Sprintf("*%s* %s from <@%s>, %s", r.ID, reprovisionWhat(r), r.RequesterID, slackDate(r.CreatedAt))
		if opts := optionsText(r.Options); opts != "" {
			text += "\nReprovision with " + opts
		}
		if r.Reason != "" {
			text += "\n" + reasonText(r.Reason)
		}
		// action_ids stay unique within the view: suffixed with the reference.
		title, warning := "Reprovision this Cloud PC?", wipeWarning
		if r.IsBatch() {
			title, warning = "Reprovision these Cloud PCs?", batchWipeWarning
		}
		approve := slack.NewButtonBlockElement(actionApprove+":"+r.ID, r.ID, plain("Approve")).WithStyle(slack.StyleDanger).
			WithConfirm(slack.NewConfirmationBlockObject(plain(title),
				mrkdwn(warning), plain("Approve"), plain("Go back")))
		deny := slack.NewButtonBlockElement(actionDeny+":"+r.ID, r.ID, plain("Deny"))
		blocks = append(blocks, section(text), slack.NewActionBlock("home-decision:"+r.ID, approve, deny))
	}
	if len(pending) == 0 {
		blocks = append(blocks, section("_Nothing is waiting for you._"))
	}
	return append(blocks, slack.NewDividerBlock())
}
