package server

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"testing"
	"time"

	"teleconsult/relay"
	"teleconsult/sfu"
	"teleconsult/store"
	"teleconsult/store/storetest"
	"teleconsult/vault"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func TestRelayForwardsToTheServiceNodesOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	secret := make([]byte, 32)
	rand.Read(secret)
	s, err := New(ctx, Config{
		DatabaseURL: storetest.NewURL(t),
		BaseURL:     "http://127.0.0.1:1",
		MasterKey:   vault.NewMasterKeyLine(),
		Secret:      secret,
		Media:       sfu.Config{PublicIPs: []string{"198.51.100.7"}},
		TURN:        relay.Config{ListenUDP: "127.0.0.1:0", PublicIP: "127.0.0.1", RelayBind: "127.0.0.1", PortMin: 43000, PortMax: 43999},
		Node:        NodeConfig{ID: "node-a", URL: "http://127.0.0.1:1", MediaAddress: "198.51.100.7"},
		Log:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	allows := func(ip string) bool { return s.Relay.Allows(net.ParseIP(ip)) }
	if !allows("198.51.100.7") {
		t.Error("the relay does not forward to this node's media address")
	}
	// Another node registers: the relay reaches it after a refresh (every
	// heartbeat once started).
	if allows("203.0.113.9") {
		t.Fatal("an unregistered address is allowed")
	}
	if err := store.HeartbeatNode(ctx, s.DB.Pool, store.Node{ID: "node-b", SignalingURL: "ws://node-b/api/v1/signal", MediaAddress: "203.0.113.9"}, true); err != nil {
		t.Fatal(err)
	}
	if err := s.refreshRelayPeers(ctx); err != nil {
		t.Fatal(err)
	}
	if !allows("203.0.113.9") {
		t.Error("the relay does not forward to another node's media address")
	}
	// It stops: its address is no longer reached.
	if err := store.StopNode(ctx, s.DB.Pool, "node-b"); err != nil {
		t.Fatal(err)
	}
	if err := s.refreshRelayPeers(ctx); err != nil {
		t.Fatal(err)
	}
	if allows("203.0.113.9") {
		t.Error("the relay still forwards to a stopped node's media address")
	}
	// Nothing else, least of all this host's own services.
	for _, ip := range []string{"127.0.0.1", "10.0.0.1", "169.254.169.254", "203.0.113.10"} {
		if allows(ip) {
			t.Errorf("the relay forwards to %s", ip)
		}
	}
}
