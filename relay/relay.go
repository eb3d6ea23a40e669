// Package relay is the embedded TURN server for participants whose
// network blocks direct UDP to the SFU (corporate firewalls, some mobile
// carriers). It listens on UDP and TCP and accepts time-limited
// credentials in the TURN REST style: username "expiry:participant",
// credential base64(HMAC-SHA1(secret, username)), so the join endpoint
// can hand them out without any shared state.
package relay

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"
)

// Config sets where the relay listens and what it tells clients.
type Config struct {
	// Secret is shared with whatever mints credentials (the join endpoint).
	Secret string
	// Realm is the TURN realm (default "teleconsult").
	Realm string
	// ListenUDP and ListenTCP are the listening addresses, e.g.
	// "0.0.0.0:3478"; an empty one is not opened.
	ListenUDP, ListenTCP string
	// PublicIP is the address relayed candidates carry (the host's public
	// address behind 1:1 NAT); it is also the host of the URLs given to
	// clients unless PublicHost is set.
	PublicIP   string
	PublicHost string
	// RelayBind is the local address relay sockets bind to (default
	// "0.0.0.0").
	RelayBind string
	// PortMin and PortMax bound the relay ports (default 49152-65535).
	PortMin, PortMax uint16
	// CredentialTTL is how long handed-out credentials last (default 6 h,
	// longer than any consultation).
	CredentialTTL time.Duration
	// AllowedPeers, when set, is the only peer addresses the relay will
	// forward to (the SFU's), so that it is not an open relay.
	AllowedPeers []net.IP
	// LoggerFactory receives Pion's logs (default: errors only).
	LoggerFactory logging.LoggerFactory
}

// ICEServer is one entry of RTCConfiguration.iceServers, as the join
// endpoint returns it.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username"`
	Credential string   `json:"credential"`
}

// Server is a running TURN relay.
type Server struct {
	cfg     Config
	turn    *turn.Server
	udpAddr net.Addr
	tcpAddr net.Addr
}

// ErrConfig reports an unusable configuration.
var ErrConfig = errors.New("relay: invalid configuration")

// New starts a relay.
func New(cfg Config) (*Server, error) {
	if cfg.Secret == "" || net.ParseIP(cfg.PublicIP) == nil || (cfg.ListenUDP == "" && cfg.ListenTCP == "") {
		return nil, fmt.Errorf("%w: needs a secret, a public IP and a listening address", ErrConfig)
	}
	if cfg.Realm == "" {
		cfg.Realm = "teleconsult"
	}
	if cfg.RelayBind == "" {
		cfg.RelayBind = "0.0.0.0"
	}
	if cfg.PortMin == 0 && cfg.PortMax == 0 {
		cfg.PortMin, cfg.PortMax = 49152, 65535
	}
	if cfg.CredentialTTL == 0 {
		cfg.CredentialTTL = 6 * time.Hour
	}
	if cfg.PublicHost == "" {
		cfg.PublicHost = cfg.PublicIP
	}
	if cfg.LoggerFactory == nil {
		cfg.LoggerFactory = logging.NewDefaultLoggerFactory()
	}
	gen := func() turn.RelayAddressGenerator {
		return &turn.RelayAddressGeneratorPortRange{RelayAddress: net.ParseIP(cfg.PublicIP), Address: cfg.RelayBind, MinPort: cfg.PortMin, MaxPort: cfg.PortMax}
	}
	permit := func(_ net.Addr, peer net.IP) bool {
		if len(cfg.AllowedPeers) == 0 {
			return true
		}
		for _, ip := range cfg.AllowedPeers {
			if ip.Equal(peer) {
				return true
			}
		}
		return false
	}
	s := &Server{cfg: cfg}
	tc := turn.ServerConfig{
		Realm:         cfg.Realm,
		AuthHandler:   turn.LongTermTURNRESTAuthHandler(cfg.Secret, cfg.LoggerFactory.NewLogger("relay")),
		LoggerFactory: cfg.LoggerFactory,
	}
	if cfg.ListenUDP != "" {
		pc, err := net.ListenPacket("udp4", cfg.ListenUDP)
		if err != nil {
			return nil, fmt.Errorf("relay: listen udp: %w", err)
		}
		s.udpAddr = pc.LocalAddr()
		tc.PacketConnConfigs = []turn.PacketConnConfig{{PacketConn: pc, RelayAddressGenerator: gen(), PermissionHandler: permit}}
	}
	if cfg.ListenTCP != "" {
		l, err := net.Listen("tcp4", cfg.ListenTCP)
		if err != nil {
			if s.udpAddr != nil {
				tc.PacketConnConfigs[0].PacketConn.Close()
			}
			return nil, fmt.Errorf("relay: listen tcp: %w", err)
		}
		s.tcpAddr = l.Addr()
		tc.ListenerConfigs = []turn.ListenerConfig{{Listener: l, RelayAddressGenerator: gen(), PermissionHandler: permit}}
	}
	t, err := turn.NewServer(tc)
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	s.turn = t
	return s, nil
}

// Close stops the relay.
func (s *Server) Close() error { return s.turn.Close() }

// Credentials returns TURN REST credentials for participant, valid until
// expires.
func Credentials(secret, participant string, expires time.Time) (username, credential string) {
	username = strconv.FormatInt(expires.Unix(), 10) + ":" + participant
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// ICEServers returns the relay's URLs (UDP and TCP) with fresh
// credentials for participant.
func (s *Server) ICEServers(participant string, now time.Time) []ICEServer {
	user, cred := Credentials(s.cfg.Secret, participant, now.Add(s.cfg.CredentialTTL))
	var urls []string
	if a, ok := s.udpAddr.(*net.UDPAddr); ok {
		urls = append(urls, fmt.Sprintf("turn:%s:%d?transport=udp", s.cfg.PublicHost, a.Port))
	}
	if a, ok := s.tcpAddr.(*net.TCPAddr); ok {
		urls = append(urls, fmt.Sprintf("turn:%s:%d?transport=tcp", s.cfg.PublicHost, a.Port))
	}
	return []ICEServer{{URLs: urls, Username: user, Credential: cred}}
}
