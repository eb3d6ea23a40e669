package relay

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

func TestCredentialsAreTURNREST(t *testing.T) {
	exp := time.Unix(1_900_000_000, 0)
	user, cred := Credentials("s3cret", "acc-1", exp)
	if user != "1900000000:acc-1" {
		t.Fatalf("username = %q", user)
	}
	u2, c2, err := turn.GenerateLongTermTURNRESTCredentials("s3cret", "acc-1", time.Until(exp))
	if err != nil {
		t.Fatal(err)
	}
	if u2 == user && c2 != cred {
		t.Fatalf("credential %q differs from pion's %q", cred, c2)
	}
}

func TestRelayAllocatesWithValidCredentialsOnly(t *testing.T) {
	s, err := New(Config{Secret: "s3cret", ListenUDP: "127.0.0.1:0", ListenTCP: "127.0.0.1:0", PublicIP: "127.0.0.1", RelayBind: "127.0.0.1", PortMin: 40000, PortMax: 40999})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ice := s.ICEServers("acc-1", time.Now())
	if len(ice) != 1 || len(ice[0].URLs) != 2 || !strings.HasSuffix(ice[0].URLs[1], "?transport=tcp") {
		t.Fatalf("ICE servers = %+v", ice)
	}
	allocate := func(user, pass string) error {
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		addr := s.udpAddr.String()
		c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn, Username: user, Password: pass, Realm: "teleconsult"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Listen(); err != nil {
			t.Fatal(err)
		}
		relayConn, err := c.Allocate()
		if err == nil {
			relayConn.Close()
		}
		return err
	}
	if err := allocate(ice[0].Username, ice[0].Credential); err != nil {
		t.Fatalf("allocate with good credentials: %v", err)
	}
	if err := allocate(ice[0].Username, "wrong"); err == nil {
		t.Fatal("allocated with a wrong credential")
	}
	expiredUser, expiredCred := Credentials("s3cret", "acc-1", time.Now().Add(-time.Minute))
	if err := allocate(expiredUser, expiredCred); err == nil {
		t.Fatal("allocated with expired credentials")
	}
}

func TestParsePeers(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"", "[]", true},
		{"10.0.0.0/8, 192.0.2.7", "[10.0.0.0/8 192.0.2.7/32]", true},
		{"127.0.0.1/8,2001:db8::1", "[127.0.0.0/8 2001:db8::1/128]", true},
		{"::ffff:192.0.2.1", "[192.0.2.1/32]", true},
		{"10.0.0.0/33", "", false},
		{"node-b.example.org", "", false},
	} {
		got, err := ParsePeers(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParsePeers(%q): error %v", tc.in, err)
			continue
		}
		if tc.ok && fmt.Sprint(got) != tc.want {
			t.Errorf("ParsePeers(%q) = %v, want %s", tc.in, got, tc.want)
		}
	}
}

// turnClient allocates a relayed address on s over transport ("udp" or
// "tcp" to the relay).
func turnClient(t *testing.T, s *Server, transport string) (*turn.Client, net.PacketConn) {
	t.Helper()
	var conn net.PacketConn
	addr := s.udpAddr.String()
	if transport == "tcp" {
		addr = s.tcpAddr.String()
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn = turn.NewSTUNConn(c)
	} else {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conn = c
	}
	t.Cleanup(func() { conn.Close() })
	user, cred := Credentials(s.cfg.Secret, "acc-1", time.Now().Add(time.Hour))
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn, Username: user, Password: cred, Realm: "teleconsult"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relayed, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relayed.Close() })
	return c, relayed
}

func TestRelayForwardsOnlyToNodesAndAllowedPeers(t *testing.T) {
	// An echo service on loopback stands for whatever else runs on or
	// near the relay's host.
	echo, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			echo.WriteTo(buf[:n], from)
		}
	}()
	echoAddr := echo.LocalAddr().(*net.UDPAddr)
	newRelay := func(t *testing.T, allowed string) *Server {
		nets, err := ParsePeers(allowed)
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(Config{Secret: "s3cret", ListenUDP: "127.0.0.1:0", ListenTCP: "127.0.0.1:0", PublicIP: "127.0.0.1", RelayBind: "127.0.0.1", PortMin: 42000, PortMax: 42999, AllowedNets: nets})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	// roundTrip sends through the relay to the echo service and reports
	// whether an echo came back, trying a few times (the first datagrams
	// may go while the client still binds a channel).
	roundTrip := func(t *testing.T, relayed net.PacketConn) bool {
		buf := make([]byte, 100)
		for range 10 {
			if _, err := relayed.WriteTo([]byte("ping"), echoAddr); err != nil {
				continue
			}
			relayed.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, from, err := relayed.ReadFrom(buf)
			if err == nil && string(buf[:n]) == "ping" && from.String() == echoAddr.String() {
				return true
			}
		}
		return false
	}
	udp := func(ip string, port int) net.Addr { return &net.UDPAddr{IP: net.ParseIP(ip), Port: port} }

	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport+"/nodes only", func(t *testing.T) {
			s := newRelay(t, "")
			// A node registered on loopback does not open loopback.
			s.SetNodeAddresses([]netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("169.254.169.254")})
			if got := fmt.Sprint(s.NodeAddresses()); got != "[198.51.100.7]" {
				t.Fatalf("node addresses = %s", got)
			}
			c, relayed := turnClient(t, s, transport)
			for _, peer := range []net.Addr{echoAddr, udp("127.0.0.2", 53), udp("10.0.0.1", 5432), udp("169.254.169.254", 80), udp("198.51.100.8", 5000)} {
				if err := c.CreatePermission(peer); err == nil {
					t.Errorf("permission to %v granted", peer)
				}
			}
			// A node's media address is granted (no packet is sent to it).
			if err := c.CreatePermission(udp("198.51.100.7", 50000)); err != nil {
				t.Errorf("permission to a node refused: %v", err)
			}
			if roundTrip(t, relayed) {
				t.Fatal("the relay forwarded to a loopback service")
			}
		})
		t.Run(transport+"/allowed explicitly", func(t *testing.T) {
			s := newRelay(t, "127.0.0.1")
			c, relayed := turnClient(t, s, transport)
			if err := c.CreatePermission(echoAddr); err != nil {
				t.Fatalf("permission to an allowed peer: %v", err)
			}
			if !roundTrip(t, relayed) {
				t.Fatal("no echo through the relay from an allowed peer")
			}
			if err := c.CreatePermission(udp("127.0.0.2", echoAddr.Port)); err == nil {
				t.Error("permission granted outside the allowed peers")
			}
		})
	}
}
