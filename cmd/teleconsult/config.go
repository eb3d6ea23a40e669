package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"teleconsult/cluster"
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
	Media         mediaConfig
	TLSCert       string        // TLS_CERT_FILE: serve HTTPS with this certificate
	TLSKey        string        // TLS_KEY_FILE
	AutocertHosts string        // TLS_AUTOCERT_DOMAINS: obtain certificates automatically (ACME)
	ACMEHTTPAddr  string        // ACME_HTTP_ADDR: where ACME http-01 challenges are answered (default :80)
	CACertFile    string        // RX_CA_CERT_FILE: import the prescription-signing CA
	CAKeyFile     string        // RX_CA_KEY_FILE
	NodeID        string        // NODE_ID: this node's id (default host name + "-" + the port of ADDR)
	NodeURL       string        // NODE_URL: this node's own public URL (default BASE_URL)
	NodeHeartbeat time.Duration // NODE_HEARTBEAT: how often the node refreshes its record (default 1s)
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
	fs.StringVar(&cfg.CACertFile, "rx-ca-cert-file", os.Getenv("RX_CA_CERT_FILE"), "certificate (PEM) of the CA that certifies prescribers' signing keys (RX_CA_CERT_FILE; default: a CA created at first start)")
	fs.StringVar(&cfg.CAKeyFile, "rx-ca-key-file", os.Getenv("RX_CA_KEY_FILE"), "private key (PEM) of that CA (RX_CA_KEY_FILE)")
	fs.StringVar(&cfg.LogLevel, "log-level", envOr("LOG_LEVEL", "info"), "debug, info, warn or error (LOG_LEVEL)")
	cfg.MasterKey = os.Getenv("MASTER_KEY")
	cfg.SecretKey = os.Getenv("SECRET_KEY")
}

// bindServe declares the flags of serve.
func bindServe(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.Addr, "addr", envOr("ADDR", ":8080"), "listen address (ADDR)")
	fs.StringVar(&cfg.BaseURL, "base-url", os.Getenv("BASE_URL"), "public URL used in links (BASE_URL; default http://localhost<addr>)")
	fs.BoolVar(&cfg.TrustProxy, "trust-proxy", os.Getenv("TRUST_PROXY") == "true", "take client addresses from X-Forwarded-For (TRUST_PROXY=true)")
	bindMedia(fs, &cfg.Media)
	fs.StringVar(&cfg.TLSCert, "tls-cert-file", os.Getenv("TLS_CERT_FILE"), "serve HTTPS with this certificate (TLS_CERT_FILE)")
	fs.StringVar(&cfg.TLSKey, "tls-key-file", os.Getenv("TLS_KEY_FILE"), "private key of the certificate (TLS_KEY_FILE)")
	fs.StringVar(&cfg.AutocertHosts, "tls-autocert-domains", os.Getenv("TLS_AUTOCERT_DOMAINS"), "comma-separated domains to obtain certificates for automatically (TLS_AUTOCERT_DOMAINS)")
	fs.StringVar(&cfg.ACMEHTTPAddr, "acme-http-addr", envOr("ACME_HTTP_ADDR", ":80"), "address answering ACME challenges and redirecting to HTTPS (ACME_HTTP_ADDR)")
	bindNode(fs, cfg)
	fs.StringVar(&cfg.MFARoles, "mfa-required-roles", os.Getenv("MFA_REQUIRED_ROLES"), "roles that must use two-factor login, or none (MFA_REQUIRED_ROLES; default practitioner,pharmacist,admin)")
}

// bindNode declares the flags naming this node of a cluster.
func bindNode(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.NodeID, "node-id", os.Getenv("NODE_ID"), "this node's id among the nodes sharing the database (NODE_ID; default host name-port of ADDR)")
	fs.StringVar(&cfg.NodeURL, "node-url", os.Getenv("NODE_URL"), "this node's own public URL, where its signalling is reached (NODE_URL; default BASE_URL)")
	hb, _ := time.ParseDuration(os.Getenv("NODE_HEARTBEAT"))
	if hb <= 0 {
		hb = time.Second
	}
	fs.DurationVar(&cfg.NodeHeartbeat, "node-heartbeat", hb, "how often the node refreshes its record; gone after 3 missed (NODE_HEARTBEAT)")
}

// nodeID returns NODE_ID or its default.
func (cfg *Config) nodeID() string {
	if cfg.NodeID != "" {
		return cfg.NodeID
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "node"
	}
	addr := cfg.Addr
	if addr == "" {
		addr = ":8080"
	}
	return cluster.DefaultID(host, addr)
}

