package cluster_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5"

	"teleconsult/auth"
	"teleconsult/cluster"
	"teleconsult/loadtest"
	"teleconsult/server"
	"teleconsult/store"
	"teleconsult/store/storetest"
)

// TestThreeNodesDrainAndSurviveAKill starts three `teleconsult serve`
// processes on 127.0.0.1-3 against one database and places consults with
// Pion clients (they spread over the nodes). It drains one node with
// `teleconsult node drain`: its consults stay and keep their media, new
// consults go elsewhere, `node drain --wait` returns once its consults
// ended, and `node undrain` makes it take rooms again. Then it SIGKILLs
// another node and checks that every consult it held resumes on a live
// node, media flowing both ways, within 10 seconds.
func TestThreeNodesDrainAndSurviveAKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three server processes")
	}
	// consults run from the start; late ones start once a node drains;
	// one more room is placed after the undrain.
	const consults, late = 20, 4
	dir := t.TempDir()
	bin := filepath.Join(dir, "teleconsult")
	build := exec.Command("go", "build", "-o", bin, "teleconsult/cmd/teleconsult")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dbURL := storetest.NewURL(t)
	db, err := store.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rooms := appointments(t, db, consults+late+1)
	// Reminders falling due: five appointments a day ahead, booked two
	// days ago, whose day-before email every node's worker finds at start.
	const reminders = 5
	for i := range reminders {
		if _, err := db.Pool.Exec(context.Background(), `INSERT INTO appointments
			(practitioner_id, consultation_type_id, patient_id, mode, starts_at, ends_at, status, created_at, updated_at)
			SELECT practitioner_id, consultation_type_id, patient_id, 'video', date_trunc('second', now()) + interval '23 hours 59 minutes' - $1 * interval '40 minutes',
				date_trunc('second', now()) + interval '24 hours 29 minutes' - $1 * interval '40 minutes', 'confirmed', now() - interval '2 days', now() - interval '2 days'
			FROM appointments WHERE id = $2`, i, rooms[0]); err != nil {
			t.Fatal(err)
		}
	}
	mail := startSMTP(t)
	secret := make([]byte, 32)
	rand.Read(secret)
	mk := make([]byte, 32)
	rand.Read(mk)

	type proc struct {
		id, url string
		cmd     *exec.Cmd
	}
	var nodes []*proc
	for i := 1; i <= 3; i++ {
		host := fmt.Sprintf("127.0.0.%d", i)
		l, err := net.Listen("tcp", host+":0")
		if err != nil {
			t.Skipf("loopback address %s: %v", host, err)
		}
		addr := l.Addr().String()
		l.Close()
		p := &proc{id: fmt.Sprintf("node%d", i), url: "http://" + addr}
		p.cmd = exec.Command(bin, "serve")
		p.cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "ADDR="+addr, "BASE_URL="+p.url, "NODE_ID="+p.id,
			"NODE_HEARTBEAT=1s", "SECRET_KEY="+hex.EncodeToString(secret), "MASTER_KEY=k1:"+base64.StdEncoding.EncodeToString(mk),
			"MFA_REQUIRED_ROLES=none", "SMTP_URL=smtp://"+mail.addr, "MAIL_FROM=noreply@example.org", "DATA_DIR="+filepath.Join(dir, p.id), "LOG_LEVEL=warn")
		p.cmd.Stderr = os.Stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() })
		nodes = append(nodes, p)
	}
	reg := cluster.New(db, cluster.Config{ID: "test-observer", Heartbeat: time.Second})
	deadline := time.Now().Add(60 * time.Second)
	for {
		ns, err := store.Nodes(context.Background(), db.Pool, 3*time.Second)
		live := 0
		for _, n := range ns {
			if n.Alive {
				live++
			}
		}
		if err == nil && live == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes did not register: %+v %v", ns, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	signer := server.JoinSigner(secret)
	// place asks for the room's node the way the join API does, and signs
	// the participant's token (the patient's says whether they were admitted).
	place := func(ctx context.Context, room, who, role string) (string, string, error) {
		p, err := reg.Place(ctx, room)
		if err != nil {
			return "", "", err
		}
		admitted := false
		if role == auth.RolePatient {
			if admitted, err = store.RoomWasAdmitted(ctx, db.Pool, room); err != nil {
				return "", "", err
			}
		}
		tok, err := signer.Sign(auth.JoinClaims{Room: room, Participant: who, Name: who, Role: role, Expires: time.Now().Add(10 * time.Minute), Admitted: admitted})
		return p.SignalingURL, tok, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	type call struct {
		room      string
		doc, pat  *loadtest.Client
		node      string
		docID, pt string
	}
	var closers []*loadtest.Client
	t.Cleanup(func() {
		for _, cl := range closers {
			cl.Close()
		}
	})
	// start begins the consults of rooms: both participants join through
	// the placement, publish, and the practitioner admits the patient.
	start := func(rooms []string) []*call {
		calls := make([]*call, len(rooms))
		var wg sync.WaitGroup
		var mu sync.Mutex
		errs := make(chan error, len(rooms))
		for i := range calls {
			c := &call{room: rooms[i], docID: "doc-" + rooms[i], pt: "pat-" + rooms[i]}
			calls[i] = c
			wg.Add(1)
			go func() {
				defer wg.Done()
				dial := func(who, role string) (*loadtest.Client, error) {
					url, tok, err := place(ctx, c.room, who, role)
					if err != nil {
						return nil, err
					}
					cl, err := loadtest.Dial(ctx, loadtest.ClientConfig{SignalURL: url, Token: tok, VideoBitrate: 100_000, Audio: true,
						Rejoin: func(ctx context.Context) (string, string, error) { return place(ctx, c.room, who, role) }})
					if err != nil {
						return nil, err
					}
					mu.Lock()
					closers = append(closers, cl)
					mu.Unlock()
					return cl, cl.Publish()
				}
				var err error
				if c.doc, err = dial(c.docID, auth.RolePractitioner); err != nil {
					errs <- err
					return
				}
				if c.pat, err = dial(c.pt, auth.RolePatient); err != nil {
					errs <- err
					return
				}
				if _, err = c.doc.Wait(ctx, "waiting"); err == nil {
					err = c.doc.Send(map[string]any{"type": "admit", "participant": c.pt})
				}
				if err != nil {
					errs <- err
				}
			}()
			time.Sleep(20 * time.Millisecond)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		return calls
	}
	calls := start(rooms[:consults])
	// video counts what cl received from participant, over every stream
	// (a rejoin brings new ones).
	video := func(cl *loadtest.Client, from string) uint64 {
		var n uint64
		for _, s := range cl.Received() {
			if s.Participant == from && s.Kind == "video" {
				n += s.Packets
			}
		}
		return n
	}
	flowing := func(c *call, since [2]uint64) bool {
		return video(c.doc, c.pt) > since[0]+5 && video(c.pat, c.docID) > since[1]+5
	}
	// settle finds where each consult lives and waits for its media and
	// the record of its admission (the hook is async).
	settle := func(calls []*call) map[string]int {
		perNode := map[string]int{}
		for _, c := range calls {
			var p cluster.Placement
			if p, err = reg.Place(ctx, c.room); err != nil {
				t.Fatal(err)
			}
			c.node = p.Node
			perNode[p.Node]++
			for !flowing(c, [2]uint64{}) {
				if ctx.Err() != nil {
					t.Fatalf("consult %s on %s: no media", c.room, c.node)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		for _, c := range calls {
			for ok := false; !ok; time.Sleep(20 * time.Millisecond) {
				if ok, err = store.RoomWasAdmitted(ctx, db.Pool, c.room); err != nil || ctx.Err() != nil {
					t.Fatalf("admission of %s not recorded: %v", c.room, err)
				}
			}
		}
		return perNode
	}
	perNode := settle(calls)
	t.Logf("consults per node: %v", perNode)
	for _, n := range nodes {
		if perNode[n.id] == 0 {
			t.Fatalf("no consult on %s: %v", n.id, perNode)
		}
	}

	// Drain the node with the fewest consults, the one new rooms would
	// go to first (the first node is kept for the kill).
	drained := nodes[1]
	if perNode[nodes[2].id] < perNode[drained.id] {
		drained = nodes[2]
	}
	nodeCmd := func(args ...string) *exec.Cmd {
		cmd := exec.Command(bin, append([]string{"node"}, args...)...)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "DATA_DIR="+filepath.Join(dir, "operator"), "NODE_HEARTBEAT=1s", "LOG_LEVEL=warn")
		return cmd
	}
	runNode := func(args ...string) string {
		t.Helper()
		out, err := nodeCmd(args...).CombinedOutput()
		if err != nil {
			t.Fatalf("teleconsult node %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := runNode("drain", "--node", drained.id); !strings.Contains(out, "drained") {
		t.Fatalf("drain: %q", out)
	}
	var held, running []*call
	since := map[*call][2]uint64{}
	for _, c := range calls {
		if c.node == drained.id {
			held = append(held, c)
			since[c] = [2]uint64{video(c.doc, c.pt), video(c.pat, c.docID)}
		} else {
			running = append(running, c)
		}
	}
	lateCalls := start(rooms[consults : consults+late])
	for n, k := range settle(lateCalls) {
		if n == drained.id {
			t.Fatalf("%d consults placed on %s after its drain", k, n)
		}
	}
	running = append(running, lateCalls...)
	// The drained node's consults stay there, media flowing, no client
	// having had to reconnect.
	for _, c := range held {
		for !flowing(c, since[c]) {
			if ctx.Err() != nil {
				t.Fatalf("consult %s on the drained node: media stopped", c.room)
			}
			time.Sleep(20 * time.Millisecond)
		}
		p, err := reg.Place(ctx, c.room)
		if err != nil || p.Node != drained.id {
			t.Fatalf("consult %s moved from the drained node to %s (%v)", c.room, p.Node, err)
		}
		if f := append(c.doc.Failovers(), c.pat.Failovers()...); len(f) != 0 {
			t.Fatalf("consult %s on the drained node reconnected: %+v", c.room, f)
		}
	}
	// drain --wait waits while the node has rooms, and returns once its
	// consults ended.
	wait := nodeCmd("drain", "--node", drained.id, "--wait")
	var waitOut strings.Builder
	wait.Stdout, wait.Stderr = &waitOut, &waitOut
	if err := wait.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- wait.Wait() }()
	t.Cleanup(func() { _ = wait.Process.Kill() })
	select {
	case err := <-waited:
		t.Fatalf("drain --wait returned while %d consults ran on the node: %v\n%s", len(held), err, waitOut.String())
	case <-time.After(2500 * time.Millisecond): // two heartbeats of the node and of the wait
	}
	for _, c := range held {
		if err := c.doc.Send(map[string]any{"type": "end"}); err != nil {
			t.Fatal(err)
		}
	}
	ended := time.Now()
	select {
	case err := <-waited:
		if err != nil || !strings.Contains(waitOut.String(), "no room left") {
			t.Fatalf("drain --wait: %v\n%s", err, waitOut.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("drain --wait still waiting 20 s after the node's %d consults ended", len(held))
	}
	drainedAfter := time.Since(ended)
	runNode("undrain", "--node", drained.id)
	if p, err := reg.Place(ctx, rooms[consults+late]); err != nil || p.Node != drained.id {
		t.Fatalf("a room after the undrain went to %s, not to the empty node %s (%v)", p.Node, drained.id, err)
	}
	t.Logf("drained %s: its %d consults stayed, %d late consults went elsewhere, drain --wait returned %v after they ended",
		drained.id, len(held), late, drainedAfter.Round(10*time.Millisecond))
	calls = running

	victim := nodes[0]
	var affected []*call
	for _, c := range calls {
		if c.node == victim.id {
			affected = append(affected, c)
		}
		since[c] = [2]uint64{video(c.doc, c.pt), video(c.pat, c.docID)}
	}
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var worst time.Duration
	for _, c := range affected {
		for !flowing(c, since[c]) {
			if time.Since(killed) > 10*time.Second {
				t.Fatalf("consult %s did not resume within 10 s of the kill: doc got %d (before %d), pat got %d (before %d)",
					c.room, video(c.doc, c.pt), since[c][0], video(c.pat, c.docID), since[c][1])
			}
			time.Sleep(20 * time.Millisecond)
		}
		worst = max(worst, time.Since(killed))
		p, err := reg.Place(ctx, c.room)
		if err != nil || p.Node == victim.id {
			t.Fatalf("consult %s still placed on %s (%v)", c.room, p.Node, err)
		}
	}
	// Every reminder due was sent once: as many emails as reminders, and
	// no more after a while (a second node sending one would show here).
	waitUntil := time.Now().Add(20 * time.Second)
	for mail.count() < reminders && time.Now().Before(waitUntil) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // two more poll intervals of every node
	if n := mail.count(); n != reminders {
		var claimed int
		_ = db.Pool.QueryRow(ctx, `SELECT count(*) FROM appointment_reminders WHERE kind = '1d'`).Scan(&claimed)
		rows, _ := db.Pool.Query(ctx, `SELECT channel || ' ' || status || ' ' || last_error FROM outbox_messages`)
		outbox, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		t.Fatalf("%d reminder emails delivered, want exactly %d (%d day-before reminders claimed; outbox: %q)", n, reminders, claimed, outbox)
	}
	t.Logf("%d consults moved off the killed node; the last had media both ways %v after the kill (%d CPUs)", len(affected), worst.Round(10*time.Millisecond), runtime.NumCPU())
}

// smtpSink is an SMTP server on loopback counting the messages it accepts.
type smtpSink struct {
	addr string
	mu   sync.Mutex
	n    int
}

func (s *smtpSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

type sinkSession struct{ s *smtpSink }

func (sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (x sinkSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	x.s.mu.Lock()
	x.s.n++
	x.s.mu.Unlock()
	return nil
}
func (sinkSession) Reset()        {}
func (sinkSession) Logout() error { return nil }

func startSMTP(t *testing.T) *smtpSink {
	t.Helper()
	s := &smtpSink{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return sinkSession{s}, nil }))
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}
