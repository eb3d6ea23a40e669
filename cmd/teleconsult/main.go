// Command teleconsult is the whole service in one binary.
//
//	teleconsult [serve]            serve the web, the API and the video consults
//	teleconsult migrate            apply the database migrations
//	teleconsult demo               load the demo data (idempotent)
//	teleconsult admin create ...   create a practitioner, pharmacist or admin
//	teleconsult keys rotate        re-wrap every data key under a new master key
//	teleconsult audit verify       check the audit log's hash chain
//	teleconsult loadtest           measure the video service under load
//	teleconsult node list|drain|undrain|forget  the nodes sharing the database
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var err error
	switch cmd {
	case "serve":
		err = runServe(ctx, args)
	case "migrate":
		err = runMigrate(ctx, args)
	case "demo":
		err = runDemo(ctx, args)
	case "admin":
		err = runAdmin(ctx, args, os.Stdin, os.Stdout)
	case "keys":
		err = runKeys(ctx, args)
	case "audit":
		err = runAudit(ctx, args)
	case "loadtest":
		err = runLoadtest(ctx, args, os.Stdout)
	case "node":
		err = runNode(ctx, args, os.Stdout)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		err = fmt.Errorf("unknown command %q\n\n%s", cmd, usage)
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "teleconsult:", err)
		os.Exit(1)
	}
}

const usage = `usage: teleconsult <command> [flags]

commands:
  serve                 serve the web, the API and the video consults (default)
  migrate               apply the database migrations
  demo                  load the demo data (idempotent)
  admin create --role practitioner|pharmacist|admin --email E --name N
                        create an account; the password is read from standard input
  keys rotate           add a new master key and re-wrap every data key under it
  audit verify          check the audit log's hash chain
  loadtest              measure the video service under load
  node list             the nodes sharing the database, their load and state
  node drain [--node ID] [--wait]
                        take no new consult on a node (default: this host's
                        NODE_ID); --wait returns once its rooms are done
  node undrain [--node ID]
                        let a drained node take consults again (a drain
                        lasts across the node's restarts until then)
  node forget --node ID remove the record of a node stopped or gone for good

Run "teleconsult <command> -h" for the flags of a command.
`

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
