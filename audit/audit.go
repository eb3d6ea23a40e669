// Package audit records every access to health data, and every refused
// access, in an append-only, hash-chained log.
//
// Each row's hash is SHA-256 over the previous row's hash and the row's
// own fields, so changing, removing or reordering a row breaks the chain
// from there on; Verify walks it. The database refuses UPDATE, DELETE and
// TRUNCATE on the table (a trigger), whoever asks.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/problem"
	"teleconsult/store"
)

// Outcomes of an access.
const (
	OK     = "ok"
	Denied = "denied"
)

// lockID orders writers of the chain; held until the caller's commit, so
// Record should be the last statement of its transaction.
const lockID = 7215_0002

// ErrBroken is returned by Verify when the chain does not verify.
var ErrBroken = problem.New(problem.Internal, "audit_broken", "the audit log has been tampered with")

// Actor is who acts: an account (or an API token's owner) and where from.
type Actor struct {
	ID   string // account id; empty for anonymous
	Role string // patient, practitioner, pharmacist, admin, token, system
	IP   string
}

// System is the actor for background jobs.
var System = Actor{Role: "system"}

// Entry is one audited access.
type Entry struct {
	Actor      Actor
	Action     string // read, write, create, sign, dispense, deny...
	ObjectType string // appointment, prescription, chat...
	ObjectID   string
	SubjectID  string // the patient whose data it is, if any
	Outcome    string // OK or Denied
	Detail     string // never health data
}

// Row is a stored entry as read back.
type Row struct {
	Seq        int64     `db:"seq"`
	At         time.Time `db:"at"`
	ActorID    *string   `db:"actor_id"`
	ActorRole  string    `db:"actor_role"`
	Action     string    `db:"action"`
	ObjectType string    `db:"object_type"`
	ObjectID   string    `db:"object_id"`
	SubjectID  *string   `db:"subject_id"`
	Outcome    string    `db:"outcome"`
	IP         string    `db:"ip"`
	Detail     string    `db:"detail"`
	PrevHash   []byte    `db:"prev_hash"`
	Hash       []byte    `db:"hash"`
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func hashRow(r *Row) []byte {
	h := sha256.New()
	h.Write(r.PrevHash)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(r.Seq))
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(r.At.UnixMicro()))
	h.Write(n[:])
	for _, f := range []string{deref(r.ActorID), r.ActorRole, r.Action, r.ObjectType, r.ObjectID, deref(r.SubjectID), r.Outcome, r.IP, r.Detail} {
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	return h.Sum(nil)
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Record appends e to the log within q's transaction (or its own one when
// q is a pool).
func Record(ctx context.Context, q store.Q, e Entry) error {
	b, ok := q.(interface {
		Begin(context.Context) (pgx.Tx, error)
	})
	if !ok {
		return fmt.Errorf("audit: record needs a pool or a transaction")
	}
	if e.Outcome == "" {
		e.Outcome = OK
	}
	return pgx.BeginFunc(ctx, b, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockID); err != nil {
			return fmt.Errorf("audit: lock: %w", err)
		}
		r := Row{
			At: time.Now().UTC().Truncate(time.Microsecond), ActorID: nilIfEmpty(e.Actor.ID), ActorRole: e.Actor.Role,
			Action: e.Action, ObjectType: e.ObjectType, ObjectID: e.ObjectID, SubjectID: nilIfEmpty(e.SubjectID),
			Outcome: e.Outcome, IP: e.Actor.IP, Detail: e.Detail,
		}
		err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&r.Seq, &r.PrevHash)
		if err == pgx.ErrNoRows {
			r.Seq, r.PrevHash = 0, make([]byte, sha256.Size)
		} else if err != nil {
			return fmt.Errorf("audit: read chain head: %w", err)
		}
		r.Seq++
		r.Hash = hashRow(&r)
		_, err = tx.Exec(ctx, `INSERT INTO audit_log (seq, at, actor_id, actor_role, action, object_type, object_id, subject_id, outcome, ip, detail, prev_hash, hash)
			VALUES ($1, $2, $3::uuid, $4, $5, $6, $7, $8::uuid, $9, $10, $11, $12, $13)`,
			r.Seq, r.At, r.ActorID, r.ActorRole, r.Action, r.ObjectType, r.ObjectID, r.SubjectID, r.Outcome, r.IP, r.Detail, r.PrevHash, r.Hash)
		if err != nil {
			return fmt.Errorf("audit: append: %w", err)
		}
		return nil
	})
}

// Verify walks the whole chain and returns the number of rows checked, or
// ErrBroken naming the first row that does not verify.
func Verify(ctx context.Context, q store.Q) (int, error) {
	rows, err := q.Query(ctx, `SELECT seq, at, actor_id::text, actor_role, action, object_type, object_id, subject_id::text, outcome, ip, detail, prev_hash, hash FROM audit_log ORDER BY seq`)
	if err != nil {
		return 0, fmt.Errorf("audit: verify: %w", err)
	}
	defer rows.Close()
	prev := make([]byte, sha256.Size)
	var n int
	var expectSeq int64 = 1
	for rows.Next() {
		var r Row
		if err := rows.Scan(&r.Seq, &r.At, &r.ActorID, &r.ActorRole, &r.Action, &r.ObjectType, &r.ObjectID, &r.SubjectID, &r.Outcome, &r.IP, &r.Detail, &r.PrevHash, &r.Hash); err != nil {
			return n, err
		}
		if r.Seq != expectSeq {
			return n, ErrBroken.Withf("audit log broken at row %d: row %d is missing", r.Seq, expectSeq)
		}
		if string(r.PrevHash) != string(prev) || string(hashRow(&r)) != string(r.Hash) {
			return n, ErrBroken.Withf("audit log broken at row %d", r.Seq)
		}
		prev = r.Hash
		expectSeq++
		n++
	}
	return n, rows.Err()
}

// ForSubject returns the accesses to a patient's data, newest first: the
// "who saw my data" page.
func ForSubject(ctx context.Context, q store.Q, subjectID string, limit int) ([]Row, error) {
	rows, err := q.Query(ctx, `SELECT seq, at, actor_id::text, actor_role, action, object_type, object_id, subject_id::text, outcome, ip, detail, prev_hash, hash
		FROM audit_log WHERE subject_id = $1 ORDER BY seq DESC LIMIT $2`, subjectID, limit)
	if err != nil {
		return nil, fmt.Errorf("audit: for subject: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[Row])
}