func (cfg *Config) finish() error {
	if cfg.DatabaseURL == "" {
		return errors.New("DATABASE_URL is not set (make run sets it for you)")
	}
	if cfg.MasterKeyFile == "" {
		cfg.MasterKeyFile = filepath.Join(cfg.DataDir, "master.key")
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return errors.New("TLS_CERT_FILE and TLS_KEY_FILE go together")
	}
	if cfg.BaseURL == "" && cfg.Addr != "" {
		host := cfg.Addr
		if strings.HasPrefix(host, ":") {
			host = "localhost" + host
		}
		scheme := "http://"
		if cfg.TLSCert != "" || cfg.AutocertHosts != "" {
			scheme = "https://"
		}
		cfg.BaseURL = scheme + host
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if cfg.NodeURL == "" {
		cfg.NodeURL = cfg.BaseURL
	}
	cfg.NodeURL = strings.TrimRight(cfg.NodeURL, "/")
	if v := os.Getenv("NODE_HEARTBEAT"); v != "" {
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			return fmt.Errorf("NODE_HEARTBEAT %q must be a positive duration such as 1s", v)
		}
	}
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

// Media and relay settings (all optional).
type mediaConfig struct {
	PublicIP    string // MEDIA_PUBLIC_IP: the address behind a 1:1 NAT
	UDPPorts    string // MEDIA_UDP_PORTS: "min-max"
	UDPMuxPort  int    // MEDIA_UDP_PORT: one UDP port for every call
	Loopback    bool   // MEDIA_LOOPBACK: offer loopback candidates
	TURNListen  string // TURN_LISTEN: e.g. ":3478" (UDP and TCP)
	TURNPublic  string // TURN_PUBLIC_IP
	TURNPorts   string // TURN_RELAY_PORTS: "min-max"
	TURNPubHost string // TURN_PUBLIC_HOST: host name in the TURN URLs
	TURNAllowed string // TURN_ALLOWED_PEERS: IPs and CIDRs the relay may also reach
}

func bindMedia(fs *flag.FlagSet, m *mediaConfig) {
	fs.StringVar(&m.PublicIP, "media-public-ip", os.Getenv("MEDIA_PUBLIC_IP"), "public IP of this host behind 1:1 NAT (MEDIA_PUBLIC_IP)")
	fs.StringVar(&m.UDPPorts, "media-udp-ports", os.Getenv("MEDIA_UDP_PORTS"), "UDP port range for media, min-max (MEDIA_UDP_PORTS)")
	port, _ := strconv.Atoi(os.Getenv("MEDIA_UDP_PORT"))
	fs.IntVar(&m.UDPMuxPort, "media-udp-port", port, "carry every call over this one UDP port (MEDIA_UDP_PORT)")
	fs.BoolVar(&m.Loopback, "media-loopback", os.Getenv("MEDIA_LOOPBACK") != "false", "offer loopback ICE candidates (MEDIA_LOOPBACK; default true)")
	fs.StringVar(&m.TURNListen, "turn-listen", os.Getenv("TURN_LISTEN"), "run the TURN relay on this address, UDP and TCP, e.g. :3478 (TURN_LISTEN)")
	fs.StringVar(&m.TURNPublic, "turn-public-ip", os.Getenv("TURN_PUBLIC_IP"), "public IP relayed candidates carry (TURN_PUBLIC_IP)")
	fs.StringVar(&m.TURNPorts, "turn-relay-ports", os.Getenv("TURN_RELAY_PORTS"), "relay port range, min-max (TURN_RELAY_PORTS)")
	fs.StringVar(&m.TURNPubHost, "turn-public-host", os.Getenv("TURN_PUBLIC_HOST"), "host name in the TURN URLs given to clients (TURN_PUBLIC_HOST)")
	fs.StringVar(&m.TURNAllowed, "turn-allowed-peers", os.Getenv("TURN_ALLOWED_PEERS"), "comma-separated IPs and CIDRs the relay may forward to besides the nodes' media addresses (TURN_ALLOWED_PEERS)")
}

func portRange(s string) (uint16, uint16, error) {
	if s == "" {
		return 0, 0, nil
	}
	a, b, ok := strings.Cut(s, "-")
	lo, err1 := strconv.ParseUint(a, 10, 16)
	hi, err2 := strconv.ParseUint(b, 10, 16)
	if !ok || err1 != nil || err2 != nil || lo > hi || lo == 0 {
		return 0, 0, fmt.Errorf("port range %q must be min-max", s)
	}
	return uint16(lo), uint16(hi), nil
}
