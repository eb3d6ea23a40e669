// Package server assembles the whole service from its parts: the store,
// the vault, the domain services, the JSON API, the web pages and the
// video signalling, with the background jobs. cmd/teleconsult runs it;
// the end-to-end tests start it on a fresh database.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"teleconsult/auth"
	"teleconsult/httpapi"
	"teleconsult/live"
	"teleconsult/store"
	"teleconsult/vault"
)

// Config is what the service is told from outside.
type Config struct {
	DatabaseURL   string
	BaseURL       string // public URL, without a trailing slash
	MasterKey     string // keyring text; else MasterKeyFile
	MasterKeyFile string
	Secret        []byte // signs join tokens and one-click links
	TrustProxy    bool
	// MFARoles must use two-factor login; nil means auth.DefaultMFARoles.
	MFARoles map[string]bool
	Log      *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
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

	handler http.Handler
	jobs    sync.WaitGroup
	stop    context.CancelFunc
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

func (s *Server) build(ctx context.Context) error {
	cfg := s.cfg
	v, err := openVault(ctx, cfg, s.DB)
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
		BaseURL: cfg.BaseURL, TrustProxy: cfg.TrustProxy, Registry: s.Registry,
		Live: s.Live,
	}
	mux := http.NewServeMux()
	s.API.Routes(mux)
	s.handler = s.API.Handler(mux)
	return nil
}

// openVault loads the master keys. A key file is generated at first start
// only while the database holds no data key: a lost or misplaced key file
// must stop the service, not silently start a new key.
func openVault(ctx context.Context, cfg Config, db *store.DB) (*vault.Vault, error) {
	if cfg.MasterKey != "" {
		kr, err := vault.ParseKeyring(cfg.MasterKey)
		if err != nil {
			return nil, err
		}
		return vault.New(kr), nil
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
	return vault.New(kr), nil
}

// Handler is the whole HTTP surface: pages, API, signalling, metrics.
func (s *Server) Handler() http.Handler { return s.handler }

// Start runs the background jobs until Close.
func (s *Server) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.jobs.Add(1)
	go func() { defer s.jobs.Done(); s.Live.Run(ctx) }()
	s.every(ctx, time.Minute, "login failures tidy", s.Auth.Tidy)
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

// Close stops the jobs and closes the database.
func (s *Server) Close() {
	if s.stop != nil {
		s.stop()
	}
	s.jobs.Wait()
	s.DB.Close()
}
