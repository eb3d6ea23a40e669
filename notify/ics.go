package notify

import (
	"strconv"
	"strings"
	"time"
)

// calendarEvent is what the .ics attached to a confirmation says. Summary
// and Location must carry no health data: calendars are often synced to
// third-party services.
type calendarEvent struct {
	UID         string // stable across updates of one appointment
	Sequence    int    // bumped when the appointment moves or is cancelled
	Start, End  time.Time
	Stamp       time.Time
	Summary     string
	Location    string
	URL         string
	Description string
	Cancelled   bool
}

// icsEscape escapes a TEXT value (RFC 5545 section 3.3.11).
func icsEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, ";", `\;`, ",", `\,`, "\r\n", `\n`, "\n", `\n`)
	return r.Replace(s)
}

// icsFold folds a content line at 75 octets (RFC 5545 section 3.1),
// never inside a UTF-8 sequence.
func icsFold(line string) string {
	const limit = 75
	if len(line) <= limit {
		return line + "\r\n"
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(line); {
		// length of the UTF-8 sequence starting at i
		size := 1
		for size < 4 && i+size < len(line) && line[i+size]&0xC0 == 0x80 {
			size++
		}
		max := limit
		if b.Len() > 0 {
			max = limit - 1 // continuation lines start with a space
		}
		if n+size > max {
			b.WriteString("\r\n ")
			n = 0
		}
		b.WriteString(line[i : i+size])
		n += size
		i += size
	}
	b.WriteString("\r\n")
	return b.String()
}

// ics renders e as an iCalendar object (RFC 5545) with times in UTC, which
// every calendar shows in the reader's own zone.
func (e calendarEvent) ics() []byte {
	const stamp = "20060102T150405Z"
	method, status := "PUBLISH", "CONFIRMED"
	if e.Cancelled {
		method, status = "CANCEL", "CANCELLED"
	}
	lines := []string{
		"BEGIN:VCALENDAR",
		"VERSION:2.0",
		"PRODID:-//teleconsult//notify//EN",
		"CALSCALE:GREGORIAN",
		"METHOD:" + method,
		"BEGIN:VEVENT",
		"UID:" + e.UID,
		"SEQUENCE:" + strconv.Itoa(e.Sequence),
		"DTSTAMP:" + e.Stamp.UTC().Format(stamp),
		"DTSTART:" + e.Start.UTC().Format(stamp),
		"DTEND:" + e.End.UTC().Format(stamp),
		"SUMMARY:" + icsEscape(e.Summary),
		"STATUS:" + status,
	}
	if e.Location != "" {
		lines = append(lines, "LOCATION:"+icsEscape(e.Location))
	}
	if e.URL != "" {
		lines = append(lines, "URL:"+e.URL)
	}
	if e.Description != "" {
		lines = append(lines, "DESCRIPTION:"+icsEscape(e.Description))
	}
	lines = append(lines, "END:VEVENT", "END:VCALENDAR")
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(icsFold(l))
	}
	return []byte(b.String())
}
