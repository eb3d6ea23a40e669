package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"teleconsult/loadtest"
	"teleconsult/server"
)

// runLoadtest opens N concurrent 1:1 consults against running nodes with
// Pion clients and prints the report. It needs the servers' SECRET_KEY
// (or their DATA_DIR) to admit its synthetic participants. Rooms are
// spread over the signalling URLs; when a node is lost, both clients of
// each of its rooms join again on the same live one.
func runLoadtest(ctx context.Context, args []string, out io.Writer) error {
	var cfg Config
	var urls signalURLs
	var rooms, pid, bitrate int
	var dur time.Duration
	var simulcast bool
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.StringVar(&cfg.DataDir, "data-dir", envOr("DATA_DIR", ".data"), "directory holding the server's generated secret (DATA_DIR)")
	fs.Var(&urls, "signal-url", "a node's signalling WebSocket URL; repeat it or separate URLs with commas to spread the rooms over several nodes (default ws://localhost:8080/api/v1/signal)")
	fs.IntVar(&rooms, "rooms", 10, "concurrent 1:1 consultations")
	fs.DurationVar(&dur, "duration", 20*time.Second, "measurement window after everyone joined")
	fs.IntVar(&bitrate, "video-bitrate", 1_500_000, "camera bitrate in bit/s")
	fs.BoolVar(&simulcast, "simulcast", false, "publish three simulcast layers (such clients do not re-join after a node loss)")
	fs.IntVar(&pid, "server-pid", 0, "a server's process id, to read its CPU time from /proc")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if rooms < 1 {
		return errors.New("--rooms must be at least 1")
	}
	if len(urls) == 0 {
		urls = signalURLs{"ws://localhost:8080/api/v1/signal"}
	}
	cfg.SecretKey = envOr("SECRET_KEY", "")
	secret, err := cfg.secret()
	if err != nil {
		return err
	}
	rep, err := loadtest.Run(ctx, loadtest.Config{SignalURLs: urls, Signer: server.JoinSigner(secret), Rooms: rooms,
		Duration: dur, VideoBitrate: bitrate, Simulcast: simulcast, ServerPID: pid})
	if err != nil {
		return err
	}
	_, err = fmt.Fprint(out, rep.String())
	return err
}

// signalURLs is the repeatable, comma-separated --signal-url flag.
type signalURLs []string

func (u *signalURLs) String() string { return strings.Join(*u, ",") }

func (u *signalURLs) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v == "" {
			return errors.New("empty signalling URL")
		}
		*u = append(*u, v)
	}
	return nil
}
