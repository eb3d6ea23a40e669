package consult_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"teleconsult/auth"
	"teleconsult/cluster"
	"teleconsult/consult"
	"teleconsult/live"
	"teleconsult/loadtest"
	"teleconsult/sfu"
	"teleconsult/signaling"
	"teleconsult/store"
	"teleconsult/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// TestWaitingReachesPractitionerOnAnotherNode: the patient joins through
// node B's signalling; the practitioner's event stream is on node A (its
// own live hub on the same database) and hears that the patient waits.
func TestWaitingReachesPractitionerOnAnotherNode(t *testing.T) {
	db := storetest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	doc, pat, ct := people(t, db)
	appt := appointment(t, db, doc, pat, ct, 5*time.Minute)

	// Node A: only the practitioner's event stream.
	hubA := live.NewHub(db)
	go hubA.Run(ctx)
	<-hubA.Ready()
	events, stop := hubA.Subscribe(doc)
	defer stop()

	// Node B: the signalling the patient joins through.
	signer := auth.NewJoinSigner([]byte("cluster test key, cluster test.."))
	media, err := sfu.New(sfu.Config{IncludeLoopback: true, IPFilter: func(ip net.IP) bool { return ip.IsLoopback() }})
	if err != nil {
		t.Fatal(err)
	}
	defer media.Close()
	svcB := &consult.Service{DB: db, Signer: signer}
	sigB := signaling.NewServer(signaling.Config{Media: media}, signer, svcB)
	defer sigB.Close()
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/signal", sigB)
	hs := httptest.NewServer(mux)
	defer hs.Close()

	tok, err := signer.Sign(auth.JoinClaims{Room: appt, Participant: pat, Name: "Alice", Role: auth.RolePatient, Expires: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := loadtest.Dial(ctx, loadtest.ClientConfig{SignalURL: "ws" + hs.URL[len("http"):] + "/api/v1/signal", Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case e := <-events:
		if e.Kind != "patient.waiting" || e.Data["appointment_id"] != appt {
			t.Fatalf("node A got %+v", e)
		}
	case <-ctx.Done():
		t.Fatal("node A never heard the patient was waiting")
	}
	a, err := store.AppointmentByID(ctx, db.Pool, appt)
	if err != nil || a.Status != store.StatusArrived {
		t.Fatalf("appointment %v %v, want arrived", a.Status, err)
	}
}

// people creates a practitioner with a video consultation type and a
// patient.
func people(t *testing.T, db *store.DB) (doc, pat, ct string) {
	t.Helper()
	q := func(sql string, dst *string, args ...any) {
		t.Helper()
		if err := db.Pool.QueryRow(context.Background(), sql, args...).Scan(dst); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	q(`INSERT INTO accounts (email, name, role, password_hash, language) VALUES ('doc@example.org', 'Dr Martin', 'practitioner', 'x', 'fr') RETURNING id::text`, &doc)
	q(`INSERT INTO accounts (email, name, role, password_hash, language) VALUES ('pat@example.org', 'Alice', 'patient', 'x', 'fr') RETURNING id::text`, &pat)
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO practitioners (account_id, specialty, rpps) VALUES ($1, 'general_practice', '10101010101')`, doc); err != nil {
		t.Fatal(err)
	}
	q(`INSERT INTO consultation_types (practitioner_id, name, mode, duration_minutes) VALUES ($1, 'Suivi', 'video', 30) RETURNING id::text`, &ct, doc)
	return doc, pat, ct
}

// appointment books a confirmed video appointment starting in.
func appointment(t *testing.T, db *store.DB, doc, pat, ct string, in time.Duration) string {
	t.Helper()
	var id string
	start := time.Now().Add(in)
	if err := db.Pool.QueryRow(context.Background(), `INSERT INTO appointments (practitioner_id, consultation_type_id, patient_id, mode, starts_at, ends_at, status)
		VALUES ($1, $2, $3, 'video', $4, $5, 'confirmed') RETURNING id::text`, doc, ct, pat, start, start.Add(30*time.Minute)).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// placer is the cluster registry as the server wires it into the service.
type placer struct{ r *cluster.Registry }

func (p placer) Place(ctx context.Context, room string) (consult.Placement, error) {
	pl, err := p.r.Place(ctx, room)
	return consult.Placement{Node: pl.Node, SignalingURL: pl.SignalingURL}, err
}

func (p placer) Finished(ctx context.Context, room string) error { return p.r.Finished(ctx, room) }

// TestRoomStopsCountingAsLoadWhenItCloses: a room placed on a node counts
// as that node's load until the consult is ended or everyone left and the
// room closed empty; then the placement is finished (a drained node is
// not kept waiting by it) and the next join places the room again.
func TestRoomStopsCountingAsLoadWhenItCloses(t *testing.T) {
	db := storetest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	doc, pat, ct := people(t, db)
	signer := auth.NewJoinSigner([]byte("cluster test key, cluster test.."))
	media, err := sfu.New(sfu.Config{IncludeLoopback: true, IPFilter: func(ip net.IP) bool { return ip.IsLoopback() }})
	if err != nil {
		t.Fatal(err)
	}
	defer media.Close()
	mux := http.NewServeMux()
	hs := httptest.NewServer(mux)
	defer hs.Close()
	url := "ws" + hs.URL[len("http"):] + "/api/v1/signal"
	reg := cluster.New(db, cluster.Config{ID: "node-a", SignalingURL: url})
	if err := reg.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	svc := &consult.Service{DB: db, Signer: signer, Placer: placer{reg}}
	sig := signaling.NewServer(signaling.Config{Media: media, EmptyRoomTimeout: 300 * time.Millisecond}, signer, svc)
	defer sig.Close()
	mux.Handle("GET /api/v1/signal", sig)

	placed := func(t *testing.T) int {
		t.Helper()
		nodes, err := reg.Nodes(ctx)
		if err != nil || len(nodes) != 1 {
			t.Fatalf("nodes: %+v %v", nodes, err)
		}
		return nodes[0].Placed
	}
	for i, tc := range []struct {
		name string
		bye  string // what the practitioner sends to go
	}{
		{"everyone left", "leave"},
		{"ended", "end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			appt := appointment(t, db, doc, pat, ct, time.Duration(i+1)*time.Hour)
			p, err := reg.Place(ctx, appt)
			if err != nil || p.Node != "node-a" {
				t.Fatalf("placed on %q: %v", p.Node, err)
			}
			tok, err := signer.Sign(auth.JoinClaims{Room: appt, Participant: doc, Name: "Dr Martin", Role: auth.RolePractitioner, Expires: time.Now().Add(time.Minute)})
			if err != nil {
				t.Fatal(err)
			}
			c, err := loadtest.Dial(ctx, loadtest.ClientConfig{SignalURL: url, Token: tok})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if n := placed(t); n != 1 {
				t.Fatalf("%d rooms placed on the node during the consult, want 1", n)
			}
			if err := c.Send(map[string]any{"type": tc.bye}); err != nil {
				t.Fatal(err)
			}
			for placed(t) != 0 {
				if ctx.Err() != nil {
					t.Fatalf("the room still counts as the node's load after the practitioner sent %q", tc.bye)
				}
				time.Sleep(50 * time.Millisecond)
			}
			a, err := store.AppointmentByID(ctx, db.Pool, appt)
			want := store.StatusConfirmed
			if tc.bye == "end" {
				want = store.StatusCompleted
			}
			if err != nil || a.Status != want {
				t.Fatalf("appointment %s %v, want %s", a.Status, err, want)
			}
		})
	}
}
