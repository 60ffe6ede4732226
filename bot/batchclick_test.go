package bot

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/mock"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite/sqlitetest"
	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// Stop and Resume clicks reach the workflow, and the clicker hears how
// they went: privately on the prompt, in place of the halted notice.

// bxWorkflow is a started workflow with approvers U0A1 and U0A2 over a
// fresh store, telling people through b; every sign-in shows a code, then
// is declined.
func bxWorkflow(t *testing.T, b *Bot) approvals.Store {
	t.Helper()
	store, err := sqlite.Open(sqlitetest.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	signIns := &mock.SignIns{SignInFn: func(ctx context.Context, _ string, showCode func(context.Context, approvals.DeviceCode) error) (*approvals.Session, error) {
		if err := showCode(ctx, approvals.DeviceCode{UserCode: "ABCD-EFGH", VerificationURL: "https://microsoft.com/devicelogin"}); err != nil {
			return nil, err
		}
		return nil, approvals.ErrSignInDeclined
	}}
	b.wf, err = approvals.New(approvals.Config{Policy: approvals.Policy{Approvers: []string{"U0A1", "U0A2"}}, Store: store,
		SignIns: signIns, Notices: b, AllowedStatuses: []string{"provisioned"}, Logger: b.log})
	if err != nil {
		t.Fatal(err)
	}
	b.wf.Start(context.Background())
	t.Cleanup(func() {
		b.wf.Stop()
		store.Close()
	})
	return store
}

// bxStored stores a batch of two Cloud PCs (members first and first+1)
// from U0REQ, confirmed by U0A1, running: the first sent, the second
// waiting; halted if asked.
func bxStored(t *testing.T, b *Bot, store approvals.Store, first int, halted bool) string {
	t.Helper()
	ctx := context.Background()
	r, err := b.wf.NewBatch("U0REQ", "C0REQ", []string{"CPC-A", "CPC-B"}, "", "disk full", approvals.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Transition(ctx, r.ID, approvals.StateApproved, func(u *approvals.Request) { u.DecidedBy = "U0A1" }); err != nil {
		t.Fatal(err)
	}
	_, err = store.Transition(ctx, r.ID, approvals.StateExecuting, func(u *approvals.Request) {
		u.SignedInAs = "a1@contoso.com"
		u.Batch.Members = []approvals.Member{bxMember(first, approvals.MemberSent), bxMember(first+1, approvals.MemberWaiting)}
		u.Batch.Halted = halted
	})
	if err != nil {
		t.Fatal(err)
	}
	return r.ID
}

// bxClick is user's click on action's button for ref in block (in channel
// C0A, with responseURL if set).
func bxClick(user, action, ref, block, responseURL string) slack.InteractionCallback {
	var cb slack.InteractionCallback
	cb.Type = slack.InteractionTypeBlockActions
	cb.User.ID = user
	cb.Channel.ID = "C0A"
	cb.Container.Type = "message"
	cb.ResponseURL = responseURL
	cb.ActionCallback.BlockActions = []*slack.BlockAction{{ActionID: action, Value: ref, BlockID: block}}
	return cb
}

// bxLastEphemeral is the text of the last private reply to user ("" for
// none).
func bxLastEphemeral(fs *fakes.Slack, user string) string {
	msgs := fs.Ephemerals(user)
	if len(msgs) == 0 {
		return ""
	}
	return msgs[len(msgs)-1].Text
}

func TestStopBatchClicks(t *testing.T) {
	t.Parallel()
	b, fs := newNoticesBot(t)
	store := bxWorkflow(t, b)
	ctx := context.Background()
	running := bxStored(t, b, store, 1, false)
	halted := bxStored(t, b, store, 3, true)

	// Someone who is no approver changes nothing.
	b.handleBlockAction(ctx, bxClick("U0X", actionStopBatch, running, blockBatch+running, ""))
	txCheck(t, "outsider", bxLastEphemeral(fs, "U0X"), []string{"Only an approver of " + running + " (<@U0A1> or <@U0A2>) can stop it."}, nil)
	if r, _ := store.Get(ctx, running); r.Batch.Stopped {
		t.Fatal("an outsider stopped the batch")
	}

	// Any approver stops a running batch; the clicker hears privately.
	b.handleBlockAction(ctx, bxClick("U0A2", actionStopBatch, running, blockBatch+running, ""))
	txCheck(t, "stop running", bxLastEphemeral(fs, "U0A2"), []string{"Stopping " + running + ": no more Cloud PCs are sent"}, nil)
	if r, _ := store.Get(ctx, running); !r.Batch.Stopped || r.Batch.StoppedBy != "U0A2" {
		t.Fatalf("after Stop: stopped %v by %q", r.Batch.Stopped, r.Batch.StoppedBy)
	}
	// Twice: it is stopped already.
	b.handleBlockAction(ctx, bxClick("U0A1", actionStopBatch, running, blockBatch+running, ""))
	txCheck(t, "stop again", bxLastEphemeral(fs, "U0A1"), []string{running + " is not running, or is being stopped already: :octagonal_sign: Stopped by <@U0A2>"}, nil)

	// A halted batch ends at once: what was sent counts, the rest is not sent.
	b.handleBlockAction(ctx, bxClick("U0A2", actionStopBatch, halted, blockBatch+halted, ""))
	txCheck(t, "stop halted", bxLastEphemeral(fs, "U0A2"), []string{"Stopped " + halted + ": the Cloud PCs not sent yet will not be sent."}, nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := store.Get(ctx, halted)
		if err == nil && r.State == approvals.StateSucceeded {
			if got := batchCountsText(r.Batch); got != "1 of 2 sent · 1 not sent" {
				t.Errorf("ended with %q", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stopped halted batch did not end: %+v, %v", r, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestResumeBatchClicks(t *testing.T) {
	t.Parallel()
	b, fs := newNoticesBot(t)
	store := bxWorkflow(t, b)
	ctx := context.Background()
	ref := bxStored(t, b, store, 1, true)

	// Only the approver who confirmed resumes (they sign in again).
	b.handleBlockAction(ctx, bxClick("U0A2", actionResumeBatch, ref, blockBatch+ref, ""))
	txCheck(t, "another approver", bxLastEphemeral(fs, "U0A2"), []string{"Only <@U0A1>, who confirmed " + ref + ", can resume it"}, nil)

	// From the halted notice: the notice says what happens now; the
	// sign-in comes; declined, the notice comes again with why.
	b.handleBlockAction(ctx, bxClick("U0A1", actionResumeBatch, ref, "batch_halted:"+ref, fs.ResponseURL("U0A1")))
	posts := fs.HookPosts()
	if len(posts) == 0 || !strings.Contains(string(posts[len(posts)-1].Body), "Resuming "+ref+": sign in first") {
		t.Fatalf("the halted notice was not replaced: %+v", posts)
	}
	fs.WaitFor(t, 5*time.Second, "the sign-in code, then the notice again", func() bool {
		var code, again bool
		for _, m := range fs.Messages(fakes.DMChannel("U0A1")) {
			code = code || strings.Contains(m.Text, "Sign in to resume batch "+ref)
			again = again || strings.Contains(m.Text, "Your sign-in to resume batch "+ref+" did not complete: Sign-in was declined.") &&
				strings.Contains(strings.Join(buttonsIn(t, m.Blocks), " "), "resume_batch="+ref+" stop_batch="+ref)
		}
		return code && again
	})
	if r, _ := store.Get(ctx, ref); r.State != approvals.StateExecuting || !r.Batch.Halted {
		t.Errorf("after a declined sign-in: %s, halted %v", r.State, r.Batch.Halted)
	}

	// Not halted: nothing to resume.
	running := bxStored(t, b, store, 3, false)
	b.handleBlockAction(ctx, bxClick("U0A1", actionResumeBatch, running, blockBatch+running, ""))
	txCheck(t, "not halted", bxLastEphemeral(fs, "U0A1"), []string{running + " is not waiting to be resumed: :gear: Approved by <@U0A1>. Reprovisioning: 1 of 2 sent."}, nil)
}
