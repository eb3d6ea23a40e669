package audit_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"teleconsult/audit"
	"teleconsult/store"
	"teleconsult/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func seal(t *testing.T, db *store.DB) int {
	t.Helper()
	n, err := audit.Seal(context.Background(), db.Pool)
	if err != nil {
		t.Fatalf("seal: %v", err)
	}
	return n
}

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

	// Recorded, not yet sealed: the patient already sees the accesses.
	rep, err := audit.Verify(ctx, db.Pool)
	if err != nil || rep != (audit.Report{Sealed: 0, Unsealed: 21}) {
		t.Fatalf("verify before sealing: %+v %v", rep, err)
	}
	rows, err := audit.ForSubject(ctx, db.Pool, subject, 100)
	if err != nil || len(rows) != 20 {
		t.Fatalf("for subject: %d %v", len(rows), err)
	}
	for i := 1; i < len(rows); i++ {
		if rows[i].ID >= rows[i-1].ID {
			t.Fatalf("for subject: not newest first: %d then %d", rows[i-1].ID, rows[i].ID)
		}
	}

	if n := seal(t, db); n != 21 {
		t.Fatalf("sealed %d, want 21", n)
	}
	if n := seal(t, db); n != 0 {
		t.Fatalf("sealed %d again", n)
	}
	rep, err = audit.Verify(ctx, db.Pool)
	if err != nil || rep != (audit.Report{Sealed: 21, Unsealed: 0}) {
		t.Fatalf("verify: %+v %v", rep, err)
	}

	// An unsealed row for the checks below.
	if err := audit.Record(ctx, db.Pool, audit.Entry{Actor: audit.System, Action: "read", ObjectType: "x"}); err != nil {
		t.Fatal(err)
	}
	// The application cannot change or remove a row, nor seal one itself
	// with a change to its content, nor insert a row already sealed.
	for _, sql := range []string{
		`UPDATE audit_log SET action = 'nothing' WHERE seq = 1`,
		`UPDATE audit_log SET hash = prev_hash WHERE seq = 1`,
		`UPDATE audit_log SET seq = 99 WHERE seq = 1`,
		`UPDATE audit_log SET seq = NULL, prev_hash = NULL, hash = NULL WHERE seq = 1`,
		`UPDATE audit_log SET action = 'nothing' WHERE seq IS NULL`,
		`UPDATE audit_log SET seq = 22, prev_hash = '\x00', hash = '\x00', action = 'nothing' WHERE seq IS NULL`,
		`UPDATE audit_log SET seq = 22, prev_hash = '\x00', hash = '\x00', at = now() WHERE seq IS NULL`,
		`DELETE FROM audit_log WHERE seq = 1`,
		`DELETE FROM audit_log WHERE seq IS NULL`,
		`TRUNCATE audit_log`,
		`INSERT INTO audit_log (action, object_type, outcome, seq, prev_hash, hash) VALUES ('read', 'x', 'ok', 23, '\x00', '\x00')`,
	} {
		if _, err := db.Pool.Exec(ctx, sql); err == nil {
			t.Errorf("%s: allowed", sql)
		}
	}
	if n := seal(t, db); n != 1 {
		t.Fatalf("sealed %d, want 1", n)
	}
	if rep, err := audit.Verify(ctx, db.Pool); err != nil || rep.Sealed != 22 {
		t.Fatalf("verify: %+v %v", rep, err)
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
	seal(t, db)
	_, err := db.Pool.Exec(ctx, `BEGIN; SET LOCAL session_replication_role = replica; DELETE FROM audit_log WHERE seq = 3; COMMIT;`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(ctx, db.Pool); !errors.Is(err, audit.ErrBroken) {
		t.Fatalf("verify after removal: %v", err)
	}
}

func TestChainDetectsSwappedRows(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	for _, action := range []string{"read", "write", "sign"} {
		if err := audit.Record(ctx, db.Pool, audit.Entry{Actor: audit.System, Action: action, ObjectType: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	seal(t, db)
	_, err := db.Pool.Exec(ctx, `BEGIN; SET LOCAL session_replication_role = replica;
		UPDATE audit_log SET seq = -seq WHERE seq IN (1, 2);
		UPDATE audit_log SET seq = CASE seq WHEN -1 THEN 2 ELSE 1 END WHERE seq IN (-1, -2); COMMIT;`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(ctx, db.Pool); !errors.Is(err, audit.ErrBroken) {
		t.Fatalf("verify after reordering: %v", err)
	}
}

// An entry recorded in a transaction that rolls back never existed: the
// action it recorded did not happen.
func TestRolledBackLeavesNoEntry(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	boom := errors.New("the action failed")
	err := db.Tx(ctx, func(tx pgx.Tx) error {
		if err := audit.Record(ctx, tx, audit.Entry{Actor: audit.System, Action: "write", ObjectType: "x", ObjectID: "gone"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if err := audit.Record(ctx, db.Pool, audit.Entry{Actor: audit.System, Action: "write", ObjectType: "x", ObjectID: "kept"}); err != nil {
		t.Fatal(err)
	}
	seal(t, db)
	var n int
	var kept string
	if err := db.Pool.QueryRow(ctx, `SELECT count(*), min(object_id) FROM audit_log`).Scan(&n, &kept); err != nil || n != 1 || kept != "kept" {
		t.Fatalf("entries: %d %q %v", n, kept, err)
	}
	if rep, err := audit.Verify(ctx, db.Pool); err != nil || rep != (audit.Report{Sealed: 1}) {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

func openPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Two nodes (two pools) run the sealer while 50 goroutines record, some
// in transactions that commit, some in ones that roll back: every
// committed entry is sealed exactly once, in one unbroken chain, and
// entries committed together by one writer keep their order.
func TestConcurrentRecordTwoSealers(t *testing.T) {
	url := storetest.NewURL(t)
	nodes := []*pgxpool.Pool{openPool(t, url), openPool(t, url)}
	ctx := context.Background()

	sealCtx, stopSealers := context.WithCancel(ctx)
	var sealers sync.WaitGroup
	for _, p := range nodes {
		sealers.Add(1)
		go func() {
			defer sealers.Done()
			audit.RunSealer(sealCtx, p, 5*time.Millisecond, testLogger(t))
		}()
	}

	const writers, each = 50, 20
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := nodes[w%2]
			for i := 0; i < each; i++ {
				err := pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
					for k := 0; k < 2; k++ {
						e := audit.Entry{Actor: audit.System, Action: "write", ObjectType: "x", ObjectID: fmt.Sprintf("%d/%d/%d", w, i, k)}
						if err := audit.Record(ctx, tx, e); err != nil {
							return err
						}
					}
					if i%5 == 4 {
						return errRollback
					}
					return nil
				})
				if err != nil && !errors.Is(err, errRollback) {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	// Let the running sealers catch up, then stop them.
	deadline := time.Now().Add(20 * time.Second)
	for {
		rep, err := audit.Verify(ctx, nodes[0])
		if err != nil {
			t.Fatalf("verify while sealing: %v", err)
		}
		if rep.Unsealed == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d unsealed", rep.Unsealed)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopSealers()
	sealers.Wait()

	want := writers * each * 2 * 4 / 5
	rep, err := audit.Verify(ctx, nodes[1])
	if err != nil || rep != (audit.Report{Sealed: want}) {
		t.Fatalf("verify: %+v %v, want %d sealed", rep, err, want)
	}
	var distinct, maxSeq, rolledBack int
	err = nodes[0].QueryRow(ctx, `SELECT count(DISTINCT object_id), max(seq), count(*) FILTER (WHERE split_part(object_id, '/', 2)::int % 5 = 4) FROM audit_log`).
		Scan(&distinct, &maxSeq, &rolledBack)
	if err != nil || distinct != want || maxSeq != want || rolledBack != 0 {
		t.Fatalf("entries: %d distinct, max seq %d, %d rolled back (want %d): %v", distinct, maxSeq, rolledBack, want, err)
	}
	// Two entries of one transaction commit together, so they are sealed
	// in the order they were recorded.
	var misordered int
	err = nodes[0].QueryRow(ctx, `SELECT count(*) FROM audit_log a JOIN audit_log b
		ON b.object_id = split_part(a.object_id, '/', 1) || '/' || split_part(a.object_id, '/', 2) || '/1'
		WHERE a.object_id LIKE '%/0' AND a.seq > b.seq`).Scan(&misordered)
	if err != nil || misordered != 0 {
		t.Fatalf("%d pairs sealed out of order: %v", misordered, err)
	}
}

var errRollback = errors.New("roll back")

// A sealer whose connection is killed mid-batch rolls back with it; it
// blocks nobody while it holds the chain, and the next sealer seals
// everything, once.
func TestSealerKilledMidBatch(t *testing.T) {
	url := storetest.NewURL(t)
	a, b := openPool(t, url), openPool(t, url)
	ctx := context.Background()
	for i := 0; i < 30; i++ {
		if err := audit.Record(ctx, a, audit.Entry{Actor: audit.System, Action: "read", ObjectType: "x", ObjectID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}

	// Node A seals within a transaction that it never gets to commit.
	conn, err := a.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := audit.Seal(ctx, tx); err != nil || n != 30 {
		t.Fatalf("seal on A: %d %v", n, err)
	}
	// Node B's sealer does not wait for A: it finds the chain taken.
	start := time.Now()
	if n, err := audit.Seal(ctx, b); err != nil || n != 0 {
		t.Fatalf("seal on B while A holds the chain: %d %v", n, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("seal on B waited %v", d)
	}
	// A's node dies.
	pid := conn.Conn().PgConn().PID()
	if _, err := b.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err == nil {
		t.Fatal("commit on a killed connection succeeded")
	}
	conn.Conn().Close(ctx) //nolint:errcheck

	rep, err := audit.Verify(ctx, b)
	if err != nil || rep != (audit.Report{Sealed: 0, Unsealed: 30}) {
		t.Fatalf("after the kill: %+v %v", rep, err)
	}
	if n, err := audit.Seal(ctx, b); err != nil || n != 30 {
		t.Fatalf("seal on B: %d %v", n, err)
	}
	if rep, err := audit.Verify(ctx, b); err != nil || rep != (audit.Report{Sealed: 30}) {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// testLogger fails the test on anything the sealer logs: under
// contention it must neither fail nor collide.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(failWriter{t}, nil))
}

type failWriter struct{ t *testing.T }

func (w failWriter) Write(p []byte) (int, error) {
	w.t.Errorf("sealer logged: %s", p)
	return len(p), nil
}
