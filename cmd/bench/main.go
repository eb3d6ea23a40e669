// Command bench measures the whole service on this machine and writes one
// report, out/bench/report.md and out/bench/report.json: the SFU under a
// sweep of 1:1 consults, booking over HTTP next to pgbench, directory
// search at three sizes, prescription signing and signalling joins.
//
// `make bench` runs it after obtaining PostgreSQL; TEST_DATABASE_URL is
// the administrative connection in which it creates (and drops) its own
// scratch databases. -quick runs every section at tiny sizes (under a
// minute), for the test that keeps the harness working.
//
// The SFU runs in a child process (this same binary, re-executed with
// BENCH_SFU_ADDR set) so that its CPU time is measured apart from the
// synthetic clients'.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/store/storetest"
)

// options are the command's flags.
type options struct {
	Quick   bool
	Out     string
	Profile bool
	Runs    int
	Only    string // comma-separated sections to run; empty: all
}

func main() {
	if os.Getenv(envSFUAddr) != "" {
		serveSFU()
		return
	}
	var o options
	flag.BoolVar(&o.Quick, "quick", false, "tiny sizes, under a minute (for the test)")
	flag.StringVar(&o.Out, "out", "out/bench", "directory of report.md, report.json and the profiles")
	flag.BoolVar(&o.Profile, "profile", false, "write CPU and allocation profiles of the SFU and booking runs")
	flag.IntVar(&o.Runs, "runs", 3, "runs per figure (the median and spread are over these)")
	flag.StringVar(&o.Only, "only", "", "run only these sections (comma-separated: sfu,signalling,booking,search,prescriptions)")
	flag.Parse()
	if o.Runs < 3 {
		o.Runs = 3
	}
	// A bound on the whole run, so that a stuck phase cannot hang `make bench`.
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	rep, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	fmt.Printf("report: %s, %s\n", filepath.Join(o.Out, "report.md"), filepath.Join(o.Out, "report.json"))
	_ = rep
}

// run measures every section and writes the report. A section that fails
// is reported as not measured, with its error; the others go on.
func run(ctx context.Context, o options) (*Report, error) {
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	rep := &Report{
		Started:  time.Now().UTC(),
		Machine:  machine(),
		Quick:    o.Quick,
		Runs:     o.Runs,
		Profiles: map[string]string{},
	}
	sections := []struct {
		name string
		fn   func(context.Context, options, *Report) error
	}{
		{"sfu", runSFU},
		{"signalling", runSignaling},
		{"booking", runBooking},
		{"search", runSearch},
		{"prescriptions", runRx},
	}
	for _, s := range sections {
		if o.Only != "" && !slices.Contains(strings.Split(o.Only, ","), s.name) {
			continue
		}
		t0 := time.Now()
		logf("== %s", s.name)
		err := s.fn(ctx, o, rep)
		d := time.Since(t0).Round(time.Second)
		rep.Phases = append(rep.Phases, Phase{Name: s.name, Seconds: d.Seconds(), Err: errText(err)})
		if err != nil {
			logf("%s failed after %v: %v", s.name, d, err)
		} else {
			logf("%s done in %v", s.name, d)
		}
	}
	rep.Finished = time.Now().UTC()
	if err := rep.write(o.Out); err != nil {
		return rep, err
	}
	return rep, nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// logf prints progress on stderr, so that a long run shows where it is.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Machine is what the figures were measured on.
type Machine struct {
	CPUModel  string `json:"cpu_model"`
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Load1     string `json:"load_average_at_start"`
}

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH, CPUModel: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.Load1 = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return m
}

// scratchDB creates a fresh database on the PostgreSQL of
// TEST_DATABASE_URL and returns its URL and a function that drops it.
func scratchDB(ctx context.Context, prefix string) (string, func(), error) {
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	name := prefix + hex.EncodeToString(b)
	admin := func(ctx context.Context, sql string) error {
		conn, err := pgx.Connect(ctx, storetest.AdminURL())
		if err != nil {
			return fmt.Errorf("connect to %s: %w (is PostgreSQL running? `make bench` starts one)", storetest.AdminURL(), err)
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := admin(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, err
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := admin(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			logf("drop %s: %v", name, err)
		}
	}
	return storetest.URLFor(name), drop, nil
}
