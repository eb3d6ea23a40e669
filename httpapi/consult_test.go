package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"teleconsult/auth"
	"teleconsult/cluster"
	"teleconsult/consult"
	"teleconsult/live"
	"teleconsult/store"
)

// videoAppointment makes practitionerID a practitioner with a video
// consultation type and books patientID at start for 20 minutes.
func videoAppointment(t *testing.T, e *testEnv, practitionerID, patientID string, start time.Time, mode, status string) string {
	t.Helper()
	ctx := context.Background()
	_, err := e.DB.Pool.Exec(ctx, `INSERT INTO practitioners (account_id, specialty, rpps) VALUES ($1, 'general_practice', '10101010101') ON CONFLICT DO NOTHING`, practitionerID)
	if err != nil {
		t.Fatal(err)
	}
	var ct string
	if err := e.DB.Pool.QueryRow(ctx, `INSERT INTO consultation_types (practitioner_id, name, mode, duration_minutes) VALUES ($1, 'Consultation', $2, 20) RETURNING id::text`, practitionerID, mode).Scan(&ct); err != nil {
		t.Fatal(err)
	}
	var id string
	if err := e.DB.Pool.QueryRow(ctx, `INSERT INTO appointments (practitioner_id, consultation_type_id, patient_id, mode, starts_at, ends_at, status)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id::text`, practitionerID, ct, patientID, mode, start, start.Add(20*time.Minute), status).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func consultEnv(t *testing.T, now *time.Time) *testEnv {
	e := newEnv(t)
	e.API.Consult = &consult.Service{
		DB: e.DB, Vault: e.API.Vault, Signer: auth.NewJoinSigner(bytes.Repeat([]byte{7}, 32)),
		SignalingURL: "ws://127.0.0.1/api/v1/signal", Now: func() time.Time { return *now },
	}
	return e.start()
}

func TestJoinRules(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	e := consultEnv(t, &now)
	patient, pat := e.user("patient", "Paula")
	doctor, doc := e.user("practitioner", "Dr Dee")
	other, _ := e.user("patient", "Oscar")
	otherDoc, _ := e.user("practitioner", "Dr Other")
	start := now.Add(10 * time.Minute)
	id := videoAppointment(t, e, doc.ID, pat.ID, start, "video", "confirmed")

	var info consult.JoinInfo
	if st := patient.json("POST", "/api/v1/appointments/"+id+"/join", nil, &info); st != 200 {
		t.Fatalf("patient join: %d", st)
	}
	claims, err := e.API.Consult.Signer.Verify(info.Token, now)
	if err != nil || claims.Room != id || claims.Participant != pat.ID || claims.Role != "patient" {
		t.Fatalf("token claims %+v %v", claims, err)
	}
	if info.SignalingURL == "" || info.ICEServers == nil || !claims.Expires.After(now) || claims.Expires.After(now.Add(11*time.Minute)) {
		t.Errorf("join info %+v", info)
	}
	if st := doctor.json("POST", "/api/v1/appointments/"+id+"/join", nil, &info); st != 200 || info.Role != "practitioner" {
		t.Fatalf("practitioner join: %d %+v", st, info)
	}
	// Anyone else: exactly like a missing appointment.
	_, missingBody := other.do("POST", "/api/v1/appointments/00000000-0000-4000-8000-000000000000/join", nil)
	for _, c := range []*client{other, otherDoc} {
		resp, b := c.do("POST", "/api/v1/appointments/"+id+"/join", nil)
		if resp.StatusCode != 404 || errorCode(b) != errorCode(missingBody) || strings.Contains(string(b), id) {
			t.Errorf("stranger join: %d %s", resp.StatusCode, b)
		}
	}
	if st := e.client().json("POST", "/api/v1/appointments/"+id+"/join", nil, nil); st != 401 {
		t.Errorf("anonymous join: %d", st)
	}
	if st := patient.json("POST", "/api/v1/appointments/not-an-id/join", nil, nil); st != 404 {
		t.Errorf("malformed id: %d", st)
	}

	// Too early and too late: 409 saying when.
	early := videoAppointment(t, e, doc.ID, pat.ID, now.Add(2*time.Hour), "video", "confirmed")
	resp, b := patient.do("POST", "/api/v1/appointments/"+early+"/join", nil)
	if resp.StatusCode != 409 || !strings.Contains(string(b), now.Add(2*time.Hour-15*time.Minute).UTC().Format(time.RFC3339)) {
		t.Errorf("too early: %d %s", resp.StatusCode, b)
	}
	late := videoAppointment(t, e, doc.ID, pat.ID, now.Add(-3*time.Hour), "video", "confirmed")
	if resp, b := patient.do("POST", "/api/v1/appointments/"+late+"/join", nil); resp.StatusCode != 409 || errorCode(b) != "room_closed" {
		t.Errorf("too late: %d %s", resp.StatusCode, b)
	}
	inPerson := videoAppointment(t, e, doc.ID, pat.ID, now.Add(5*time.Hour), "in_person", "confirmed")
	if resp, b := patient.do("POST", "/api/v1/appointments/"+inPerson+"/join", nil); resp.StatusCode != 409 || errorCode(b) != "not_video" {
		t.Errorf("in person: %d %s", resp.StatusCode, b)
	}
	cancelled := videoAppointment(t, e, doc.ID, pat.ID, now.Add(-2*time.Minute).Add(-6*time.Hour), "video", "cancelled")
	if st := patient.json("POST", "/api/v1/appointments/"+cancelled+"/join", nil, nil); st != 409 {
		t.Errorf("cancelled: %d", st)
	}
	// The refused attempts are audited.
	var denied int
	e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE outcome = 'denied' AND object_id = $1`, id).Scan(&denied)
	if denied != 2 {
		t.Errorf("%d denied joins audited, want 2", denied)
	}
}

func TestConsultHooks(t *testing.T) {
	now := time.Now()
	e := consultEnv(t, &now)
	hub := live.NewHub(e.DB)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go hub.Run(ctx)
	<-hub.Ready()
	patient, pat := e.user("patient", "Paula")
	doctor, doc := e.user("practitioner", "Dr Dee")
	stranger, _ := e.user("patient", "Sid")
	id := videoAppointment(t, e, doc.ID, pat.ID, now.Add(5*time.Minute), "video", "confirmed")
	events, stop := hub.Subscribe(doc.ID)
	defer stop()

	svc := e.API.Consult
	pc := auth.JoinClaims{Room: id, Participant: pat.ID, Name: pat.Name, Role: "patient"}
	dc := auth.JoinClaims{Room: id, Participant: doc.ID, Name: doc.Name, Role: "practitioner"}
	svc.Waiting(id, pc)
	select {
	case ev := <-events:
		if ev.Kind != "patient.waiting" || ev.Data["appointment_id"] != id {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the practitioner was not told the patient is waiting")
	}
	waitStatus := func(want string) {
		t.Helper()
		for i := 0; i < 50; i++ {
			a, _ := store.AppointmentByID(context.Background(), e.DB.Pool, id)
			if a.Status == want {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("appointment never became %s", want)
	}
	waitStatus("arrived")

	svc.Chat(id, pc, "J'ai de la fièvre depuis hier")
	now = now.Add(time.Second)
	svc.Chat(id, dc, "Prenez votre température ce soir")
	var chat struct {
		Messages []consult.ChatLine `json:"messages"`
	}
	for i := 0; i < 50 && len(chat.Messages) < 2; i++ {
		time.Sleep(100 * time.Millisecond)
		patient.json("GET", "/api/v1/appointments/"+id+"/chat", nil, &chat)
	}
	if len(chat.Messages) != 2 || chat.Messages[0].Text != "J'ai de la fièvre depuis hier" || chat.Messages[1].Role != "practitioner" {
		t.Fatalf("chat: %+v", chat)
	}
	if st := doctor.json("GET", "/api/v1/appointments/"+id+"/chat", nil, nil); st != 200 {
		t.Errorf("practitioner chat: %d", st)
	}
	if st := stranger.json("GET", "/api/v1/appointments/"+id+"/chat", nil, nil); st != 404 {
		t.Errorf("stranger chat: %d", st)
	}
	// Sealed at rest.
	var n int
	e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM consult_messages WHERE position($1::bytea in body) > 0`, []byte("fièvre")).Scan(&n)
	var total int
	e.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM consult_messages WHERE position($1::bytea in convert_to(sender_name, 'UTF8')) > 0`, []byte("Dee")).Scan(&total)
	if total != 1 {
		t.Fatalf("the search for plaintext finds nothing at all (%d)", total)
	}
	if n != 0 {
		t.Error("chat stored in the clear")
	}

	svc.Ended(id, dc)
	waitStatus("completed")
	if st := patient.json("POST", "/api/v1/appointments/"+id+"/join", nil, nil); st != 409 {
		t.Errorf("join after the end: %d", st)
	}
}

func TestPatientSeesWhoAccessedTheirData(t *testing.T) {
	now := time.Now()
	e := consultEnv(t, &now)
	patient, pat := e.user("patient", "Paula")
	doctor, doc := e.user("practitioner", "Dr Dee")
	stranger, _ := e.user("patient", "Sid")
	id := videoAppointment(t, e, doc.ID, pat.ID, now.Add(5*time.Minute), "video", "confirmed")
	doctor.json("GET", "/api/v1/appointments/"+id+"/chat", nil, nil)
	stranger.json("GET", "/api/v1/appointments/"+id+"/chat", nil, nil)
	var log struct {
		Accesses []struct {
			Who, Role, Action, ObjectType, Outcome string
		} `json:"accesses"`
	}
	if st := patient.json("GET", "/api/v1/account/access-log", nil, &log); st != 200 {
		t.Fatalf("access log: %d", st)
	}
	var sawDoctor, sawDenied bool
	for _, a := range log.Accesses {
		sawDoctor = sawDoctor || (a.Who == "Dr Dee" && a.Outcome == "ok")
		sawDenied = sawDenied || (a.Who == "Sid" && a.Outcome == "denied")
	}
	if !sawDoctor || !sawDenied {
		t.Errorf("access log %+v", log)
	}
	var other struct {
		Accesses []any `json:"accesses"`
	}
	stranger.json("GET", "/api/v1/account/access-log", nil, &other)
	if len(other.Accesses) != 0 {
		t.Errorf("a stranger sees accesses to others' data: %+v", other)
	}
}

// registryPlacer places rooms with the cluster registry.
type registryPlacer struct{ r *cluster.Registry }

func (p registryPlacer) Place(ctx context.Context, room string) (consult.Placement, error) {
	pl, err := p.r.Place(ctx, room)
	return consult.Placement{Node: pl.Node, SignalingURL: pl.SignalingURL}, err
}

func (p registryPlacer) Finished(ctx context.Context, room string) error {
	return p.r.Finished(ctx, room)
}

// TestJoinPlacesRoomOnALiveNode: with several nodes, both participants
// get the same node's signalling URL; when that node dies, joining again
// gives a live node, and the admitted patient's token says so.
func TestJoinPlacesRoomOnALiveNode(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	e := consultEnv(t, &now)
	ctx := context.Background()
	var nodes []*cluster.Registry
	for _, id := range []string{"a", "b"} {
		// A long heartbeat: the nodes are not refreshed during the test,
		// which must not see them gone on a slow machine.
		r := cluster.New(e.DB, cluster.Config{ID: id, SignalingURL: "ws://node-" + id + "/api/v1/signal", MediaAddress: "node-" + id,
			Heartbeat: time.Minute})
		if err := r.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, r)
	}
	e.API.Consult.Placer = registryPlacer{nodes[0]}
	patient, pat := e.user("patient", "Paula")
	doctor, doc := e.user("practitioner", "Dr Dee")
	id := videoAppointment(t, e, doc.ID, pat.ID, now.Add(5*time.Minute), "video", "confirmed")
	join := func(c *client) (consult.JoinInfo, auth.JoinClaims) {
		t.Helper()
		var info consult.JoinInfo
		if resp, b := c.do("POST", "/api/v1/appointments/"+id+"/join", nil); resp.StatusCode != 200 {
			t.Fatalf("join: %d %s", resp.StatusCode, b)
		} else if err := json.Unmarshal(b, &info); err != nil {
			t.Fatal(err)
		}
		claims, err := e.API.Consult.Signer.Verify(info.Token, now)
		if err != nil {
			t.Fatal(err)
		}
		return info, claims
	}
	pi, pc := join(patient)
	di, _ := join(doctor)
	if pi.Node == "" || pi.Node != di.Node || pi.SignalingURL != "ws://node-"+pi.Node+"/api/v1/signal" || di.SignalingURL != pi.SignalingURL {
		t.Fatalf("patient on %s (%s), practitioner on %s (%s)", pi.Node, pi.SignalingURL, di.Node, di.SignalingURL)
	}
	if pc.Admitted {
		t.Fatal("a patient never admitted got an admitted token")
	}
	e.API.Consult.Admitted(id, pc) // the signalling server's hook
	deadline := time.Now().Add(5 * time.Second)
	for ok := false; !ok; {
		var err error
		if ok, err = store.RoomWasAdmitted(ctx, e.DB.Pool, id); err != nil || time.Now().After(deadline) {
			t.Fatalf("admission not recorded: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The room's node dies: the next joins go to the live one, and the
	// patient skips the waiting room there.
	if _, err := e.DB.Pool.Exec(ctx, `UPDATE nodes SET heartbeat_at = now() - interval '1 hour' WHERE id = $1`, pi.Node); err != nil {
		t.Fatal(err)
	}
	pi2, pc2 := join(patient)
	di2, dc2 := join(doctor)
	if pi2.Node == pi.Node || pi2.Node != di2.Node {
		t.Fatalf("after %s died: patient on %s, practitioner on %s", pi.Node, pi2.Node, di2.Node)
	}
	if !pc2.Admitted || dc2.Admitted {
		t.Fatalf("admitted claims: patient %v, practitioner %v", pc2.Admitted, dc2.Admitted)
	}
	// No live node: 503, saying so.
	if _, err := e.DB.Pool.Exec(ctx, `UPDATE nodes SET heartbeat_at = now() - interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	if resp, b := patient.do("POST", "/api/v1/appointments/"+id+"/join", nil); resp.StatusCode != 503 || errorCode(b) != "no_node" {
		t.Fatalf("no live node: %d %s", resp.StatusCode, b)
	}
}
