package cluster_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"teleconsult/cluster"
	"teleconsult/store"
	"teleconsult/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// appointments inserts n video appointments (one practitioner, an hour
// apart) and returns their ids: placements belong to appointments.
func appointments(t *testing.T, db *store.DB, n int) []string {
	t.Helper()
	ctx := context.Background()
	var doc, pat, ct string
	q := func(sql string, dst *string, args ...any) {
		if err := db.Pool.QueryRow(ctx, sql, args...).Scan(dst); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	q(`INSERT INTO accounts (email, name, role, password_hash, language) VALUES ('doc@example.org', 'Dr Martin', 'practitioner', 'x', 'fr') RETURNING id::text`, &doc)
	q(`INSERT INTO accounts (email, name, role, password_hash, language) VALUES ('pat@example.org', 'Alice', 'patient', 'x', 'fr') RETURNING id::text`, &pat)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO practitioners (account_id, specialty, rpps, address, city, postcode, time_zone)
		VALUES ($1, 'psychiatry', '12345678901', '1 rue de la Paix', 'Paris', '75002', 'Europe/Paris')`, doc); err != nil {
		t.Fatal(err)
	}
	q(`INSERT INTO consultation_types (practitioner_id, name, mode, duration_minutes) VALUES ($1, 'Suivi', 'video', 30) RETURNING id::text`, &ct, doc)
	start := time.Now().Truncate(time.Hour).Add(time.Hour)
	ids := make([]string, n)
	for i := range ids {
		s := start.Add(time.Duration(i) * 30 * time.Minute)
		q(`INSERT INTO appointments (practitioner_id, consultation_type_id, patient_id, mode, starts_at, ends_at, status)
			VALUES ($1, $2, $3, 'video', $4, $5, 'confirmed') RETURNING id::text`, &ids[i], doc, ct, pat, s, s.Add(30*time.Minute))
	}
	return ids
}

// node registers a node named id with rooms rooms.
func node(t *testing.T, db *store.DB, id string, rooms int) *cluster.Registry {
	t.Helper()
	r := cluster.New(db, cluster.Config{ID: id, SignalingURL: "ws://" + id + ":8080/api/v1/signal", MediaAddress: id,
		Load: func() cluster.Load { return cluster.Load{Rooms: rooms} }})
	if err := r.Heartbeat(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

func kill(t *testing.T, db *store.DB, id string) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), `UPDATE nodes SET heartbeat_at = now() - interval '1 minute' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
}

func TestRegistryHeartbeatAndGone(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	a := node(t, db, "a", 0)
	node(t, db, "b", 0)
	kill(t, db, "b")
	nodes, err := a.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || !nodes[0].Alive || nodes[1].Alive {
		t.Fatalf("want a alive and b gone, got %+v", nodes)
	}
	if got := a.SignalOrigins(); len(got) != 1 || got[0] != "ws://a:8080" {
		t.Fatalf("origins before a's next heartbeat: %v", got)
	}
	// A clean stop marks the record stopped: not alive at once.
	stop(t, a)
	nodes, _ = a.Nodes(ctx)
	if len(nodes) != 2 || nodes[0].ID != "a" || nodes[0].Alive || !nodes[0].Stopped {
		t.Fatalf("after a stopped: %+v", nodes)
	}
	// Forget removes a stopped node, and refuses a live one.
	c := node(t, db, "c", 0)
	if err := cluster.Forget(ctx, db, "c", cluster.DefaultHeartbeat); !errors.Is(err, store.ErrNodeAlive) {
		t.Fatalf("forgetting a live node: %v", err)
	}
	for _, id := range []string{"a", "b"} {
		if err := cluster.Forget(ctx, db, id, cluster.DefaultHeartbeat); err != nil {
			t.Fatalf("forget %s: %v", id, err)
		}
	}
	if err := cluster.Forget(ctx, db, "a", cluster.DefaultHeartbeat); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("forgetting an unknown node: %v", err)
	}
	if nodes, _ = c.Nodes(ctx); len(nodes) != 1 || nodes[0].ID != "c" {
		t.Fatalf("after forgetting a and b: %+v", nodes)
	}
}

// stop runs r for a moment, then stops it as a clean shutdown does.
func stop(t *testing.T, r *cluster.Registry) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	<-done
}

