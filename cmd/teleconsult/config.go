package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Config is everything the service is told from outside: flags first,
// then environment variables, then defaults. It is passed down, never
// kept in package globals.
type Config struct {
	DatabaseURL   string // DATABASE_URL
	Addr          string // --addr / ADDR
	BaseURL       string // BASE_URL: public URL used in links
	DataDir       string // DATA_DIR: where generated demo keys live
	MasterKey     string // MASTER_KEY: "id:base64" lines; else MASTER_KEY_FILE
	MasterKeyFile string // MASTER_KEY_FILE (default DATA_DIR/master.key)
	SecretKey     string // SECRET_KEY: hex; signs join tokens and links (default: generated in DATA_DIR)
	TrustProxy    bool   // TRUST_PROXY: take the client address from X-Forwarded-For
	LogLevel      string // LOG_LEVEL: debug, info, warn, error
	MFARoles      string // MFA_REQUIRED_ROLES: comma-separated roles, or "none"
}

// mfaRoles parses MFA_REQUIRED_ROLES; empty means the default.
func (cfg *Config) mfaRoles() (map[string]bool, error) {
	if cfg.MFARoles == "" {
		return nil, nil
	}
	m := map[string]bool{}
	if cfg.MFARoles == "none" {
		return m, nil
	}
	for _, r := range strings.Split(cfg.MFARoles, ",") {
		r = strings.TrimSpace(r)
		switch r {
		case "patient", "practitioner", "pharmacist", "admin":
			m[r] = true
		default:
			return nil, fmt.Errorf("MFA_REQUIRED_ROLES: unknown role %q", r)
		}
	}
	return m, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// bindCommon declares the flags every subcommand shares.
func bindCommon(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.DatabaseURL, "database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL (DATABASE_URL)")
	fs.StringVar(&cfg.DataDir, "data-dir", envOr("DATA_DIR", ".data"), "directory for generated demo keys (DATA_DIR)")
	fs.StringVar(&cfg.MasterKeyFile, "master-key-file", os.Getenv("MASTER_KEY_FILE"), "file holding the master keys (MASTER_KEY_FILE; default DATA_DIR/master.key)")
	fs.StringVar(&cfg.LogLevel, "log-level", envOr("LOG_LEVEL", "info"), "debug, info, warn or error (LOG_LEVEL)")
	cfg.MasterKey = os.Getenv("MASTER_KEY")
	cfg.SecretKey = os.Getenv("SECRET_KEY")
}

// bindServe declares the flags of serve.
func bindServe(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.Addr, "addr", envOr("ADDR", ":8080"), "listen address (ADDR)")
	fs.StringVar(&cfg.BaseURL, "base-url", os.Getenv("BASE_URL"), "public URL used in links (BASE_URL; default http://localhost<addr>)")
	fs.BoolVar(&cfg.TrustProxy, "trust-proxy", os.Getenv("TRUST_PROXY") == "true", "take client addresses from X-Forwarded-For (TRUST_PROXY=true)")
	fs.StringVar(&cfg.MFARoles, "mfa-required-roles", os.Getenv("MFA_REQUIRED_ROLES"), "roles that must use two-factor login, or none (MFA_REQUIRED_ROLES; default practitioner,pharmacist,admin)")
}

func (cfg *Config) finish() error {
	if cfg.DatabaseURL == "" {
		return errors.New("DATABASE_URL is not set (make run sets it for you)")
	}
	if cfg.MasterKeyFile == "" {
		cfg.MasterKeyFile = filepath.Join(cfg.DataDir, "master.key")
	}
	if cfg.BaseURL == "" && cfg.Addr != "" {
		host := cfg.Addr
		if strings.HasPrefix(host, ":") {
			host = "localhost" + host
		}
		cfg.BaseURL = "http://" + host
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	return nil
}

// secret returns the deployment's secret, generating and keeping one in
// DATA_DIR at first start when SECRET_KEY is not set.
func (cfg *Config) secret() ([]byte, error) {
	if cfg.SecretKey != "" {
		b, err := hex.DecodeString(cfg.SecretKey)
		if err != nil || len(b) < 32 {
			return nil, errors.New("SECRET_KEY must be at least 32 bytes in hex")
		}
		return b, nil
	}
	path := filepath.Join(cfg.DataDir, "secret.key")
	if b, err := os.ReadFile(path); err == nil {
		return hex.DecodeString(strings.TrimSpace(string(b)))
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	b := make([]byte, 32)
	rand.Read(b)
	if err := os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return b, nil
}

// subkey derives an independent key for one purpose from the secret.
func subkey(secret []byte, purpose string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}
