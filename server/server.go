// Package server assembles the whole service from its parts: the store,
// the vault, the domain services, the JSON API, the web pages and the
// video signalling, with the background jobs. cmd/teleconsult runs it;
// the end-to-end tests start it on a fresh database.
package server

import (
	"cmp"
	"context"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"teleconsult/audit"
	"teleconsult/auth"
	"teleconsult/booking"
	"teleconsult/cluster"
	"teleconsult/consult"
	"teleconsult/httpapi"
	"teleconsult/live"
	"teleconsult/notify"
	"teleconsult/payments"
	"teleconsult/privacy"
	"teleconsult/relay"
	"teleconsult/rx"
	"teleconsult/sfu"
	"teleconsult/signaling"
	"teleconsult/store"
	"teleconsult/vault"
	"teleconsult/web"
)

// Config is what the service is told from outside.
type Config struct {
	DatabaseURL   string
	BaseURL       string // public URL, without a trailing slash
	MasterKey     string // keyring text; else MasterKeyFile
	MasterKeyFile string
	Secret        []byte // signs join tokens and one-click links
	TrustProxy    bool
	MetricsToken  string // the bearer token GET /metrics asks for; empty: none
	// MFARoles must use two-factor login; nil means auth.DefaultMFARoles.
	MFARoles map[string]bool
	// Notify configures email and SMS (SMTP_URL, MAIL_FROM, SMS_*);
	// BaseURL and TokenKey are filled in here.
	Notify notify.Config
	// Payments configures Stripe (STRIPE_*); without a secret key an
	// in-process test mode stands in for Stripe, delivering its webhooks
	// to Payments.TestWebhookURL (default: BaseURL's webhook endpoint).
	Payments payments.Config
	// CACertFile and CAKeyFile import the prescription-signing certificate
	// authority (PEM); when empty, the deployment's own CA is created at
	// first start and kept in the database (its key sealed).
	CACertFile, CAKeyFile string
	// LegalHoldPublicKey (PEM, LEGAL_HOLD_PUBLIC_KEY) seals what the law
	// keeps of an erased account; when empty, a demo pair is made beside
	// MasterKeyFile (see package privacy).
	LegalHoldPublicKey string
	// Media configures the SFU (public IPs, UDP ports, loopback).
	Media sfu.Config
	// TURN, when TURN.ListenUDP or TURN.ListenTCP is set, runs the
	// embedded relay; its Secret is derived from Secret when empty.
	TURN relay.Config
	// Node, when Node.ID is set, makes this process one node of a cluster
	// sharing the database: it registers itself and rooms are placed on
	// the least loaded live node (package cluster).
	Node NodeConfig
	Log  *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NodeConfig is this node's place in a cluster (NODE_ID, NODE_URL,
// NODE_HEARTBEAT).
type NodeConfig struct {
	ID           string
	URL          string // this node's public URL; its signalling is ws(s)://<host>/api/v1/signal
	MediaAddress string // MEDIA_PUBLIC_IP, else the host of URL
	Heartbeat    time.Duration
}

// Server is the assembled service.
type Server struct {
	cfg      Config
	DB       *store.DB
	Vault    *vault.Vault
	Auth     *auth.Service
	API      *httpapi.API
	Registry *prometheus.Registry
	Live     *live.Hub
	Media    *sfu.SFU
	Signal   *signaling.Server
	Relay    *relay.Server
	Consult  *consult.Service
	Booking  *booking.Service
	Notifier *notify.Worker
	Payments *payments.Service
	Rx       *rx.Service
	Cluster  *cluster.Registry // nil outside a cluster

	mediaHost string // this node's media address in the node registry
	handler   http.Handler
	jobs      sync.WaitGroup
	stop      context.CancelFunc
}

// New connects to the database, migrates it and builds every service.
// Call Start to run the background jobs and Close when done.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Secret) < 32 {
		return nil, errors.New("server: the secret must be at least 32 bytes")
	}
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	s := &Server{cfg: cfg, DB: db}
	if err := s.build(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) build(ctx context.Context) (err error) {
	cfg := s.cfg
	v, err := OpenVault(ctx, cfg, s.DB)
	if err != nil {
		return err
	}
	s.Vault = v
	s.Registry = prometheus.NewRegistry()
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.Auth = auth.NewService(s.DB, auth.DefaultConfig, cfg.Now)
	roles := cfg.MFARoles
	if roles == nil {
		roles = auth.DefaultMFARoles
	}
	s.Auth.SetMFA(auth.MFAConfig{Vault: v, Required: roles})
	s.Live = live.NewHub(s.DB)
	s.API = &httpapi.API{
		DB: s.DB, Vault: v, Auth: s.Auth, Log: cfg.Log,
		BaseURL: cfg.BaseURL, TrustProxy: cfg.TrustProxy, Registry: s.Registry, MetricsToken: cfg.MetricsToken,
		Live: s.Live,
	}
	pcfg := cfg.Payments
	pcfg.BaseURL = cfg.BaseURL
	if pcfg.SecretKey == "" && pcfg.TestWebhookURL == "" {
		pcfg.TestWebhookURL = cfg.BaseURL + "/api/v1/payments/stripe/webhook"
	}
	if s.Payments, err = payments.New(s.DB, pcfg, cfg.Log); err != nil {
		return err
	}
	if err := s.Payments.RegisterMetrics(s.Registry); err != nil {
		return err
	}
	s.Booking = booking.New(s.DB, v, booking.Config{Now: cfg.Now, BaseURL: cfg.BaseURL,
		Checkout: s.Payments, PaymentRelease: s.Payments, RescheduleCheck: s.Payments})
	s.Payments.SetSlotReleaser(s.Booking)
	s.API.Booking = s.Booking
	s.API.Payments = s.Payments
	ca, err := rx.LoadOrCreateAuthority(ctx, s.DB, v, cfg.CACertFile, cfg.CAKeyFile)
	if err != nil {
		return fmt.Errorf("server: prescription authority: %w", err)
	}
	s.Rx = rx.NewService(s.DB, v, ca, cfg.Now)
	s.API.Rx = s.Rx
	var hold *ecdh.PublicKey // none: erasure answers 503
	if cfg.LegalHoldPublicKey != "" || cfg.MasterKeyFile != "" {
		if hold, err = privacy.LegalHoldKey(cfg.LegalHoldPublicKey, filepath.Dir(cfg.MasterKeyFile)); err != nil {
			return fmt.Errorf("server: legal-hold key: %w", err)
		}
	}
	s.API.Privacy = privacy.New(s.DB, v, privacy.Config{Booking: s.Booking, Receipts: s.Payments, LegalHold: hold, Now: cfg.Now})
	if err := s.buildVideo(ctx); err != nil {
		return err
	}
	ncfg := cfg.Notify
	ncfg.BaseURL = cfg.BaseURL
	ncfg.TokenKey = subkey(cfg.Secret, "action-link")
	if s.Notifier, err = notify.NewWorker(s.DB, ncfg, cfg.Now); err != nil {
		return err
	}
	s.Registry.MustRegister(s.Notifier)
	pages := notify.NewActionPages(s.DB, ncfg, cfg.Now)
	pages.Booking = s.Booking
	pages.Slots = notify.SlotFinderFunc(s.nextSlots)

	wcfg := web.Config{BaseURL: cfg.BaseURL, Log: cfg.Log}
	if s.Cluster != nil {
		wcfg.SignalOrigins = s.Cluster.SignalOrigins
	}
	site, err := web.New(wcfg)
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	s.API.Routes(mux)
	pages.Routes(mux)
	site.Routes(mux)
	mux.Handle("GET /api/v1/signal", s.Signal)
	s.handler = s.API.Handler(mux)
	return nil
}

