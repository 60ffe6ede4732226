package approvals_test

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

var auditEvents = []approvals.Event{
	{
		Time:      time.Date(2025, 6, 1, 14, 0, 0, 123456789, time.FixedZone("CEST", 2*3600)),
		RequestID: "R-7K3F9Q",
		Kind:      approvals.EventRequested,
		Actor:     "U0ALICE",
		Details:   map[string]string{"target": "CPC-alice-01", "reason": "says \"hi\", <@U0BOB> & co\nline 2", "channel": "C0OPS"},
	},
	{
		Time:      time.Date(2025, 6, 1, 12, 5, 0, 0, time.UTC),
		RequestID: "R-7K3F9Q",
		Kind:      approvals.EventGraphCall,
		Actor:     "",
		Details:   nil,
	},
	{
		Time:      time.Date(2025, 6, 1, 12, 6, 0, 500, time.UTC),
		RequestID: "R-7K3F9Q",
		Kind:      approvals.EventRefusedClick,
		Actor:     `U0X,"Y"`,
		Details:   map[string]string{},
	},
}

func TestWriteEventsJSONL(t *testing.T) {
	var b bytes.Buffer
	if err := approvals.WriteEvents(&b, auditEvents, "jsonl"); err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2025-06-01T12:00:00.123456789Z","request_id":"R-7K3F9Q","kind":"requested","actor":"U0ALICE","details":{"channel":"C0OPS","reason":"says \"hi\", <@U0BOB> & co\nline 2","target":"CPC-alice-01"}}
{"time":"2025-06-01T12:05:00Z","request_id":"R-7K3F9Q","kind":"graph_call","actor":"","details":{}}
{"time":"2025-06-01T12:06:00.0000005Z","request_id":"R-7K3F9Q","kind":"refused_click","actor":"U0X,\"Y\"","details":{}}
`
	if got := b.String(); got != want {
		t.Errorf("jsonl =\n%s\nwant\n%s", got, want)
	}

	// Every line is one object that reads back as the event.
	sc := bufio.NewScanner(&b)
	for i := 0; sc.Scan(); i++ {
		var rec struct {
			Time      time.Time         `json:"time"`
			RequestID string            `json:"request_id"`
			Kind      string            `json:"kind"`
			Actor     string            `json:"actor"`
			Details   map[string]string `json:"details"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		checkExported(t, i, rec.Time, rec.RequestID, rec.Kind, rec.Actor, rec.Details)
	}
}

func TestWriteEventsCSV(t *testing.T) {
	var b bytes.Buffer
	if err := approvals.WriteEvents(&b, auditEvents, "csv"); err != nil {
		t.Fatal(err)
	}
	want := `time,request_id,kind,actor,details
2025-06-01T12:00:00.123456789Z,R-7K3F9Q,requested,U0ALICE,"{""channel"":""C0OPS"",""reason"":""says \""hi\"", <@U0BOB> & co\nline 2"",""target"":""CPC-alice-01""}"
2025-06-01T12:05:00Z,R-7K3F9Q,graph_call,,{}
2025-06-01T12:06:00.0000005Z,R-7K3F9Q,refused_click,"U0X,""Y""",{}
`
	if got := b.String(); got != want {
		t.Errorf("csv =\n%s\nwant\n%s", got, want)
	}

	records, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != len(auditEvents)+1 {
		t.Fatalf("%d records, want header + %d", len(records), len(auditEvents))
	}
	for i, rec := range records[1:] {
		at, err := time.Parse(time.RFC3339Nano, rec[0])
		if err != nil {
			t.Fatalf("record %d: time: %v", i+1, err)
		}
		var details map[string]string
		if err := json.Unmarshal([]byte(rec[4]), &details); err != nil {
			t.Fatalf("record %d: details: %v", i+1, err)
		}
		checkExported(t, i, at, rec[1], rec[2], rec[3], details)
	}
}

// checkExported compares what was read back from an export with
// auditEvents[i].
func checkExported(t *testing.T, i int, at time.Time, requestID, kind, actor string, details map[string]string) {
	t.Helper()
	e := auditEvents[i]
	if !at.Equal(e.Time) || at.Location() != time.UTC {
		t.Errorf("event %d: time %v, want %v in UTC", i, at, e.Time)
	}
	if requestID != e.RequestID || kind != string(e.Kind) || actor != e.Actor {
		t.Errorf("event %d: %q %q %q, want %q %q %q", i, requestID, kind, actor, e.RequestID, e.Kind, e.Actor)
	}
	if len(details) != len(e.Details) || (len(details) > 0 && !reflect.DeepEqual(details, e.Details)) {
		t.Errorf("event %d: details %v, want %v", i, details, e.Details)
	}
}

func TestWriteEventsNone(t *testing.T) {
	for format, want := range map[string]string{
		"jsonl": "",
		"csv":   "time,request_id,kind,actor,details\n",
	} {
		var b bytes.Buffer
		if err := approvals.WriteEvents(&b, nil, format); err != nil || b.String() != want {
			t.Errorf("%s of no events = %q, %v; want %q", format, b.String(), err, want)
		}
	}
}

// TestWriteEventsDeterministic: Go randomises map iteration; the output must
// not follow it.
func TestWriteEventsDeterministic(t *testing.T) {
	details := map[string]string{}
	for i := range 20 {
		details[fmt.Sprintf("key%02d", 19-i)] = fmt.Sprint(i)
	}
	events := []approvals.Event{{Time: time.Unix(0, 0), Kind: approvals.EventTracked, Details: details}}
	for _, format := range []string{"jsonl", "csv"} {
		var first bytes.Buffer
		if err := approvals.WriteEvents(&first, events, format); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(first.String(), `key00`) ||
			strings.Index(first.String(), "key00") > strings.Index(first.String(), "key19") {
			t.Errorf("%s: details keys not sorted: %s", format, first.String())
		}
		for range 20 {
			var again bytes.Buffer
			if err := approvals.WriteEvents(&again, events, format); err != nil {
				t.Fatal(err)
			}
			if again.String() != first.String() {
				t.Fatalf("%s output differs between runs:\n%s\n%s", format, first.String(), again.String())
			}
		}
	}
}

func TestWriteEventsUnknownFormat(t *testing.T) {
	for _, format := range []string{"", "json", "CSV", "xml"} {
		var b bytes.Buffer
		err := approvals.WriteEvents(&b, auditEvents, format)
		if err == nil {
			t.Errorf("format %q accepted", format)
			continue
		}
		for _, want := range []string{fmt.Sprintf("%q", format), "jsonl", "csv"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("format %q: error %q does not mention %s", format, err, want)
			}
		}
		if b.Len() != 0 {
			t.Errorf("format %q: wrote %q", format, b.String())
		}
	}
}

type failingWriter struct{}

var errDiskFull = errors.New("disk full")

func (failingWriter) Write([]byte) (int, error) { return 0, errDiskFull }

func TestWriteEventsReportsWriteErrors(t *testing.T) {
	for _, format := range []string{"jsonl", "csv"} {
		if err := approvals.WriteEvents(failingWriter{}, auditEvents, format); !errors.Is(err, errDiskFull) {
			t.Errorf("%s to a failing writer: %v, want the write error", format, err)
		}
	}
}
