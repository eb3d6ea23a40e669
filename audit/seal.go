package audit

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/store"
)

// sealLockID makes one sealer at a time across the cluster. It is taken
// with pg_try_advisory_xact_lock by each batch's transaction: a sealer
// that finds it taken returns at once (the other one is sealing), and a
// sealer whose node or connection dies mid-batch releases it with the
// rollback of its batch, so the next one carries on from the same head.
const sealLockID = 7215_0003

// sealBatch is the number of entries sealed per transaction. Why: small
// enough that a batch holds its row locks for a few milliseconds, large
// enough that a burst of a few thousand entries is sealed within one
// interval.
const sealBatch = 500

// DefaultSealInterval is how often each node runs the sealer: the longest
// a committed entry waits for its place in the chain when nodes are idle.
const DefaultSealInterval = 200 * time.Millisecond

// TxStarter is what Seal needs: a pool, or a transaction (Seal then works
// in savepoints of it). *pgxpool.Pool and pgx.Tx satisfy it.
type TxStarter interface {
	store.Q
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Seal gives every committed unsealed entry its place in the chain, in
// insert order, in batches of sealBatch, and returns how many it sealed.
// If another sealer holds the chain it returns 0 and no error at once.
func Seal(ctx context.Context, q TxStarter) (int, error) {
	total := 0
	for {
		n, more, err := sealOnce(ctx, q)
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

// sealOnce seals one batch in one transaction; more reports that the batch
// was full, so that more entries may be waiting.
func sealOnce(ctx context.Context, q TxStarter) (n int, more bool, err error) {
	err = pgx.BeginFunc(ctx, q, func(tx pgx.Tx) error {
		var mine bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, sealLockID).Scan(&mine); err != nil {
			return fmt.Errorf("audit: seal: lock: %w", err)
		}
		if !mine {
			return nil
		}
		var head int64
		prev := make([]byte, sha256.Size)
		err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1`).Scan(&head, &prev)
		if err != nil && err != pgx.ErrNoRows {
			return fmt.Errorf("audit: seal: read chain head: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT id, at, actor_id::text, actor_role, action, object_type, object_id, subject_id::text, outcome, ip, detail
			FROM audit_log WHERE seq IS NULL ORDER BY id LIMIT $1`, sealBatch)
		if err != nil {
			return fmt.Errorf("audit: seal: read unsealed: %w", err)
		}
		var ids, seqs []int64
		var prevs, hashes [][]byte
		var r Row
		_, err = pgx.ForEachRow(rows, []any{&r.ID, &r.At, &r.ActorID, &r.ActorRole, &r.Action, &r.ObjectType, &r.ObjectID, &r.SubjectID, &r.Outcome, &r.IP, &r.Detail}, func() error {
			head++
			h := hashRow(&r, prev, head)
			ids, seqs, prevs, hashes = append(ids, r.ID), append(seqs, head), append(prevs, prev), append(hashes, h)
			prev = h
			return nil
		})
		if err != nil {
			return fmt.Errorf("audit: seal: read unsealed: %w", err)
		}
		if len(ids) == 0 {
			return nil
		}
		tag, err := tx.Exec(ctx, `UPDATE audit_log a SET seq = v.seq, prev_hash = v.prev_hash, hash = v.hash
			FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[]) AS v(id, seq, prev_hash, hash)
			WHERE a.id = v.id AND a.seq IS NULL`, ids, seqs, prevs, hashes)
		if err != nil {
			return fmt.Errorf("audit: seal: %w", err)
		}
		if int(tag.RowsAffected()) != len(ids) {
			return fmt.Errorf("audit: seal: sealed %d of %d entries", tag.RowsAffected(), len(ids))
		}
		n, more = len(ids), len(ids) == sealBatch
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return n, more, nil
}

// Sealer returns a job that seals pool's audit log, for a scheduler that
// runs func(ctx) error jobs every interval.
func Sealer(pool TxStarter) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := Seal(ctx, pool)
		return err
	}
}

// RunSealer seals pool's audit log every interval (and once at once) until
// ctx ends, logging failures to log. Every node runs one; the advisory
// lock lets one of them seal at a time.
func RunSealer(ctx context.Context, pool TxStarter, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := Seal(ctx, pool); err != nil && ctx.Err() == nil {
			log.Warn("audit: seal failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
