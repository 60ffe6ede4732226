package approvals

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteEvents writes the audit trail for people and tools outside the bot,
// in one of two formats:
//
//   - "jsonl": one JSON object per line,
//     {"time":…,"request_id":…,"kind":…,"actor":…,"details":{…}};
//   - "csv": a header line time,request_id,kind,actor,details, then one
//     record per event, quoted per RFC 4180.
//
// Times are RFC 3339 with nanoseconds, in UTC. Details are always a JSON
// object ({} when there are none) with keys sorted, so the output for the
// same events is byte for byte the same. In CSV, too, details are that JSON
// text rather than key=value pairs: values may contain any character (a
// reason, a Graph error message), and JSON keeps them unambiguous and
// parseable; starting with "{", the cell is also never taken for a formula
// by a spreadsheet. HTML characters are not escaped, so <@U…> mentions
// stay readable.
//
// An unknown format is an error naming the accepted ones, and nothing is
// written.
func WriteEvents(w io.Writer, events []Event, format string) error {
	switch format {
	case "jsonl":
		return writeJSONL(w, events)
	case "csv":
		return writeCSV(w, events)
	default:
		return fmt.Errorf("unknown audit format %q: use jsonl or csv", format)
	}
}

// auditRecord fixes the field names and order of an exported event,
// independent of the Go field names.
type auditRecord struct {
	Time      string            `json:"time"`
	RequestID string            `json:"request_id"`
	Kind      string            `json:"kind"`
	Actor     string            `json:"actor"`
	Details   map[string]string `json:"details"` // encoding/json sorts map keys
}

func exportRecord(e Event) auditRecord {
	details := e.Details
	if details == nil {
		details = map[string]string{}
	}
	return auditRecord{
		Time:      e.Time.UTC().Format(time.RFC3339Nano),
		RequestID: e.RequestID,
		Kind:      string(e.Kind),
		Actor:     e.Actor,
		Details:   details,
	}
}

func writeJSONL(w io.Writer, events []Event) error {
	enc := json.NewEncoder(w) // Encode ends each value with a newline
	enc.SetEscapeHTML(false)
	for _, e := range events {
		if err := enc.Encode(exportRecord(e)); err != nil {
			return fmt.Errorf("write audit events: %w", err)
		}
	}
	return nil
}

func writeCSV(w io.Writer, events []Event) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"time", "request_id", "kind", "actor", "details"}); err != nil {
		return fmt.Errorf("write audit events: %w", err)
	}
	for _, e := range events {
		rec := exportRecord(e)
		details, err := marshalNoHTMLEscape(rec.Details)
		if err != nil {
			return fmt.Errorf("write audit events: %w", err)
		}
		if err := cw.Write([]string{rec.Time, rec.RequestID, rec.Kind, rec.Actor, details}); err != nil {
			return fmt.Errorf("write audit events: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write audit events: %w", err)
	}
	return nil
}

// marshalNoHTMLEscape is json.Marshal without escaping <, > and &.
func marshalNoHTMLEscape(v any) (string, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil // Encode adds a newline
}
