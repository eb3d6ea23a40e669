package httpapi

import (
	"context"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDumpHoldsNoHealthData fills a database through the API (a booking
// with a reason, a cancellation with its reason, chat, a signed
// prescription), dumps it with pg_dump as a thief would, and looks for
// every one of those words in the dump, in the clear or hex-encoded (as
// pg_dump writes bytea). The practitioner's city, which is not secret,
// must be there: the search works.
func TestDumpHoldsNoHealthData(t *testing.T) {
	pgDump, err := exec.LookPath("pg_dump")
	if err != nil {
		t.Fatal("pg_dump is needed (Debian: apt-get install postgresql-client)")
	}
	e := newFullEnv(t)
	j := e.journey(t)
	city := marker("Villemarqueur-")
	if st := j.doc.json("PUT", "/api/v1/practitioner/profile", map[string]any{"specialty": "dermatology", "rpps": "10003456789",
		"address": "1 place Bellecour", "city": city, "postcode": "69002", "languages": []string{"fr"}}, nil); st != 200 {
		t.Fatalf("profile: %d", st)
	}
	cancelReason := marker("motif-annulation-")
	if resp, b := j.pat.do("POST", "/api/v1/appointments/"+j.upcoming+"/cancel", map[string]any{"reason": cancelReason}); resp.StatusCode != 200 {
		t.Fatalf("cancel: %d %s", resp.StatusCode, b)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, pgDump, "--no-owner", "--no-privileges", e.DB.Pool.Config().ConnString()).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	dump := string(out)
	if !strings.Contains(dump, city) {
		t.Fatalf("the dump (%d bytes) lacks the practitioner's city %q: the search cannot be trusted", len(dump), city)
	}
	for what, secret := range map[string]string{"reason": j.reason, "upcoming reason": j.upcome, "cancellation reason": cancelReason,
		"chat line": j.chat, "drug name": j.drug} {
		if strings.Contains(dump, secret) {
			t.Errorf("the %s %q is in the dump", what, secret)
		}
		if strings.Contains(dump, hex.EncodeToString([]byte(secret))) {
			t.Errorf("the %s %q is in the dump as bytea", what, secret)
		}
	}
}
