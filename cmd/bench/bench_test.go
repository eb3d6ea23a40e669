package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestMain doubles as the SFU child process when the harness re-executes
// the test binary.
func TestMain(m *testing.M) {
	if os.Getenv(envSFUAddr) != "" {
		serveSFU()
		return
	}
	os.Exit(m.Run())
}

// TestQuickReport runs every section at tiny sizes and checks that the
// report carries the figures the issue names, as numbers.
func TestQuickReport(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL and about 40 s")
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := run(ctx, options{Quick: true, Out: out, Runs: 3}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, key := range [][2]string{
		{"sfu", "cpu_ms_per_stream_second"}, {"sfu", "max_rooms"}, {"sfu", "join_p95_ms"},
		{"booking", "per_second"}, {"booking", "p99_ms"}, {"booking", "pgbench_tps"},
		{"search", "p95_ms_150k"}, {"rx", "signed_per_second"},
	} {
		sec, ok := doc[key[0]].(map[string]any)
		if !ok {
			t.Errorf("report.json has no %q object", key[0])
			continue
		}
		if _, ok := sec[key[1]].(float64); !ok {
			t.Errorf("report.json: %s.%s = %v, want a number", key[0], key[1], sec[key[1]])
		}
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil || len(md) < 1000 {
		t.Fatalf("report.md: %d bytes, %v", len(md), err)
	}
	for _, p := range doc["phases"].([]any) {
		if e := p.(map[string]any)["error"]; e != nil {
			t.Errorf("phase %v failed: %v", p.(map[string]any)["name"], e)
		}
	}
}
