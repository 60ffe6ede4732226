package main

import (
	"fmt"
	"testing"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// BenchmarkSlashCommandAck measures what a requester waits for: from Slack
// sending a /reprovision envelope to the bot's ack carrying the reply,
// through the real Socket Mode client and websocket. Each iteration is a full
// request for its own Cloud PC (validated, policy-checked, reference made);
// storing it and posting the prompts happen after the ack, concurrently with
// the next iterations, as they would under load.
//
//	go test -run '^$' -bench SlashCommandAck ./cmd/reprovision-bot/
func BenchmarkSlashCommandAck(b *testing.B) {
	h := newHarness(b)
	h.start()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("%08x-0000-4000-8000-000000000000", i)
		env := h.slack.SendSlashCommand(b, fakes.SlashCommand{UserID: requesterID, ChannelID: channelID, Command: "/reprovision", Text: id + " " + reason})
		h.slack.WaitAck(b, env, wait)
	}
}
