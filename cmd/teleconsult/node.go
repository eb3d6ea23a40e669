package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"teleconsult/cluster"
	"teleconsult/store"
)

// runNode lists, drains and undrains the nodes sharing the database.
func runNode(ctx context.Context, args []string, out io.Writer) error {
	const use = "usage: teleconsult node list | drain [--node ID] [--wait] | undrain [--node ID]"
	if len(args) == 0 {
		return errors.New(use)
	}
	var cfg Config
	var wait bool
	fs := flag.NewFlagSet("node "+args[0], flag.ContinueOnError)
	bindCommon(fs, &cfg)
	bindNode(fs, &cfg)
	fs.StringVar(&cfg.Addr, "addr", envOr("ADDR", ":8080"), "listen address of this host's node, for the default node id (ADDR)")
	fs.StringVar(&cfg.NodeID, "node", cfg.NodeID, "the node (default NODE_ID of this host)")
	if args[0] == "drain" {
		fs.BoolVar(&wait, "wait", false, "return once the node has no room left")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := cfg.finish(); err != nil {
		return err
	}
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	id := cfg.nodeID()
	switch args[0] {
	case "list":
		nodes, err := store.Nodes(ctx, db.Pool, 3*cfg.NodeHeartbeat)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSIGNALLING URL\tROOMS\tPARTICIPANTS\tCPU\tBANDWIDTH\tSTATE\tAGE\tLAST SEEN")
		for _, n := range nodes {
			state := "live"
			switch {
			case !n.Alive:
				state = "gone"
			case n.Draining:
				state = "draining"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f%%\t%.1f Mbit/s\t%s\t%s\t%s ago\n", n.ID, n.SignalingURL, max(n.Rooms, n.Placed), n.Participants,
				100*n.CPU, float64(n.Bandwidth)/1e6, state, time.Since(n.StartedAt).Round(time.Second), time.Since(n.HeartbeatAt).Round(100*time.Millisecond))
		}
		return tw.Flush()
	case "drain", "undrain":
		if err := cluster.SetDraining(ctx, db, id, args[0] == "drain"); err != nil {
			return err
		}
		fmt.Fprintf(out, "node %s: %sed\n", id, args[0])
		if wait {
			if err := cluster.WaitDrained(ctx, db, id, cfg.NodeHeartbeat); err != nil {
				return err
			}
			fmt.Fprintf(out, "node %s: no room left\n", id)
		}
		return nil
	}
	return errors.New(use)
}
