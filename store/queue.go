package store

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Queue is a Q that queues the statements it is given on a batch instead
// of running them, so that the store and audit functions that only
// write, with one Exec each and no look at its command tag, join a
// pipelined transaction unchanged. Their errors come when the batch is
// read. Functions that read cannot be queued: they get ErrNotQueueable.
type Queue struct{ Batch *pgx.Batch }

var _ Q = Queue{}

// ErrNotQueueable is returned by a Queue asked to run a statement whose
// rows the caller wants now.
var ErrNotQueueable = errors.New("store: a statement that returns rows cannot be queued")

// Exec queues sql on the batch; its result comes when the batch is read.
func (q Queue) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	q.Batch.Queue(sql, args...)
	return pgconn.CommandTag{}, nil
}

// Query refuses: rows cannot wait for the batch.
func (q Queue) Query(context.Context, string, ...any) (pgx.Rows, error) {
	return nil, ErrNotQueueable
}

// QueryRow refuses: its Scan returns ErrNotQueueable.
func (q Queue) QueryRow(context.Context, string, ...any) pgx.Row { return errRow{ErrNotQueueable} }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