// TestDrainOutlivesACleanRestart: an operator drains a node for
// maintenance and restarts it; it comes back draining, takes no new room
// until undrained, and while stopped it takes none at all.
func TestDrainOutlivesACleanRestart(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	rooms := appointments(t, db, 4)
	a := node(t, db, "a", 0)
	node(t, db, "b", 5) // busier: a wins every placement it may take
	p, err := a.Place(ctx, rooms[0])
	if err != nil || p.Node != "a" {
		t.Fatalf("first placement: %v %v", p, err)
	}
	if err := cluster.SetDraining(ctx, db, "a", true); err != nil {
		t.Fatal(err)
	}
	stop(t, a)
	// Stopped, within its last heartbeat's gone interval: no room stays
	// or goes there.
	for _, r := range rooms[:2] {
		if p, err := a.Place(ctx, r); err != nil || p.Node != "b" {
			t.Fatalf("room %s placed on %v (%v) while a is stopped", r, p, err)
		}
	}
	// Restarted under the same id: still draining.
	a2 := node(t, db, "a", 0)
	nodes, err := a2.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !nodes[0].Alive || nodes[0].Stopped || !nodes[0].Draining {
		t.Fatalf("a after its restart: %+v", nodes[0])
	}
	if p, err := a2.Place(ctx, rooms[2]); err != nil || p.Node != "b" {
		t.Fatalf("new room placed on %v (%v), want b: a is drained", p, err)
	}
	if err := cluster.SetDraining(ctx, db, "a", false); err != nil {
		t.Fatal(err)
	}
	if p, err := a2.Place(ctx, rooms[3]); err != nil || p.Node != "a" {
		t.Fatalf("after undrain, new room placed on %v (%v), want a", p, err)
	}
}

