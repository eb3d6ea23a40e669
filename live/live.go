// Package live carries small events to the browsers of the people they
// concern ("patient is waiting", "appointment moved", "delay announced"),
// whichever node their browser is connected to.
//
// Events travel through PostgreSQL NOTIFY: publishing inside a transaction
// delivers the event only if that transaction commits, and every node
// LISTENs and hands each event to its local subscribers. Events carry ids
// and kinds, never health data.
package live

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/store"
)

// channel is the PostgreSQL notification channel.
const channel = "tc_live"

// Event is one thing that happened, addressed to one account.
type Event struct {
	AccountID string            `json:"account_id"`
	Kind      string            `json:"kind"` // e.g. "patient.waiting", "appointment.changed"
	Data      map[string]string `json:"data,omitempty"`
	At        time.Time         `json:"at"`
}

// Publish sends e within q's transaction (or at once for a pool).
func Publish(ctx context.Context, q store.Q, e Event) error {
	if e.At.IsZero() {
		e.At = time.Now().UTC()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := q.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, string(b)); err != nil {
		return fmt.Errorf("live: publish: %w", err)
	}
	return nil
}

// Hub hands the events this node receives to its local subscribers.
type Hub struct {
	db *store.DB

	mu   sync.Mutex // guards subs
	subs map[string]map[chan Event]struct{}

	ready     chan struct{}
	readyOnce sync.Once
}

// NewHub returns a Hub; call Run to start listening.
func NewHub(db *store.DB) *Hub {
	return &Hub{db: db, subs: map[string]map[chan Event]struct{}{}, ready: make(chan struct{})}
}

// Ready is closed once the hub listens (useful to tests).
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Subscribe returns the events for account and a function to stop.
// A subscriber that does not keep up loses events rather than slowing
// anyone else (the page refreshes its state on reconnect anyway).
func (h *Hub) Subscribe(accountID string) (<-chan Event, func()) {
	ch := make(chan Event, 32)
	h.mu.Lock()
	if h.subs[accountID] == nil {
		h.subs[accountID] = map[chan Event]struct{}{}
	}
	h.subs[accountID][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[accountID], ch)
		if len(h.subs[accountID]) == 0 {
			delete(h.subs, accountID)
		}
		h.mu.Unlock()
	}
}

func (h *Hub) deliver(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[e.AccountID] {
		select {
		case ch <- e:
		default:
		}
	}
}

// Run listens until ctx ends, reconnecting after a lost connection.
func (h *Hub) Run(ctx context.Context) {
	for ctx.Err() == nil {
		err := h.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		slog.Warn("live: listener lost, reconnecting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (h *Hub) listen(ctx context.Context) error {
	conn, err := h.db.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection is LISTENing: never hand it back to the pool.
	pc := conn.Hijack()
	defer pc.Close(context.Background())
	if _, err := pc.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return err
	}
	h.readyOnce.Do(func() { close(h.ready) })
	for {
		n, err := pc.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		var e Event
		if err := json.Unmarshal([]byte(n.Payload), &e); err != nil {
			slog.Warn("live: bad event", "err", err)
			continue
		}
		h.deliver(e)
	}
}
