// Package cluster lets several `teleconsult serve` nodes share one
// PostgreSQL: each node registers itself and refreshes its record with
// its load every heartbeat, and each consult's room is placed on exactly
// one live node, chosen by load when its first participant joins. A node
// that stops refreshing for three heartbeats is gone, and one that stops
// cleanly is stopped at once: either way its rooms are placed again, on a
// live node, at their next join. A drain (no new room on the node) lasts
// until it is undone, across the node's restarts.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/store"
)

// DefaultHeartbeat is how often a node refreshes its record.
const DefaultHeartbeat = time.Second

// goneAfter heartbeats without a refresh, a node is considered gone. Why
// three: one lost or late refresh (a busy database, a GC pause) must not
// move running consults.
const goneAfter = 3

// Load is what a node reports of itself at each heartbeat.
type Load struct {
	Rooms, Participants int
	ForwardedBytes      uint64 // a counter: bytes forwarded since start
}

// Config describes this node.
type Config struct {
	ID           string
	SignalingURL string // ws(s)://host/api/v1/signal
	MediaAddress string
	Heartbeat    time.Duration // default DefaultHeartbeat
	// Load reports the node's rooms and forwarded bytes; nil reports none.
	Load func() Load
	Log  *slog.Logger
}

// Registry is this node's membership of the cluster and the placement of
// rooms on nodes.
type Registry struct {
	db  *store.DB
	cfg Config

	mu         sync.Mutex // guards the fields below
	origins    []string
	lastCPU    time.Duration
	lastBytes  uint64
	lastAt     time.Time
	registered bool // a heartbeat of this process reached the database
}

// New returns the registry of node cfg; call Run to keep its record.
func New(db *store.DB, cfg Config) *Registry {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Registry{db: db, cfg: cfg, origins: originsOf([]string{cfg.SignalingURL})}
}

// ID returns this node's id.
func (r *Registry) ID() string { return r.cfg.ID }

// Gone is how long a node may go without a heartbeat before it is
// considered gone.
func (r *Registry) Gone() time.Duration { return goneAfter * r.cfg.Heartbeat }

// Score ranks a node for a new room; lower is better. Rooms dominate
// (counting placements made since the last heartbeat, so that a burst of
// joins spreads out); CPU and bandwidth break near-ties and steer away
// from a node that is busy for other reasons.
func Score(n store.Node) float64 {
	rooms := max(n.Placed, n.Rooms)
	// Why these weights: a fully busy CPU counts as 20 rooms, and 100
	// Mbit/s of forwarding as 10 rooms (an HD 1:1 consult forwards ~3 Mbit/s).
	return float64(rooms) + 20*n.CPU + float64(n.Bandwidth)/10e6
}

// Heartbeat refreshes this node's record with its current load, and the
// cached signalling origins of the live nodes.
func (r *Registry) Heartbeat(ctx context.Context) error {
	n := store.Node{ID: r.cfg.ID, SignalingURL: r.cfg.SignalingURL, MediaAddress: r.cfg.MediaAddress}
	var l Load
	if r.cfg.Load != nil {
		l = r.cfg.Load()
	}
	n.Rooms, n.Participants = l.Rooms, l.Participants
	cpu := processCPU()
	now := time.Now()
	r.mu.Lock()
	if !r.lastAt.IsZero() {
		if dt := now.Sub(r.lastAt); dt > 0 {
			n.CPU = min(1, float64(cpu-r.lastCPU)/float64(dt)/float64(runtime.NumCPU()))
			if l.ForwardedBytes >= r.lastBytes {
				n.Bandwidth = int64(float64(l.ForwardedBytes-r.lastBytes) * 8 / dt.Seconds())
			}
		}
	}
	r.lastCPU, r.lastBytes, r.lastAt = cpu, l.ForwardedBytes, now
	r.mu.Unlock()
	n.CPU = max(0, n.CPU)
	r.mu.Lock()
	first := !r.registered
	r.mu.Unlock()
	if err := store.HeartbeatNode(ctx, r.db.Pool, n, first); err != nil {
		return err
	}
	r.mu.Lock()
	r.registered = true
	r.mu.Unlock()
	nodes, err := store.Nodes(ctx, r.db.Pool, r.Gone())
	if err != nil {
		return err
	}
	urls := []string{r.cfg.SignalingURL}
	for _, o := range nodes {
		if o.Alive {
			urls = append(urls, o.SignalingURL)
		}
	}
	r.mu.Lock()
	r.origins = originsOf(urls)
	r.mu.Unlock()
	return nil
}