// buildVideo starts the SFU, the TURN relay (when configured) and the
// signalling server, with consult as its hooks.
func (s *Server) buildVideo(ctx context.Context) error {
	cfg := s.cfg
	media, err := sfu.New(cfg.Media)
	if err != nil {
		return fmt.Errorf("server: media: %w", err)
	}
	s.Media = media
	s.Registry.MustRegister(signaling.NewCollector(media))
	signer := JoinSigner(cfg.Secret)
	s.Consult = &consult.Service{
		DB: s.DB, Vault: s.Vault, Signer: signer, Now: cfg.Now, Log: cfg.Log, Completer: s.Payments,
		SignalingURL: wsURL(cfg.BaseURL) + "/api/v1/signal",
	}
	if cfg.TURN.ListenUDP != "" || cfg.TURN.ListenTCP != "" {
		tc := cfg.TURN
		if tc.Secret == "" {
			tc.Secret = fmt.Sprintf("%x", subkey(cfg.Secret, "turn"))
		}
		if s.Relay, err = relay.New(tc); err != nil {
			return fmt.Errorf("server: turn relay: %w", err)
		}
		s.Consult.ICE = s.Relay
	}
	s.Signal = signaling.NewServer(signaling.Config{
		Media: media, Logger: cfg.Log, AllowedOrigins: []string{origin(cfg.BaseURL)},
	}, signer, s.Consult)
	if n := cfg.Node; n.ID != "" {
		if n.URL == "" {
			n.URL = cfg.BaseURL
		}
		if n.MediaAddress == "" {
			if u, err := url.Parse(n.URL); err == nil {
				n.MediaAddress = u.Hostname()
			}
		}
		sig := wsURL(strings.TrimRight(n.URL, "/")) + "/api/v1/signal"
		s.Cluster = cluster.New(s.DB, cluster.Config{ID: n.ID, SignalingURL: sig, MediaAddress: n.MediaAddress,
			Heartbeat: n.Heartbeat, Log: cfg.Log, Load: func() cluster.Load {
				c := media.Counters()
				return cluster.Load{Rooms: int(c.Rooms), Participants: int(c.Participants), ForwardedBytes: c.ForwardedBytes}
			}})
		s.Consult.SignalingURL = sig
		s.Consult.Placer = placer{s.Cluster}
		s.mediaHost = n.MediaAddress
	}
	s.API.Consult = s.Consult
	if s.Relay != nil {
		// Before the first client: until then the relay forwards nowhere.
		if err := s.refreshRelayPeers(ctx); err != nil {
			return fmt.Errorf("server: turn relay peers: %w", err)
		}
	}
	return nil
}

