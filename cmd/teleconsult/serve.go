package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/acme/autocert"

	"teleconsult/notify"
	"teleconsult/payments"
	"teleconsult/relay"
	"teleconsult/server"
	"teleconsult/store"
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

// serverConfig turns the command's configuration into the server's.
func (cfg *Config) serverConfig(log *slog.Logger) (server.Config, error) {
	secret, err := cfg.secret()
	if err != nil {
		return server.Config{}, err
	}
	roles, err := cfg.mfaRoles()
	if err != nil {
		return server.Config{}, err
	}
	sc := server.Config{
		DatabaseURL: cfg.DatabaseURL, BaseURL: cfg.BaseURL,
		MasterKey: cfg.MasterKey, MasterKeyFile: cfg.MasterKeyFile,
		Secret: secret, TrustProxy: cfg.TrustProxy, Log: log, MFARoles: roles,
		MetricsToken: os.Getenv("METRICS_TOKEN"),
		Notify:       notify.EnvConfig(os.Getenv),
		CACertFile:   cfg.CACertFile, CAKeyFile: cfg.CAKeyFile,
		LegalHoldPublicKey: os.Getenv("LEGAL_HOLD_PUBLIC_KEY"),
		Node:               server.NodeConfig{ID: cfg.nodeID(), URL: cfg.NodeURL, MediaAddress: cfg.Media.PublicIP, Heartbeat: cfg.NodeHeartbeat},
	}
	if sc.Payments, err = payments.ConfigFromEnv(os.Getenv); err != nil {
		return server.Config{}, err
	}
	if sc.Payments.SecretKey == "" {
		// Test mode: the stand-in for Stripe delivers its webhooks to our
		// own listener on loopback.
		if sc.Payments.TestWebhookURL, err = payments.LoopbackWebhookURL(cfg.Addr); err != nil {
			return server.Config{}, err
		}
	}
	m := cfg.Media
	if m.PublicIP != "" {
		sc.Media.PublicIPs = []string{m.PublicIP}
	}
	if sc.Media.UDPPortMin, sc.Media.UDPPortMax, err = portRange(m.UDPPorts); err != nil {
		return server.Config{}, fmt.Errorf("MEDIA_UDP_PORTS: %w", err)
	}
	sc.Media.UDPMuxPort = m.UDPMuxPort
	sc.Media.IncludeLoopback = m.Loopback
	if m.TURNListen != "" {
		if m.TURNPublic == "" {
			return server.Config{}, fmt.Errorf("TURN_LISTEN needs TURN_PUBLIC_IP")
		}
		sc.TURN.ListenUDP, sc.TURN.ListenTCP = m.TURNListen, m.TURNListen
		sc.TURN.PublicIP, sc.TURN.PublicHost = m.TURNPublic, m.TURNPubHost
		if sc.TURN.PortMin, sc.TURN.PortMax, err = portRange(m.TURNPorts); err != nil {
			return server.Config{}, fmt.Errorf("TURN_RELAY_PORTS: %w", err)
		}
		if sc.TURN.AllowedNets, err = relay.ParsePeers(m.TURNAllowed); err != nil {
			return server.Config{}, fmt.Errorf("TURN_ALLOWED_PEERS: %w", err)
		}
	}
	return sc, nil
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
	scfg, err := cfg.serverConfig(log)
	if err != nil {
		return err
	}
	s, err := server.New(ctx, scfg)
	if err != nil {
		return err
	}
	defer s.Close()
	s.Start()

	srv := &http.Server{
		Addr:              cfg.Addr,
		Handler:           s.Handler(),
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
	errc := make(chan error, 2)
	switch {
	case cfg.TLSCert != "":
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		go func() { errc <- srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey) }()
	case cfg.AutocertHosts != "":
		m := &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			HostPolicy: autocert.HostWhitelist(strings.Split(cfg.AutocertHosts, ",")...),
			Cache:      autocert.DirCache(filepath.Join(cfg.DataDir, "autocert")),
		}
		srv.TLSConfig = m.TLSConfig()
		srv.TLSConfig.MinVersion = tls.VersionTLS12
		challenge := &http.Server{Addr: cfg.ACMEHTTPAddr, Handler: m.HTTPHandler(nil), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- challenge.ListenAndServe() }()
		defer challenge.Close()
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	default:
		go func() { errc <- srv.Serve(ln) }()
	}
	log.Info("serving", "url", cfg.BaseURL, "addr", ln.Addr().String())
	fmt.Fprintf(os.Stderr, "\n  teleconsult is running: %s\n\n", cfg.BaseURL)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}
