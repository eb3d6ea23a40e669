package audit

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/store/storetest"
)

// Rows chained before migration 010 (seq and hashes written at insert,
// under a global lock) are sealed rows afterwards: the chain verifies,
// and the sealer carries it on from their head.
func TestMigrationKeepsOldChain(t *testing.T) {
	ctx := context.Background()
	name := "tc_audit_old_" + time.Now().Format("150405.000000")[7:] + "x"
	admin, err := pgx.Connect(ctx, storetest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") }) //nolint:errcheck
	conn, err := pgx.Connect(ctx, storetest.URLFor(name))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	files, err := filepath.Glob("../store/migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %v", err)
	}
	sort.Strings(files)
	apply := func(f string) {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { _, err := tx.Exec(ctx, string(body)); return err }); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	var i int
	for ; i < len(files) && filepath.Base(files[i]) < "010"; i++ {
		apply(files[i])
	}

	// Three rows written the old way.
	prev := make([]byte, sha256.Size)
	for seq := int64(1); seq <= 3; seq++ {
		r := Row{At: time.Now().UTC().Truncate(time.Microsecond), ActorRole: "system", Action: "read", ObjectType: "x", Outcome: OK}
		h := hashRow(&r, prev, seq)
		_, err := conn.Exec(ctx, `INSERT INTO audit_log (seq, at, actor_role, action, object_type, outcome, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			seq, r.At, r.ActorRole, r.Action, r.ObjectType, r.Outcome, prev, h)
		if err != nil {
			t.Fatal(err)
		}
		prev = h
	}
	for ; i < len(files); i++ {
		apply(files[i])
	}

	if rep, err := Verify(ctx, conn); err != nil || rep != (Report{Sealed: 3}) {
		t.Fatalf("verify after migration: %+v %v", rep, err)
	}
	if err := Record(ctx, conn, Entry{Actor: System, Action: "write", ObjectType: "x"}); err != nil {
		t.Fatal(err)
	}
	var id int64
	if err := conn.QueryRow(ctx, `SELECT id FROM audit_log WHERE seq IS NULL`).Scan(&id); err != nil || id != 4 {
		t.Fatalf("new entry id %d: %v", id, err)
	}
	if n, err := Seal(ctx, conn); err != nil || n != 1 {
		t.Fatalf("seal: %d %v", n, err)
	}
	if rep, err := Verify(ctx, conn); err != nil || rep != (Report{Sealed: 4}) {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}
