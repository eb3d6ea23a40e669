package audit_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"teleconsult/audit"
	"teleconsult/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func TestChain(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	subject := "6f1c2e3a-0000-4000-8000-000000000001"
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := audit.Record(ctx, db.Pool, audit.Entry{
				Actor: audit.Actor{Role: "practitioner", IP: "192.0.2.1"}, Action: "read",
				ObjectType: "appointment", ObjectID: "x", SubjectID: subject,
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	// Inside a caller's transaction, committed with it.
	err := db.Tx(ctx, func(tx pgx.Tx) error {
		return audit.Record(ctx, tx, audit.Entry{Actor: audit.System, Action: "write", ObjectType: "prescription", ObjectID: "p", Outcome: audit.Denied})
	})
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	n, err := audit.Verify(ctx, db.Pool)
	if err != nil || n != 21 {
		t.Fatalf("verify: %d %v", n, err)
	}
	rows, err := audit.ForSubject(ctx, db.Pool, subject, 100)
	if err != nil || len(rows) != 20 {
		t.Fatalf("for subject: %d %v", len(rows), err)
	}

	// The application cannot change or remove a row.
	for _, sql := range []string{
		`UPDATE audit_log SET action = 'nothing' WHERE seq = 1`,
		`DELETE FROM audit_log WHERE seq = 1`,
		`TRUNCATE audit_log`,
	} {
		if _, err := db.Pool.Exec(ctx, sql); err == nil {
			t.Errorf("%s: allowed", sql)
		}
	}

	// Someone with the power to bypass the trigger edits a row: the chain
	// no longer verifies.
	_, err = db.Pool.Exec(ctx, `BEGIN; SET LOCAL session_replication_role = replica;
		UPDATE audit_log SET actor_role = 'admin' WHERE seq = 5; COMMIT;`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(ctx, db.Pool); !errors.Is(err, audit.ErrBroken) {
		t.Fatalf("verify after tampering: %v", err)
	}
}

func TestChainDetectsRemovedRow(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if err := audit.Record(ctx, db.Pool, audit.Entry{Actor: audit.System, Action: "read", ObjectType: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := db.Pool.Exec(ctx, `BEGIN; SET LOCAL session_replication_role = replica; DELETE FROM audit_log WHERE seq = 3; COMMIT;`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(ctx, db.Pool); !errors.Is(err, audit.ErrBroken) {
		t.Fatalf("verify after removal: %v", err)
	}
}
