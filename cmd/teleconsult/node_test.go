package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"teleconsult/store"
	"teleconsult/store/storetest"
)

func TestNodeDrainListUndrain(t *testing.T) {
	url := storetest.NewURL(t)
	ctx := context.Background()
	db, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := store.HeartbeatNode(ctx, db.Pool, store.Node{ID: "web1-8080", SignalingURL: "ws://10.0.0.1:8080/api/v1/signal", MediaAddress: "10.0.0.1"}, true); err != nil {
		t.Fatal(err)
	}
	common := []string{"--database-url", url, "--data-dir", t.TempDir()}
	run := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := runNode(ctx, append(args, common...), &out); err != nil {
			t.Fatalf("node %v: %v", args, err)
		}
		return out.String()
	}
	if out := run("list"); !strings.Contains(out, "web1-8080") || !strings.Contains(out, "live") {
		t.Fatalf("list: %q", out)
	}
	// No room on it: --wait returns at once.
	if out := run("drain", "--node", "web1-8080", "--wait"); !strings.Contains(out, "no room left") {
		t.Fatalf("drain: %q", out)
	}
	if out := run("list"); !strings.Contains(out, "draining") {
		t.Fatalf("list after drain: %q", out)
	}
	run("undrain", "--node", "web1-8080")
	if out := run("list"); strings.Contains(out, "draining") {
		t.Fatalf("list after undrain: %q", out)
	}
	var out bytes.Buffer
	if err := runNode(ctx, append([]string{"drain", "--node", "nope"}, common...), &out); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("draining an unknown node: %v", err)
	}

	// Drained for maintenance, stopped cleanly, started again: the node
	// shows stopped, then comes back draining until undrained.
	run("drain", "--node", "web1-8080")
	if err := store.StopNode(ctx, db.Pool, "web1-8080"); err != nil {
		t.Fatal(err)
	}
	if out := run("list"); !strings.Contains(out, "stopped, draining") {
		t.Fatalf("list after a clean stop: %q", out)
	}
	if out := run("drain", "--node", "web1-8080", "--wait"); !strings.Contains(out, "no room left") {
		t.Fatalf("drain --wait of a stopped node: %q", out)
	}
	if err := store.HeartbeatNode(ctx, db.Pool, store.Node{ID: "web1-8080", SignalingURL: "ws://10.0.0.1:8080/api/v1/signal", MediaAddress: "10.0.0.1"}, true); err != nil {
		t.Fatal(err)
	}
	if out := run("list"); !strings.Contains(out, "draining") || strings.Contains(out, "stopped") {
		t.Fatalf("list after the restart: %q", out)
	}
	// A running node cannot be forgotten; a stopped one can.
	out.Reset()
	if err := runNode(ctx, append([]string{"forget", "--node", "web1-8080"}, common...), &out); !errors.Is(err, store.ErrNodeAlive) {
		t.Fatalf("forgetting a running node: %v", err)
	}
	if err := store.StopNode(ctx, db.Pool, "web1-8080"); err != nil {
		t.Fatal(err)
	}
	run("forget", "--node", "web1-8080")
	if out := run("list"); strings.Contains(out, "web1-8080") {
		t.Fatalf("list after forget: %q", out)
	}
}
