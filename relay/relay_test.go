package relay

import (
	"net"
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
