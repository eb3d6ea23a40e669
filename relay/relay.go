// Package relay is the embedded TURN server for participants whose
// network blocks direct UDP to the SFU (corporate firewalls, some mobile
// carriers). It listens on UDP and TCP and accepts time-limited
// credentials in the TURN REST style: username "expiry:participant",
// credential base64(HMAC-SHA1(secret, username)), so the join endpoint
// can hand them out without any shared state. It forwards only to the
// media addresses of the service's nodes and to peers the configuration
// names: never an open relay into the network around it.
package relay

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
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
	// AllowedPeers and AllowedNets are peers the relay forwards to besides
	// the service's nodes (see SetNodeAddresses), e.g. TURN_ALLOWED_PEERS.
	// They are taken as given: only here can loopback or link-local
	// addresses be allowed. Every other peer is refused, so that a holder
	// of credentials cannot reach the hosts around the relay.
	AllowedPeers []net.IP
	AllowedNets  []netip.Prefix
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
	allowed []netip.Prefix // AllowedPeers and AllowedNets
	nodes   atomic.Pointer[[]netip.Addr]
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
	s := &Server{cfg: cfg, allowed: slices.Clone(cfg.AllowedNets)}
	for _, ip := range cfg.AllowedPeers {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return nil, fmt.Errorf("%w: allowed peer %v", ErrConfig, ip)
		}
		a = a.Unmap()
		s.allowed = append(s.allowed, netip.PrefixFrom(a, a.BitLen()))
	}
	permit := func(_ net.Addr, peer net.IP) bool { return s.Allows(peer) }
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

// Allows reports whether the relay forwards to peer: an address of one of
// the service's nodes, or one the configuration allows.
func (s *Server) Allows(peer net.IP) bool {
	a, ok := netip.AddrFromSlice(peer)
	if !ok {
		return false
	}
	a = a.Unmap()
	for _, p := range s.allowed {
		if p.Contains(a) {
			return true
		}
	}
	if nodes := s.nodes.Load(); nodes != nil {
		return slices.Contains(*nodes, a)
	}
	return false
}

// SetNodeAddresses sets the media addresses of the service's nodes, the
// peers the relay exists for. Loopback, link-local, multicast and
// unspecified addresses among them are ignored: a node record must not
// open the relay to the node's own host (AllowedNets can, explicitly).
func (s *Server) SetNodeAddresses(addrs []netip.Addr) {
	var keep []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if !a.IsValid() || a.IsLoopback() || a.IsUnspecified() || a.IsMulticast() ||
			a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
			continue
		}
		keep = append(keep, a)
	}
	slices.SortFunc(keep, netip.Addr.Compare)
	keep = slices.Compact(keep)
	s.nodes.Store(&keep)
}

// NodeAddresses returns the node addresses the relay forwards to.
func (s *Server) NodeAddresses() []netip.Addr {
	if nodes := s.nodes.Load(); nodes != nil {
		return slices.Clone(*nodes)
	}
	return nil
}

// ParsePeers parses a comma-separated list of IP addresses and CIDR
// networks (TURN_ALLOWED_PEERS), e.g. "10.0.0.0/8, 192.0.2.7".
func ParsePeers(text string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(text, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("%w: allowed peers: %q is not an address or a network", ErrConfig, f)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%w: allowed peers: %q is not an address or a network", ErrConfig, f)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
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
