// Package audit records every access to health data, and every refused
// access, in an append-only, hash-chained log.
//
// Record inserts an entry in the caller's transaction, without any lock,
// so it commits or rolls back with the action it records. A sealer (Seal,
// run by RunSealer on every node, one at a time across the cluster) then
// gives committed entries their place in the chain: a sequence number and
// a hash, SHA-256 over the previous entry's hash and the entry's own
// fields, so changing, removing or reordering a sealed entry breaks the
// chain from there on; Verify walks it. The database refuses DELETE,
// TRUNCATE and any UPDATE but the sealing of an unsealed row (triggers),
// whoever asks.
package audit

import (
	"bytes"
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

// Row is a stored entry as read back. Seq, PrevHash and Hash are nil until
// the entry is sealed.
type Row struct {
	ID         int64     `db:"id"`
	Seq        *int64    `db:"seq"`
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

// hashRow is the chain hash of r sealed as number seq after prev.
func hashRow(r *Row, prev []byte, seq int64) []byte {
	h := sha256.New()
	h.Write(prev)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(seq))
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

// Record adds e to the log within q's transaction (or on its own when q
// is a pool), so that the entry commits or rolls back with the action it
// records. It takes no lock: the entry is sealed into the chain later, by
// Seal, once committed.
func Record(ctx context.Context, q store.Q, e Entry) error {
	if e.Outcome == "" {
		e.Outcome = OK
	}
	_, err := q.Exec(ctx, `INSERT INTO audit_log (at, actor_id, actor_role, action, object_type, object_id, subject_id, outcome, ip, detail)
		VALUES ($1, $2::uuid, $3, $4, $5, $6, $7::uuid, $8, $9, $10)`,
		time.Now().UTC().Truncate(time.Microsecond), nilIfEmpty(e.Actor.ID), e.Actor.Role, e.Action, e.ObjectType, e.ObjectID,
		nilIfEmpty(e.SubjectID), e.Outcome, e.Actor.IP, e.Detail)
	if err != nil {
		return fmt.Errorf("audit: record: %w", err)
	}
	return nil
}

// Report is what Verify found: sealed entries whose chain verifies, and
// committed entries still waiting for the sealer.
type Report struct {
	Sealed   int
	Unsealed int
}

// Verify walks the whole sealed chain and counts the entries waiting to be
// sealed. It returns ErrBroken naming the first row that does not verify,
// with the report of the rows checked before it.
func Verify(ctx context.Context, q store.Q) (Report, error) {
	var rep Report
	rows, err := q.Query(ctx, `SELECT seq, at, actor_id::text, actor_role, action, object_type, object_id, subject_id::text, outcome, ip, detail, prev_hash, hash
		FROM audit_log WHERE seq IS NOT NULL ORDER BY seq`)
	if err != nil {
		return rep, fmt.Errorf("audit: verify: %w", err)
	}
	defer rows.Close()
	prev := make([]byte, sha256.Size)
	var expectSeq int64 = 1
	for rows.Next() {
		var r Row
		var seq int64
		if err := rows.Scan(&seq, &r.At, &r.ActorID, &r.ActorRole, &r.Action, &r.ObjectType, &r.ObjectID, &r.SubjectID, &r.Outcome, &r.IP, &r.Detail, &r.PrevHash, &r.Hash); err != nil {
			return rep, fmt.Errorf("audit: verify: %w", err)
		}
		r.Seq = &seq
		if seq != expectSeq {
			return rep, ErrBroken.Withf("audit log broken at row %d: row %d is missing", seq, expectSeq)
		}
		if !bytes.Equal(r.PrevHash, prev) || !bytes.Equal(hashRow(&r, r.PrevHash, seq), r.Hash) {
			return rep, ErrBroken.Withf("audit log broken at row %d", seq)
		}
		prev = r.Hash
		expectSeq++
		rep.Sealed++
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("audit: verify: %w", err)
	}
	if err := q.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE seq IS NULL`).Scan(&rep.Unsealed); err != nil {
		return rep, fmt.Errorf("audit: verify: count unsealed: %w", err)
	}
	return rep, nil
}

// ForSubject returns the accesses to a patient's data, newest first: the
// "who saw my data" page.
func ForSubject(ctx context.Context, q store.Q, subjectID string, limit int) ([]Row, error) {
	rows, err := q.Query(ctx, `SELECT id, seq, at, actor_id::text, actor_role, action, object_type, object_id, subject_id::text, outcome, ip, detail, prev_hash, hash
		FROM audit_log WHERE subject_id = $1 ORDER BY id DESC LIMIT $2`, subjectID, limit)
	if err != nil {
		return nil, fmt.Errorf("audit: for subject: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[Row])
}
