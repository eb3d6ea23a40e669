package notify

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5"

	"teleconsult/store"
	"teleconsult/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

var testKey = []byte("0123456789abcdef0123456789abcdef")

// clock is a settable clock shared by the code under test and the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// smtpOptions configures the test SMTP server.
type smtpOptions struct {
	tls       bool   // offer STARTTLS
	implicit  bool   // TLS from the first byte (smtps://)
	user      string // require AUTH PLAIN with user/pass
	pass      string
	failFirst int  // answer 451 to the first failFirst messages
	permanent bool // answer 550 to every message
}

// received is one message the test server accepted.
type received struct {
	From   string
	To     []string
	Data   []byte
	TLS    bool
	Authed bool
}

// smtpServer is a real SMTP server (go-smtp) on 127.0.0.1:0.
type smtpServer struct {
	opts     smtpOptions
	addr     string
	roots    *x509.CertPool
	mu       sync.Mutex
	msgs     []received
	attempts int
}

func startSMTP(t testing.TB, opts smtpOptions) *smtpServer {
	t.Helper()
	s := &smtpServer{opts: opts}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &smtpSession{srv: s, conn: c, tls: isTLS}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.ErrorLog = nopLogger{}
	if opts.tls || opts.implicit {
		cert, roots := selfSigned(t)
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		s.roots = roots
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	if opts.implicit {
		l = tls.NewListener(l, srv.TLSConfig)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

// url is the SMTP_URL for this server.
func (s *smtpServer) url() string {
	scheme := "smtp://"
	if s.opts.implicit {
		scheme = "smtps://"
	}
	if s.opts.user != "" {
		return scheme + s.opts.user + ":" + s.opts.pass + "@" + s.addr
	}
	return scheme + s.addr
}

func (s *smtpServer) tlsConfig() *tls.Config {
	if s.roots == nil {
		return nil
	}
	return &tls.Config{RootCAs: s.roots}
}

func (s *smtpServer) messages() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

type smtpSession struct {
	srv    *smtpServer
	conn   *smtp.Conn
	tls    bool
	authed bool
	from   string
	to     []string
}

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *smtpSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if s.srv.opts.user == "" || user != s.srv.opts.user || pass != s.srv.opts.pass {
			return errors.New("invalid credentials")
		}
		s.authed = true
		return nil
	}), nil
}

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.srv.opts.user != "" && !s.authed {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	s.srv.attempts++
	if s.srv.opts.permanent {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "mailbox " + s.to[0] + " unavailable"}
	}
	if s.srv.attempts <= s.srv.opts.failFirst {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.srv.msgs = append(s.srv.msgs, received{From: s.from, To: s.to, Data: b, TLS: isTLS, Authed: s.authed})
	return nil
}

func (s *smtpSession) Reset()        { s.from, s.to = "", nil }
func (s *smtpSession) Logout() error { return nil }

// selfSigned makes a certificate for 127.0.0.1 and the pool that trusts it.
func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test smtp"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// parsedMail is a received message taken apart.
type parsedMail struct {
	Header      mail.Header
	Subject     string
	ContentType string // top-level media type
	Text, HTML  string
	Attachments map[string]attachment
}

type attachment struct {
	ContentType string
	Data        []byte
}

func parseMail(t testing.TB, data []byte) parsedMail {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parse message: %v", err)
	}
	dec := new(mime.WordDecoder)
	subj, err := dec.DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatalf("subject: %v", err)
	}
	p := parsedMail{Header: msg.Header, Subject: subj, Attachments: map[string]attachment{}}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("content type: %v", err)
	}
	p.ContentType = mt
	var walk func(mt string, params map[string]string, r io.Reader)
	walk = func(mt string, params map[string]string, r io.Reader) {
		mr := multipart.NewReader(r, params["boundary"])
		for {
			part, err := mr.NextRawPart()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatalf("multipart: %v", err)
			}
			pmt, pparams, err := mime.ParseMediaType(part.Header.Get("Content-Type"))
			if err != nil {
				t.Fatalf("part content type: %v", err)
			}
			if strings.HasPrefix(pmt, "multipart/") {
				walk(pmt, pparams, part)
				continue
			}
			var body []byte
			switch part.Header.Get("Content-Transfer-Encoding") {
			case "quoted-printable":
				body, err = io.ReadAll(quotedprintable.NewReader(part))
			case "base64":
				raw, _ := io.ReadAll(part)
				body, err = decodeBase64(raw)
			default:
				body, err = io.ReadAll(part)
			}
			if err != nil {
				t.Fatalf("part body: %v", err)
			}
			if _, dp, err := mime.ParseMediaType(part.Header.Get("Content-Disposition")); err == nil && dp["filename"] != "" {
				p.Attachments[dp["filename"]] = attachment{ContentType: part.Header.Get("Content-Type"), Data: body}
				continue
			}
			switch pmt {
			case "text/plain":
				p.Text = strings.ReplaceAll(string(body), "\r\n", "\n")
			case "text/html":
				p.HTML = string(body)
			}
		}
	}
	if strings.HasPrefix(mt, "multipart/") {
		walk(mt, params, msg.Body)
	}
	return p
}

