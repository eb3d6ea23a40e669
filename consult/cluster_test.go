package consult_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"teleconsult/auth"
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
	var doc, pat, ct, appt string
	q := func(sql string, dst *string, args ...any) {
		t.Helper()
		if err := db.Pool.QueryRow(ctx, sql, args...).Scan(dst); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	q(`INSERT INTO accounts (email, name, role, password_hash, language) VALUES ('doc@example.org', 'Dr Martin', 'practitioner', 'x', 'fr') RETURNING id::text`, &doc)
	q(`INSERT INTO accounts (email, name, role, password_hash, language) VALUES ('pat@example.org', 'Alice', 'patient', 'x', 'fr') RETURNING id::text`, &pat)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO practitioners (account_id, specialty, rpps) VALUES ($1, 'general_practice', '10101010101')`, doc); err != nil {
		t.Fatal(err)
	}
	q(`INSERT INTO consultation_types (practitioner_id, name, mode, duration_minutes) VALUES ($1, 'Suivi', 'video', 30) RETURNING id::text`, &ct, doc)
	start := time.Now().Add(5 * time.Minute)
	q(`INSERT INTO appointments (practitioner_id, consultation_type_id, patient_id, mode, starts_at, ends_at, status)
		VALUES ($1, $2, $3, 'video', $4, $5, 'confirmed') RETURNING id::text`, &appt, doc, ct, pat, start, start.Add(30*time.Minute))

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
