// Command floor is the benchmarks' floor: the least a slack-go Socket Mode
// bot can do for a /reprovision command, with the same library and the same
// Slack work per command as reprovision-bot, and nothing else (no policy,
// no store, no pacing, no metrics):
//
//   - "/reprovision <cloud PC> <reason>": ack with the requester's receipt
//     (ephemeral text and a Cancel button), then post the approval prompt
//     (text, fields, reason, warning, Approve/Deny) to the approver's DM;
//   - "/reprovision <cloud PC>": ack with no text, then views.open for the
//     reason form.
//
// It follows slack-go's own Socket Mode example: one loop reading
// client.Events that acks at once, and a goroutine per command for the Web
// API call. BenchmarkBurst (cmd/reprovision-bot) builds and runs it as a
// process of its own beside the real binary. Configuration: SLACK_APP_TOKEN,
// SLACK_BOT_TOKEN, SLACK_API_URL, REPROVISION_APPROVER (one user id).
package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	approver := os.Getenv("REPROVISION_APPROVER")
	api := slack.New(os.Getenv("SLACK_BOT_TOKEN"),
		slack.OptionAppLevelToken(os.Getenv("SLACK_APP_TOKEN")),
		slack.OptionAPIURL(os.Getenv("SLACK_API_URL")))
	client := socketmode.New(api)
	go func() {
		if err := client.RunContext(ctx); err != nil && ctx.Err() == nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case evt := <-client.Events:
			if evt.Request == nil || evt.Request.EnvelopeID == "" {
				continue
			}
			cmd, ok := evt.Data.(slack.SlashCommand)
			if evt.Type != socketmode.EventTypeSlashCommand || !ok {
				client.Ack(*evt.Request)
				continue
			}
			target, reason, _ := strings.Cut(strings.TrimSpace(cmd.Text), " ")
			if reason == "" {
				client.Ack(*evt.Request)
				go openForm(ctx, api, cmd.TriggerID, target)
				continue
			}
			ref := reference()
			text := fmt.Sprintf("Request %s: asking <@%s> to approve reprovisioning `%s`. I'll tell you when they decide.", ref, approver, target)
			client.Ack(*evt.Request, map[string]any{
				"response_type": "ephemeral",
				"text":          text,
				"blocks": []slack.Block{section(text),
					slack.NewActionBlock("request:"+ref, slack.NewButtonBlockElement("cancel", ref, plain("Cancel request")))},
			})
			go postPrompt(ctx, api, approver, ref, target, reason, cmd.UserID)
		}
	}
}

const warning = ":warning: Reprovisioning *signs the user out and deletes all their data and apps* on this Cloud PC. It cannot be undone."

func postPrompt(ctx context.Context, api *slack.Client, approver, ref, target, reason, requester string) {
	now := time.Now()
	approve := slack.NewButtonBlockElement("approve", ref, plain("Approve")).WithStyle(slack.StyleDanger).
		WithConfirm(slack.NewConfirmationBlockObject(plain("Reprovision this Cloud PC?"),
			mrkdwn(fmt.Sprintf("`%s` will be wiped: the user is signed out and all data and apps are deleted.", target)),
			plain("Approve"), plain("Go back")))
	blocks := []slack.Block{
		section(fmt.Sprintf("*Reprovision request %s*", ref)),
		slack.NewSectionBlock(nil, []*slack.TextBlockObject{
			mrkdwn(fmt.Sprintf("*Cloud PC*\n`%s`", target)),
			mrkdwn(fmt.Sprintf("*Requested by*\n<@%s>", requester)),
			mrkdwn(fmt.Sprintf("*When*\n<!date^%d^{date_short_pretty} {time}|%s>", now.Unix(), now.UTC().Format("2006-01-02 15:04 UTC"))),
			mrkdwn(fmt.Sprintf("*Approvers*\n<@%s>", approver)),
		}, nil),
		section("*Reason*\n" + reason),
		section(warning),
		slack.NewActionBlock("decision:"+ref, approve, slack.NewButtonBlockElement("deny", ref, plain("Deny"))),
		slack.NewContextBlock("status:"+ref, mrkdwn(":hourglass: Awaiting a decision.")),
	}
	_, _, err := api.PostMessageContext(ctx, approver,
		slack.MsgOptionText(fmt.Sprintf("Reprovision request %s for %s from <@%s>", ref, target, requester), false),
		slack.MsgOptionBlocks(blocks...))
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor: chat.postMessage:", err)
	}
}

func openForm(ctx context.Context, api *slack.Client, trigger, target string) {
	element := slack.NewPlainTextInputBlockElement(plain("e.g. profile corrupt, apps broken after update"), "reason_input")
	element.Multiline = true
	element.MaxLength = 500
	input := slack.NewInputBlock("reason", plain("Why does it need reprovisioning?"), nil, element)
	_, err := api.OpenViewContext(ctx, trigger, slack.ModalViewRequest{
		Type:            slack.VTModal,
		CallbackID:      "reprovision_reason",
		PrivateMetadata: fmt.Sprintf(`{"target":%q}`, target),
		Title:           plain("Reprovision"),
		Submit:          plain("Ask for approval"),
		Close:           plain("Cancel"),
		Blocks:          slack.Blocks{BlockSet: []slack.Block{section(fmt.Sprintf("Reprovision `%s`? %s", target, warning)), input}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor: views.open:", err)
	}
}

func section(text string) *slack.SectionBlock { return slack.NewSectionBlock(mrkdwn(text), nil, nil) }
func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}
func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
}

// reference is a request reference like the bot's (R- and six characters).
func reference() string {
	const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "R-" + string(b)
}