// fixture is a practitioner with a consultation type, and a patient.
type fixture struct {
	db             *store.DB
	practitioner   string
	consultType    string
	patient        string
	patientEmail   string
	practitionerEm string
}

type fixtureOptions struct {
	lang     string // patient language
	phone    string // patient phone
	mode     string // video or in_person
	timeZone string
}

var accountSeq struct {
	sync.Mutex
	n int
}

func newAccount(t testing.TB, db *store.DB, role, name, lang, phone string) (id, email string) {
	t.Helper()
	accountSeq.Lock()
	accountSeq.n++
	n := accountSeq.n
	accountSeq.Unlock()
	email = strings.ToLower(strings.ReplaceAll(name, " ", ".")) + "." + itoa(n) + "@example.org"
	err := db.Pool.QueryRow(context.Background(), `INSERT INTO accounts (email, name, role, password_hash, language, phone)
		VALUES ($1, $2, $3, 'x', $4, $5) RETURNING id::text`, email, name, role, lang, phone).Scan(&id)
	if err != nil {
		t.Fatalf("account: %v", err)
	}
	return id, email
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

func newFixture(t testing.TB, db *store.DB, o fixtureOptions) fixture {
	t.Helper()
	if o.lang == "" {
		o.lang = "fr"
	}
	if o.mode == "" {
		o.mode = "in_person"
	}
	if o.timeZone == "" {
		o.timeZone = "Europe/Paris"
	}
	ctx := context.Background()
	f := fixture{db: db}
	f.practitioner, f.practitionerEm = newAccount(t, db, "practitioner", "Martin", "fr", "")
	_, err := db.Pool.Exec(ctx, `INSERT INTO practitioners (account_id, specialty, rpps, address, city, postcode, time_zone)
		VALUES ($1, 'psychiatry', '12345678901', '1 rue de la Paix', 'Paris', '75002', $2)`, f.practitioner, o.timeZone)
	if err != nil {
		t.Fatalf("practitioner: %v", err)
	}
	err = db.Pool.QueryRow(ctx, `INSERT INTO consultation_types (practitioner_id, name, mode, duration_minutes)
		VALUES ($1, 'Suivi anxiété', $2, 30) RETURNING id::text`, f.practitioner, o.mode).Scan(&f.consultType)
	if err != nil {
		t.Fatalf("consultation type: %v", err)
	}
	f.patient, f.patientEmail = newAccount(t, db, "patient", "Alice Durand", o.lang, o.phone)
	return f
}

// book inserts a confirmed appointment starting at start, booked at
// bookedAt, and enqueues its confirmation in the same transaction.
func (f fixture) book(t testing.TB, start, bookedAt time.Time) string {
	t.Helper()
	var id, mode string
	err := f.db.Tx(context.Background(), func(tx pgxTx) error {
		if err := tx.QueryRow(context.Background(), `SELECT mode FROM consultation_types WHERE id = $1`, f.consultType).Scan(&mode); err != nil {
			return err
		}
		err := tx.QueryRow(context.Background(), `INSERT INTO appointments
			(practitioner_id, consultation_type_id, patient_id, mode, starts_at, ends_at, status, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, 'confirmed', $7, $7) RETURNING id::text`,
			f.practitioner, f.consultType, f.patient, mode, start, start.Add(30*time.Minute), bookedAt).Scan(&id)
		if err != nil {
			return err
		}
		return store.Enqueue(context.Background(), tx, store.OutboxEvent{
			Kind: store.EventAppointmentBooked, RecipientID: f.patient, AppointmentID: id})
	})
	if err != nil {
		t.Fatalf("book: %v", err)
	}
	return id
}

func (f fixture) status(t testing.TB, apptID string) string {
	t.Helper()
	var s string
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT status FROM appointments WHERE id = $1`, apptID).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// outbox returns the deliveries of kind (all kinds if ""), oldest first.
func outbox(t testing.TB, db *store.DB, kind string) []store.OutboxMessage {
	t.Helper()
	ms, err := store.ListOutbox(context.Background(), db.Pool, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.OutboxMessage
	for i := len(ms) - 1; i >= 0; i-- {
		if kind == "" || ms[i].Kind == kind {
			out = append(out, ms[i])
		}
	}
	return out
}

// drain delivers until nothing is due.
func drain(t testing.TB, w *Worker) int {
	t.Helper()
	total := 0
	for {
		n, err := w.DeliverDue(context.Background())
		if err != nil {
			t.Fatalf("deliver: %v", err)
		}
		total += n
		if n == 0 {
			return total
		}
	}
}

func newWorker(t testing.TB, db *store.DB, cfg Config, c *clock) *Worker {
	t.Helper()
	if cfg.BaseURL == "" {
		cfg.BaseURL = "https://rdv.example.org"
	}
	if cfg.TokenKey == nil {
		cfg.TokenKey = testKey
	}
	if cfg.MailFrom == "" {
		cfg.MailFrom = "Teleconsult <noreply@rdv.example.org>"
	}
	w, err := NewWorker(db, cfg, c.Now)
	if err != nil {
		t.Fatalf("NewWorker: %v", err)
	}
	return w
}

type pgxTx = pgx.Tx

func decodeBase64(raw []byte) ([]byte, error) {
	return base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(raw)), ""))
}
