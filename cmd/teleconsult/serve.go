package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"teleconsult/auth"
	"teleconsult/httpapi"
	"teleconsult/store"
	"teleconsult/vault"
)

// openStore connects to the database and brings its schema up to date.
func openStore(ctx context.Context, cfg *Config) (*store.DB, error) {
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// openVault loads the master keys. A key file is generated at first start
// only while the database holds no data key: a lost or misplaced key file
// must stop the service, not silently start a new key.
func openVault(ctx context.Context, cfg *Config, db *store.DB) (*vault.Vault, error) {
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

func runServe(ctx context.Context, args []string) error {
	var cfg Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	bindCommon(fs, &cfg)
	bindServe(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.finish(); err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel)
	slog.SetDefault(log)

	db, err := openStore(ctx, &cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	v, err := openVault(ctx, &cfg, db)
	if err != nil {
		return err
	}
	secret, err := cfg.secret()
	if err != nil {
		return err
	}
	_ = secret

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	authSvc := auth.NewService(db, auth.DefaultConfig, time.Now)
	api := &httpapi.API{
		DB: db, Vault: v, Auth: authSvc, Log: log,
		BaseURL: cfg.BaseURL, TrustProxy: cfg.TrustProxy, Registry: reg,
	}
	mux := http.NewServeMux()
	api.Routes(mux)

	srv := &http.Server{
		Addr:              cfg.Addr,
		Handler:           api.Handler(mux),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Why no WriteTimeout: event streams and WebSocket upgrades live
		// for the length of a consult; handlers bound their own writes.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}

	jobs, stopJobs := context.WithCancel(context.Background())
	defer stopJobs()
	go runPeriodic(jobs, time.Minute, func(ctx context.Context) error { return authSvc.Tidy(ctx) })

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving", "url", cfg.BaseURL, "addr", ln.Addr().String())
	fmt.Fprintf(os.Stderr, "\n  teleconsult is running: %s\n\n", cfg.BaseURL)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	stopJobs()
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// runPeriodic runs fn every interval until ctx ends, logging failures.
func runPeriodic(ctx context.Context, interval time.Duration, fn func(context.Context) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			slog.Warn("periodic job failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
