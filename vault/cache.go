package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/store"
)

// How a node forgets data keys destroyed on another node:
//
//   - DestroyKey bumps the single-row vault_generation counter and sends
//     "<key id> <generation>" on destroyedChannel, both in the erasing
//     transaction, so the notification leaves only if the erasure commits.
//   - Run listens on every node and evicts the named key at once.
//   - A notification can be missed (a listener reconnecting), so a cached
//     key is used only while the last check of the generation is younger
//     than MaxStale. Run checks every MaxStale/2, which keeps the read path
//     free of queries; if it is not running or falls behind, the read path
//     checks itself. A changed generation sends the ids of every cached
//     key to the database and evicts those it says are destroyed.
//   - A key loaded while a destruction was heard of is not cached: the
//     load may have read it just before that destruction committed.

// destroyedChannel is the PostgreSQL notification channel of destroyed keys.
const destroyedChannel = "tc_vault_destroyed"

// DefaultMaxStale is how long a node may use a cached data key without
// checking for destroyed keys. Why 2 s: an erasure must not stay readable
// on another node for longer than a page load; a check is one read of a
// one-row table, every second per node when Run polls at half this.
const DefaultMaxStale = 2 * time.Second

// dataKey returns the plaintext data key id, from the cache when it may
// be trusted, else loaded through q and unwrapped.
func (v *Vault) dataKey(ctx context.Context, q store.Q, id string) ([]byte, error) {
	var known int64
	if v.db != nil {
		if err := v.fresh(ctx); err != nil {
			return nil, err
		}
		v.mu.RLock()
		dk, ok := v.cache[id]
		known = v.gen
		v.mu.RUnlock()
		if ok {
			return dk, nil
		}
	}
	var mid string
	var wrapped []byte
	var destroyed bool
	var gen int64
	err := q.QueryRow(ctx, `SELECT k.master_key_id, k.wrapped, k.destroyed_at IS NOT NULL, g.generation
		FROM data_keys k, vault_generation g WHERE k.id = $1`, id).Scan(&mid, &wrapped, &destroyed, &gen)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrKeyDestroyed
	}
	if err != nil {
		return nil, fmt.Errorf("vault: load data key: %w", err)
	}
	if destroyed {
		return nil, ErrKeyDestroyed
	}
	dk, err := v.ring.Unwrap(ctx, mid, wrapped)
	if err != nil {
		return nil, fmt.Errorf("vault: unwrap data key: %w", err)
	}
	if v.db != nil {
		// The load saw every destruction up to gen, and up to known (heard
		// of before it began). Why the smaller: q may be a transaction
		// that bumped the generation itself and may yet roll back, or one
		// whose snapshot is older than what this node has heard.
		v.mu.Lock()
		if min(gen, known) >= v.gen {
			v.cache[id] = dk
		}
		v.mu.Unlock()
	}
	return dk, nil
}

// fresh returns once the cache may be trusted: its last check began less
// than MaxStale ago, or the check it runs now succeeded.
func (v *Vault) fresh(ctx context.Context) error {
	if v.recent() {
		return nil
	}
	v.checkMu.Lock()
	defer v.checkMu.Unlock()
	if v.recent() {
		return nil // another caller checked while this one waited
	}
	return v.checkLocked(ctx)
}

func (v *Vault) recent() bool {
	c := v.checked.Load()
	return c != 0 && time.Since(v.start)-time.Duration(c-1) < v.MaxStale
}

// check compares the generation with the one the last check covered and,
// if it moved, evicts the cached keys destroyed meanwhile.
func (v *Vault) check(ctx context.Context) error {
	v.checkMu.Lock()
	defer v.checkMu.Unlock()
	return v.checkLocked(ctx)
}

// checkLocked is check; the caller holds checkMu. It reads through the
// vault's own pool, never a caller's transaction: only committed
// destructions count.
func (v *Vault) checkLocked(ctx context.Context) error {
	began := time.Since(v.start)
	var gen int64
	if err := v.db.Pool.QueryRow(ctx, `SELECT generation FROM vault_generation`).Scan(&gen); err != nil {
		return fmt.Errorf("vault: read key generation: %w", err)
	}
	// Raise gen before listing the cache: a key loaded before gen and
	// cached after this point is refused by dataKey; one cached before is
	// in the list.
	v.mu.Lock()
	v.gen = max(v.gen, gen)
	var ids []string
	if gen != v.polled {
		ids = slices.Collect(maps.Keys(v.cache))
	}
	v.mu.Unlock()
	if len(ids) > 0 {
		rows, err := v.db.Pool.Query(ctx, `SELECT id::text FROM data_keys WHERE id = ANY($1::uuid[]) AND destroyed_at IS NOT NULL`, ids)
		if err != nil {
			return fmt.Errorf("vault: check cached keys: %w", err)
		}
		destroyed, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("vault: check cached keys: %w", err)
		}
		v.mu.Lock()
		for _, id := range destroyed {
			delete(v.cache, id)
		}
		v.mu.Unlock()
	}
	v.polled = gen
	v.checked.Store(int64(began) + 1)
	return nil
}

// heard handles a notification "<key id> <generation>" of a destroyed key.
func (v *Vault) heard(payload string) {
	id, genText, _ := strings.Cut(payload, " ")
	gen, err := strconv.ParseInt(genText, 10, 64)
	v.mu.Lock()
	delete(v.cache, id)
	if err == nil {
		v.gen = max(v.gen, gen)
	}
	v.mu.Unlock()
}

// Listening is closed once Run listens for destroyed keys (for tests).
func (v *Vault) Listening() <-chan struct{} { return v.listening }

// Run keeps this node's cached data keys in step with the keys destroyed
// anywhere in the cluster until ctx ends: it evicts each destroyed key as
// its notification arrives and checks the generation every MaxStale/2.
func (v *Vault) Run(ctx context.Context) {
	if v.db == nil {
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(v.MaxStale / 2)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := v.check(ctx); err != nil && ctx.Err() == nil {
				slog.Warn("vault: key check failed", "err", err)
			}
		}
	})
	for ctx.Err() == nil {
		err := v.listen(ctx)
		if ctx.Err() != nil {
			break
		}
		slog.Warn("vault: listener lost, reconnecting", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	wg.Wait()
}

func (v *Vault) listen(ctx context.Context) error {
	conn, err := v.db.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection is LISTENing: never hand it back to the pool.
	pc := conn.Hijack()
	defer pc.Close(context.Background())
	if _, err := pc.Exec(ctx, "LISTEN "+pgx.Identifier{destroyedChannel}.Sanitize()); err != nil {
		return err
	}
	// Keys destroyed while this node was not listening.
	if err := v.check(ctx); err != nil {
		return err
	}
	v.listeningOnce.Do(func() { close(v.listening) })
	for {
		n, err := pc.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		v.heard(n.Payload)
	}
}