// refreshRelayPeers lets the TURN relay forward to the media addresses of
// this service's nodes, and nowhere else (besides TURN.AllowedNets): this
// node's MEDIA_PUBLIC_IP (else its interfaces' addresses, where its SFU
// offers candidates) and every registered node's media address.
func (s *Server) refreshRelayPeers(ctx context.Context) error {
	hosts := slices.Clone(s.cfg.Media.PublicIPs)
	if s.mediaHost != "" {
		hosts = append(hosts, s.mediaHost)
	}
	if s.Cluster != nil {
		nodes, err := s.Cluster.Nodes(ctx)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			// A node stopped or gone carries no media: its address is
			// no longer a peer the relay should reach.
			if n.Alive {
				hosts = append(hosts, n.MediaAddress)
			}
		}
	}
	var addrs []netip.Addr
	for _, h := range hosts {
		if a, err := netip.ParseAddr(h); err == nil {
			addrs = append(addrs, a)
			continue
		}
		found, err := net.DefaultResolver.LookupNetIP(ctx, "ip", h)
		if err != nil {
			s.cfg.Log.Debug("turn relay: media address does not resolve", "host", h, "err", err)
		}
		addrs = append(addrs, found...)
	}
	if len(s.cfg.Media.PublicIPs) == 0 {
		ifaces, err := net.InterfaceAddrs()
		if err != nil {
			return err
		}
		for _, ia := range ifaces {
			if p, err := netip.ParsePrefix(ia.String()); err == nil {
				addrs = append(addrs, p.Addr())
			}
		}
	}
	s.Relay.SetNodeAddresses(addrs)
	return nil
}

// placer adapts the cluster registry to consult.Placer.
type placer struct{ r *cluster.Registry }

func (p placer) Place(ctx context.Context, room string) (consult.Placement, error) {
	pl, err := p.r.Place(ctx, room)
	return consult.Placement{Node: pl.Node, SignalingURL: pl.SignalingURL}, err
}

func (p placer) Finished(ctx context.Context, room string) error { return p.r.Finished(ctx, room) }

// nextSlots offers the next free slots of an appointment's practitioner
// and consultation type (the reschedule page of an email link).
func (s *Server) nextSlots(ctx context.Context, id string, limit int) ([]time.Time, error) {
	a, err := store.AppointmentByID(ctx, s.DB.Pool, id)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	slots, err := s.Booking.Slots(ctx, a.PatientID, a.PractitionerID, a.ConsultationTypeID, now, now.Add(14*24*time.Hour))
	if err != nil {
		return nil, err
	}
	var out []time.Time
	for _, sl := range slots {
		if len(out) == limit {
			break
		}
		out = append(out, sl.Start)
	}
	return out, nil
}

