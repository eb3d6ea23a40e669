package booking

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestCalendarRFC5545(t *testing.T) {
	start := time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC)
	long := strings.Repeat("Consultation de téléconsultation très détaillée, ", 4)
	ev := Event{UID: "abc@teleconsult", Summary: long, Location: "1 rue de la Paix; Paris, France\nétage 2 \\ porte B",
		Start: start, End: start.Add(30 * time.Minute), Status: "CONFIRMED"}
	out := string(Calendar("Dr Émile Zola", []Event{ev}, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)))

	if !strings.HasSuffix(out, "END:VCALENDAR\r\n") {
		t.Fatal("does not end with CRLF")
	}
	if strings.Contains(strings.ReplaceAll(out, "\r\n", ""), "\n") {
		t.Fatal("bare LF in output")
	}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
		if len(line) > 75 {
			t.Errorf("line of %d octets: %q", len(line), line)
		}
		if !utf8.ValidString(line) {
			t.Errorf("line splits a UTF-8 sequence: %q", line)
		}
	}
	unfolded := strings.ReplaceAll(out, "\r\n ", "")
	for _, want := range []string{
		"SUMMARY:" + strings.ReplaceAll(long, ",", `\,`) + "\r\n",
		`LOCATION:1 rue de la Paix\; Paris\, France\nétage 2 \\ porte B` + "\r\n",
		"DTSTART:20260329T010000Z\r\n", "DTEND:20260329T013000Z\r\n", "DTSTAMP:20260301T120000Z\r\n",
		"UID:abc@teleconsult\r\n", "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n", "X-WR-CALNAME:Dr Émile Zola\r\n",
	} {
		if !strings.Contains(unfolded, want) {
			t.Errorf("missing %q in\n%s", want, unfolded)
		}
	}
}

func TestInitials(t *testing.T) {
	if got := initials("Élodie  de la Fontaine"); got != "É. d. l. F." {
		t.Fatalf("initials = %q", got)
	}
}
