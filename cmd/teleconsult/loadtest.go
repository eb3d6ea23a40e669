package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"teleconsult/loadtest"
	"teleconsult/server"
)

// runLoadtest opens N concurrent 1:1 consults against a running server
// with Pion clients and prints the report. It needs the server's
// SECRET_KEY (or its DATA_DIR) to admit its synthetic participants.
func runLoadtest(ctx context.Context, args []string) error {
	var cfg Config
	var url string
	var rooms, pid, bitrate int
	var dur time.Duration
	var simulcast bool
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.StringVar(&cfg.DataDir, "data-dir", envOr("DATA_DIR", ".data"), "directory holding the server's generated secret (DATA_DIR)")
	fs.StringVar(&url, "signal-url", "ws://localhost:8080/api/v1/signal", "the server's signalling WebSocket URL")
	fs.IntVar(&rooms, "rooms", 10, "concurrent 1:1 consultations")
	fs.DurationVar(&dur, "duration", 20*time.Second, "measurement window after everyone joined")
	fs.IntVar(&bitrate, "video-bitrate", 1_500_000, "camera bitrate in bit/s")
	fs.BoolVar(&simulcast, "simulcast", false, "publish three simulcast layers")
	fs.IntVar(&pid, "server-pid", 0, "the server's process id, to read its CPU time from /proc")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if rooms < 1 {
		return errors.New("--rooms must be at least 1")
	}
	cfg.SecretKey = envOr("SECRET_KEY", "")
	secret, err := cfg.secret()
	if err != nil {
		return err
	}
	rep, err := loadtest.Run(ctx, loadtest.Config{SignalURL: url, Signer: server.JoinSigner(secret), Rooms: rooms,
		Duration: dur, VideoBitrate: bitrate, Simulcast: simulcast, ServerPID: pid})
	if err != nil {
		return err
	}
	fmt.Println(rep.String())
	return nil
}