// TestWaitDrainedWaitsForARoomAboutToJoin: a room placed on a node just
// before its drain, whose clients have not connected yet (the node does
// not report it), keeps `drain --wait` waiting until it ends or its
// clients had long enough to connect.
func TestWaitDrainedWaitsForARoomAboutToJoin(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	rooms := appointments(t, db, 2)
	a := node(t, db, "a", 0)
	node(t, db, "b", 5)
	wait := func(d time.Duration) error {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return cluster.WaitDrained(ctx, db, "a", 50*time.Millisecond)
	}
	// No room at all: at once.
	if err := cluster.SetDraining(ctx, db, "a", true); err != nil {
		t.Fatal(err)
	}
	if err := wait(time.Second); err != nil {
		t.Fatalf("an empty node: %v", err)
	}
	if err := cluster.SetDraining(ctx, db, "a", false); err != nil {
		t.Fatal(err)
	}
	for _, r := range rooms {
		if p, err := a.Place(ctx, r); err != nil || p.Node != "a" {
			t.Fatalf("placement: %v %v", p, err)
		}
	}
	if err := cluster.SetDraining(ctx, db, "a", true); err != nil {
		t.Fatal(err)
	}
	if err := wait(500 * time.Millisecond); !errors.Is(err, cluster.ErrDrainTimeout) {
		t.Fatalf("two rooms about to join, the node reporting none: the wait returned %v", err)
	}
	// One room ends; the other's token was handed out long ago and nobody
	// connected with it: the wait is over.
	if err := a.Finished(ctx, rooms[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE room_placements SET placed_at = now() - $1::interval WHERE room = $2`,
		2*cluster.JoinGrace, rooms[1]); err != nil {
		t.Fatal(err)
	}
	if err := wait(time.Second); err != nil {
		t.Fatalf("no room left: %v", err)
	}
	// Its patient joins again (the room stays on the draining node): the
	// wait is on again.
	if p, err := a.Place(ctx, rooms[1]); err != nil || p.Node != "a" {
		t.Fatalf("re-join moved the room: %v %v", p, err)
	}
	if err := wait(500 * time.Millisecond); !errors.Is(err, cluster.ErrDrainTimeout) {
		t.Fatalf("a re-joined room about to connect: the wait returned %v", err)
	}
	// A stopped node has nothing left to wait for.
	stop(t, a)
	if err := wait(time.Second); err != nil {
		t.Fatalf("a stopped node: %v", err)
	}
}

func TestPlacementSpreadsSticksAndDrains(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	rooms := appointments(t, db, 8)
	a := node(t, db, "a", 0)
	node(t, db, "b", 0)
	node(t, db, "c", 3) // already busy

	// Six placements within one heartbeat spread over the nodes: the
	// placements count, not only the last reported load.
	count := map[string]int{}
	for _, r := range rooms[:6] {
		p, err := a.Place(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		count[p.Node]++
	}
	if count["a"] != 3 || count["b"] != 3 || count["c"] != 0 {
		t.Fatalf("placements: %v", count)
	}
	// An existing placement sticks.
	first, _ := a.Place(ctx, rooms[0])
	for range 3 {
		again, err := a.Place(ctx, rooms[0])
		if err != nil || again != first {
			t.Fatalf("re-join moved the room: %v then %v (%v)", first, again, err)
		}
	}
	// A draining node keeps its rooms but takes no new one.
	if err := cluster.SetDraining(ctx, db, first.Node, true); err != nil {
		t.Fatal(err)
	}
	if again, _ := a.Place(ctx, rooms[0]); again != first {
		t.Fatalf("draining moved a running room: %v then %v", first, again)
	}
	for _, r := range rooms[6:] {
		p, err := a.Place(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if p.Node == first.Node {
			t.Fatalf("new room %s placed on draining node %s", r, p.Node)
		}
	}
	if err := cluster.SetDraining(ctx, db, "nope", true); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("draining an unknown node: %v", err)
	}
}

func TestDeadNodeRoomIsReplaced(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	rooms := appointments(t, db, 1)
	a := node(t, db, "a", 0)
	node(t, db, "b", 5)
	p, err := a.Place(ctx, rooms[0])
	if err != nil || p.Node != "a" {
		t.Fatalf("first placement: %v %v", p, err)
	}
	kill(t, db, "a")
	p, err = a.Place(ctx, rooms[0])
	if err != nil || p.Node != "b" || p.SignalingURL != "ws://b:8080/api/v1/signal" {
		t.Fatalf("after a died: %v %v", p, err)
	}
	kill(t, db, "b")
	if _, err := a.Place(ctx, rooms[0]); !errors.Is(err, store.ErrNoNode) {
		t.Fatalf("no live node: %v", err)
	}
}

func TestConcurrentJoinsAgree(t *testing.T) {
	db := storetest.New(t)
	rooms := appointments(t, db, 1)
	a := node(t, db, "a", 0)
	node(t, db, "b", 0)
	node(t, db, "c", 0)
	var wg sync.WaitGroup
	got := make([]string, 50)
	errs := make([]error, 50)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := a.Place(context.Background(), rooms[0])
			got[i], errs[i] = p.Node, err
		}()
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || got[i] != got[0] {
			t.Fatalf("join %d: %q (%v), join 0: %q", i, got[i], errs[i], got[0])
		}
	}
}

func TestFinishedRoomStopsCounting(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	rooms := appointments(t, db, 3)
	a := node(t, db, "a", 0)
	b := node(t, db, "b", 0)
	p0, _ := a.Place(ctx, rooms[0]) // a (tie broken by id)
	p1, _ := a.Place(ctx, rooms[1]) // b
	if p0.Node != "a" || p1.Node != "b" {
		t.Fatalf("placements %v %v", p0, p1)
	}
	if err := b.Finished(ctx, rooms[1]); err != nil {
		t.Fatal(err)
	}
	p2, _ := a.Place(ctx, rooms[2])
	if p2.Node != "b" {
		t.Fatalf("b's finished room still counts: third room went to %s", p2.Node)
	}
}

func TestDefaultID(t *testing.T) {
	for _, c := range []struct{ host, addr, want string }{
		{"web1", ":8080", "web1-8080"}, {"web1", "127.0.0.2:9000", "web1-9000"}, {"h", "[::1]:81", "h-81"},
	} {
		if got := cluster.DefaultID(c.host, c.addr); got != c.want {
			t.Errorf("DefaultID(%q, %q) = %q, want %q", c.host, c.addr, got, c.want)
		}
	}
}

func TestRestartedNodeForgetsRoomsNobodyRejoined(t *testing.T) {
	db := storetest.New(t)
	ctx := context.Background()
	rooms := appointments(t, db, 4)
	a := node(t, db, "a", 0)
	node(t, db, "b", 0)
	p0, _ := a.Place(ctx, rooms[0])
	p1, _ := a.Place(ctx, rooms[1])
	p2, _ := a.Place(ctx, rooms[2])
	if p0.Node != "a" || p1.Node != "b" || p2.Node != "a" {
		t.Fatalf("placements %v %v %v", p0, p1, p2)
	}
	// a's process is killed and starts again under the same id: the two
	// rooms it held died with it. Until someone joins them again they are
	// not its load, so the next room goes to a (tie with b, broken by id).
	a2 := node(t, db, "a", 0)
	load := func() map[string]int {
		nodes, err := a2.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]int{}
		for _, n := range nodes {
			m[n.ID] = n.Placed
		}
		return m
	}
	if got := load(); got["a"] != 0 || got["b"] != 1 {
		t.Fatalf("after a's restart, placed rooms = %v, want a:0 b:1", got)
	}
	// Its patient comes back: the room stays on a and counts again.
	if p, _ := a2.Place(ctx, rooms[0]); p.Node != "a" {
		t.Fatalf("rejoined room moved to %s", p.Node)
	}
	if got := load(); got["a"] != 1 {
		t.Fatalf("a rejoined room does not count as a's load: %v", got)
	}
	if p, _ := a2.Place(ctx, rooms[3]); p.Node != "a" {
		t.Fatalf("with one room each, the new room went to %s, want a (ties by id)", p.Node)
	}
}