// Run heartbeats until ctx ends, then marks this node stopped so that its
// rooms are placed elsewhere at once. The record stays, with its draining
// flag, for the next start under the same id.
func (r *Registry) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Heartbeat)
	defer t.Stop()
	for {
		hctx, cancel := context.WithTimeout(ctx, r.Gone())
		if err := r.Heartbeat(hctx); err != nil && ctx.Err() == nil {
			r.cfg.Log.Warn("cluster: heartbeat failed", "node", r.cfg.ID, "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := store.StopNode(dctx, r.db.Pool, r.cfg.ID); err != nil {
				r.cfg.Log.Warn("cluster: leaving", "node", r.cfg.ID, "err", err)
			}
			cancel()
			return
		case <-t.C:
		}
	}
}

// SignalOrigins returns the ws(s)://host origins of the live nodes'
// signalling, as of the last heartbeat (for the pages' CSP).
func (r *Registry) SignalOrigins() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.origins)
}

func originsOf(urls []string) []string {
	var out []string
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			continue
		}
		out = append(out, u.Scheme+"://"+u.Host)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Placement is where a room lives.
type Placement struct {
	Node         string
	SignalingURL string
}

// Place returns the node room lives on, placing it on the least loaded
// live node that is not draining if it has no live node yet.
func (r *Registry) Place(ctx context.Context, room string) (Placement, error) {
	var n store.Node
	err := r.db.Tx(ctx, func(tx pgx.Tx) error {
		var err error
		n, err = store.PlaceRoom(ctx, tx, room, r.Gone(), Score)
		return err
	})
	if err != nil {
		return Placement{}, err
	}
	return Placement{Node: n.ID, SignalingURL: n.SignalingURL}, nil
}

// Finished marks room's placement on this node finished (the consult
// ended), so that it no longer counts as load.
func (r *Registry) Finished(ctx context.Context, room string) error {
	return store.FinishRoom(ctx, r.db.Pool, room, r.cfg.ID)
}

// Nodes lists the registered nodes with their liveness; a stopped or gone
// node stays listed until Forget.
func (r *Registry) Nodes(ctx context.Context) ([]store.Node, error) {
	return store.Nodes(ctx, r.db.Pool, r.Gone())
}

// SetDraining drains (or undrains) node id: a draining node takes no new
// room; its running consults finish there. The flag outlives the node's
// restarts: it is cleared only by undraining.
func SetDraining(ctx context.Context, db *store.DB, id string, draining bool) error {
	return store.SetNodeDraining(ctx, db.Pool, id, draining)
}

// Forget removes the record of node id, stopped or gone for good (its
// drain flag with it); it refuses a live node. heartbeat is the nodes'.
func Forget(ctx context.Context, db *store.DB, id string, heartbeat time.Duration) error {
	return store.DeleteNode(ctx, db.Pool, id, goneAfter*heartbeat)
}

// ErrDrainTimeout is returned when a drained node still has rooms at the
// end of the wait.
var ErrDrainTimeout = errors.New("cluster: the node still has rooms")

// JoinGrace is how long after a join placed a room on a node (or found it
// there) a drain still waits for that room, even though the node does not
// report it: the join hands the client a token, and the client connects
// to the node next. Why 10 s: a page connects as soon as it has its
// token; 10 s covers a slow mobile network's TLS and WebSocket handshakes.
// WaitDrained adds two heartbeats, the delay before the node reports a
// room its client reached.
const JoinGrace = 10 * time.Second

// WaitDrained polls node id, every heartbeat, until its consults are
// over: the node reports no room, and no room was placed on it or joined
// there within JoinGrace plus two heartbeats without ending since (a
// client about to connect). It returns at once when the node stopped
// (nothing runs there any more), and ErrDrainTimeout when ctx ends first.
func WaitDrained(ctx context.Context, db *store.DB, id string, every time.Duration) error {
	for {
		nodes, err := store.Nodes(ctx, db.Pool, goneAfter*every)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(nodes, func(n store.Node) bool { return n.ID == id })
		if i < 0 || nodes[i].Stopped {
			return nil // it left
		}
		if nodes[i].Rooms == 0 {
			recent, err := store.RecentPlacements(ctx, db.Pool, id, JoinGrace+2*every)
			if err != nil {
				return err
			}
			if recent == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrDrainTimeout, ctx.Err())
		case <-time.After(every):
		}
	}
}

// DefaultID is the default node id: host name, "-", the port of addr.
func DefaultID(hostname, addr string) string {
	port := addr
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		port = addr[i+1:]
	}
	return hostname + "-" + port
}

// processCPU is this process's user+system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
