package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"teleconsult/audit"
	"teleconsult/store"
	"teleconsult/store/storetest"
)

// audit verify seals what is committed, then checks the chain: it counts
// the sealed rows and fails once a sealed row has been changed.
func TestAuditVerify(t *testing.T) {
	url := storetest.NewURL(t)
	ctx := context.Background()
	db, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for range 3 {
		if err := audit.Record(ctx, db.Pool, audit.Entry{Actor: audit.System, Action: "read", ObjectType: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := auditVerify(ctx, []string{"verify", "--database-url", url, "--data-dir", t.TempDir()}, &out); err != nil {
		t.Fatal(err)
	}
	if want := "audit log verified: 3 rows sealed, chain intact; 0 waiting to be sealed"; !strings.Contains(out.String(), want) {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
	_, err = db.Pool.Exec(ctx, `BEGIN; SET LOCAL session_replication_role = replica; UPDATE audit_log SET action = 'write' WHERE seq = 2; COMMIT;`)
	if err != nil {
		t.Fatal(err)
	}
	err = auditVerify(ctx, []string{"verify", "--database-url", url, "--data-dir", t.TempDir()}, &out)
	if !errors.Is(err, audit.ErrBroken) || !strings.Contains(err.Error(), "after 1 good rows") {
		t.Fatalf("after tampering: %v", err)
	}
}