// JoinSigner is the signer of join tokens for a deployment's secret (the
// load tool uses it to admit its synthetic participants).
func JoinSigner(secret []byte) *auth.JoinSigner {
	return auth.NewJoinSigner(subkey(secret, "join-token"))
}

// wsURL turns http(s)://host into ws(s)://host.
func wsURL(base string) string {
	if strings.HasPrefix(base, "https://") {
		return "wss://" + strings.TrimPrefix(base, "https://")
	}
	return "ws://" + strings.TrimPrefix(base, "http://")
}

// origin is scheme://host[:port] of a URL.
func origin(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	return u.Scheme + "://" + u.Host
}

// subkey derives an independent key for one purpose from the secret.
func subkey(secret []byte, purpose string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// OpenVault loads the master keys. A key file is generated at first start
// only while the database holds no data key: a lost or misplaced key file
// must stop the service, not silently start a new key.
func OpenVault(ctx context.Context, cfg Config, db *store.DB) (*vault.Vault, error) {
	if cfg.MasterKey != "" {
		kr, err := vault.ParseKeyring(cfg.MasterKey)
		if err != nil {
			return nil, err
		}
		return vault.New(kr, db), nil
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM data_keys`).Scan(&n); err != nil {
		return nil, err
	}
	_, statErr := os.Stat(cfg.MasterKeyFile)
	if errors.Is(statErr, os.ErrNotExist) && n > 0 {
		return nil, fmt.Errorf("master key file %s is missing but the database holds %d data keys: restore the file or set MASTER_KEY", cfg.MasterKeyFile, n)
	}
	kr, err := vault.LoadKeyringFile(cfg.MasterKeyFile, true)
	if err != nil {
		return nil, err
	}
	return vault.New(kr, db), nil
}

// Handler is the whole HTTP surface: pages, API, signalling, metrics.
func (s *Server) Handler() http.Handler { return s.handler }

// Start runs the background jobs until Close.
func (s *Server) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.jobs.Add(1)
	go func() { defer s.jobs.Done(); s.Live.Run(ctx) }()
	s.jobs.Add(1)
	go func() { defer s.jobs.Done(); s.Vault.Run(ctx) }()
	if s.Cluster != nil {
		// Registered before the first join can be placed here; Run
		// deletes the record when ctx ends.
		if err := s.Cluster.Heartbeat(ctx); err != nil {
			s.cfg.Log.Warn("cluster: first heartbeat failed", "err", err)
		}
		s.jobs.Add(1)
		go func() { defer s.jobs.Done(); s.Cluster.Run(ctx) }()
	}
	if s.Relay != nil {
		// Why a heartbeat in a cluster: a node that just joined gets rooms
		// at once, and relays on the other nodes must reach it.
		every := time.Minute
		if s.Cluster != nil {
			every = cmp.Or(s.cfg.Node.Heartbeat, cluster.DefaultHeartbeat)
		}
		s.every(ctx, every, "turn relay peers", s.refreshRelayPeers)
	}
	s.every(ctx, time.Minute, "login failures tidy", s.Auth.Tidy)
	s.every(ctx, audit.DefaultSealInterval, "audit seal", audit.Sealer(s.DB.Pool))
	s.jobs.Add(1)
	go func() {
		defer s.jobs.Done()
		if err := s.Notifier.Run(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Log.Error("notification worker stopped", "err", err)
		}
	}()
	s.jobs.Add(1)
	go func() { defer s.jobs.Done(); s.Payments.RunJobs(ctx, 30*time.Second) }()
	s.jobs.Add(1)
	go func() {
		defer s.jobs.Done()
		s.Booking.RunJobs(ctx, 30*time.Second, func(msg string, args ...any) { s.cfg.Log.Warn(msg, args...) })
	}()
}

// every runs fn every interval (and once at once) until ctx ends.
func (s *Server) every(ctx context.Context, interval time.Duration, name string, fn func(context.Context) error) {
	s.jobs.Add(1)
	go func() {
		defer s.jobs.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				s.cfg.Log.Warn("job failed", "job", name, "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Close stops the jobs and the media and closes the database.
func (s *Server) Close() {
	if s.stop != nil {
		s.stop()
	}
	s.jobs.Wait()
	if s.Signal != nil {
		s.Signal.Close()
	}
	if s.Relay != nil {
		s.Relay.Close()
	}
	if s.Media != nil {
		s.Media.Close()
	}
	if s.Payments != nil {
		s.Payments.Close()
	}
	s.DB.Close()
}
