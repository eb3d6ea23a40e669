package storetest

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"teleconsult/store"
)

// QueryCounter counts the statements sent to PostgreSQL (BEGIN and COMMIT
// included) and the round trips they take (a batch is one): figures that
// the load of the machine does not change, unlike the time.
type QueryCounter struct{ statements, roundTrips, batches atomic.Int64 }

var _ pgx.BatchTracer = (*QueryCounter)(nil)

// TraceQueryStart counts a statement sent alone: one round trip.
func (c *QueryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.statements.Add(1)
	c.roundTrips.Add(1)
	return ctx
}

// TraceQueryEnd does nothing.
func (c *QueryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TraceBatchStart counts a batch: one round trip.
func (c *QueryCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.roundTrips.Add(1)
	c.batches.Add(1)
	return ctx
}

// TraceBatchQuery counts a statement of a batch.
func (c *QueryCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {
	c.statements.Add(1)
}

// TraceBatchEnd does nothing.
func (c *QueryCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// Reset sets every count back to zero.
func (c *QueryCounter) Reset() { c.statements.Store(0); c.roundTrips.Store(0); c.batches.Store(0) }

// Counts returns the statements and round trips since the last Reset.
func (c *QueryCounter) Counts() (statements, roundTrips int64) {
	return c.statements.Load(), c.roundTrips.Load()
}

// Batches returns the batches sent since the last Reset.
func (c *QueryCounter) Batches() int64 { return c.batches.Load() }

// NewCounted is New with a pool whose statements and round trips are
// counted.
func NewCounted(t testing.TB) (*store.DB, *QueryCounter) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(NewURL(t))
	if err != nil {
		t.Fatal(err)
	}
	counter := &QueryCounter{}
	cfg.ConnConfig.Tracer = counter
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return &store.DB{Pool: pool}, counter
}
