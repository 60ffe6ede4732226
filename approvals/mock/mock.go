// Package mock has function-field fakes of the workflow's ports, for tests:
// set the function a test needs; a call to one left nil panics, so a test
// notices a call it did not expect.
package mock

import (
	"context"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

var (
	_ approvals.SignIns  = (*SignIns)(nil)
	_ approvals.CloudPCs = (*CloudPCs)(nil)
	_ approvals.Notices  = (*Notices)(nil)
)

// SignIns fakes the sign-in port.
type SignIns struct {
	SignInFn func(ctx context.Context, claims string, showCode func(context.Context, approvals.DeviceCode) error) (*approvals.Session, error)
}

func (s *SignIns) SignIn(ctx context.Context, claims string, showCode func(context.Context, approvals.DeviceCode) error) (*approvals.Session, error) {
	return s.SignInFn(ctx, claims, showCode)
}

// CloudPCs fakes the Cloud PC port.
type CloudPCs struct {
	GetFn            func(ctx context.Context, id string) (approvals.CloudPC, approvals.GraphCall, error)
	ResolveFn        func(ctx context.Context, target string) ([]approvals.CloudPC, []approvals.GraphCall, error)
	ReprovisionFn    func(ctx context.Context, id string, opts approvals.Options) (approvals.GraphCall, error)
	RemoteActionsFn  func(ctx context.Context, id string) ([]approvals.RemoteAction, approvals.GraphCall, error)
	FindPolicyFn     func(ctx context.Context, policy string) (approvals.ProvisioningPolicy, approvals.GraphCall, error)
	PolicyCloudPCsFn func(ctx context.Context, policyID string) ([]approvals.CloudPC, []approvals.GraphCall, error)
}

func (c *CloudPCs) Get(ctx context.Context, id string) (approvals.CloudPC, approvals.GraphCall, error) {
	return c.GetFn(ctx, id)
}

func (c *CloudPCs) Resolve(ctx context.Context, target string) ([]approvals.CloudPC, []approvals.GraphCall, error) {
	return c.ResolveFn(ctx, target)
}

func (c *CloudPCs) Reprovision(ctx context.Context, id string, opts approvals.Options) (approvals.GraphCall, error) {
	return c.ReprovisionFn(ctx, id, opts)
}

func (c *CloudPCs) RemoteActions(ctx context.Context, id string) ([]approvals.RemoteAction, approvals.GraphCall, error) {
	return c.RemoteActionsFn(ctx, id)
}

func (c *CloudPCs) FindPolicy(ctx context.Context, policy string) (approvals.ProvisioningPolicy, approvals.GraphCall, error) {
	return c.FindPolicyFn(ctx, policy)
}

func (c *CloudPCs) PolicyCloudPCs(ctx context.Context, policyID string) ([]approvals.CloudPC, []approvals.GraphCall, error) {
	return c.PolicyCloudPCsFn(ctx, policyID)
}

// Notices fakes the notices port.
type Notices struct {
	PostPromptsFn   func(ctx context.Context, r *approvals.Request, to []string) ([]approvals.MessageRef, error)
	UpdatePromptsFn func(ctx context.Context, r *approvals.Request) error
	TellFn          func(ctx context.Context, user string, n approvals.Notice) error
	ProgressFn      func(ctx context.Context, r *approvals.Request, p approvals.Progress) error
	SignInCodeFn    func(ctx context.Context, approver string, why approvals.SignInPurpose, r *approvals.Request, code approvals.DeviceCode) error
	AskToConfirmFn  func(ctx context.Context, r *approvals.Request) error
	ProfileEmailFn  func(ctx context.Context, user string) (string, error)
	// ChatUserByEmailFn nil: nobody has a chat account (ErrNoChatAccount).
	ChatUserByEmailFn func(ctx context.Context, email string) (string, error)
}

func (n *Notices) ChatUserByEmail(ctx context.Context, email string) (string, error) {
	if n.ChatUserByEmailFn == nil {
		return "", approvals.ErrNoChatAccount
	}
	return n.ChatUserByEmailFn(ctx, email)
}

func (n *Notices) PostPrompts(ctx context.Context, r *approvals.Request, to []string) ([]approvals.MessageRef, error) {
	return n.PostPromptsFn(ctx, r, to)
}

func (n *Notices) UpdatePrompts(ctx context.Context, r *approvals.Request) error {
	return n.UpdatePromptsFn(ctx, r)
}

func (n *Notices) Tell(ctx context.Context, user string, notice approvals.Notice) error {
	return n.TellFn(ctx, user, notice)
}

func (n *Notices) Progress(ctx context.Context, r *approvals.Request, p approvals.Progress) error {
	return n.ProgressFn(ctx, r, p)
}

func (n *Notices) SignInCode(ctx context.Context, approver string, why approvals.SignInPurpose, r *approvals.Request, code approvals.DeviceCode) error {
	return n.SignInCodeFn(ctx, approver, why, r, code)
}

func (n *Notices) AskToConfirm(ctx context.Context, r *approvals.Request) error {
	return n.AskToConfirmFn(ctx, r)
}

func (n *Notices) ProfileEmail(ctx context.Context, user string) (string, error) {
	return n.ProfileEmailFn(ctx, user)
}
