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
	// A clean stop deletes the record.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.Run(rctx); close(done) }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	<-done
	nodes, _ = a.Nodes(ctx)
	if len(nodes) != 1 || nodes[0].ID != "b" {
		t.Fatalf("after a stopped: %+v", nodes)
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
