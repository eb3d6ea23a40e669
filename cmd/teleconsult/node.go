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

// runNode lists, drains, undrains and forgets the nodes sharing the
// database.
func runNode(ctx context.Context, args []string, out io.Writer) error {
	const use = "usage: teleconsult node list | drain [--node ID] [--wait] | undrain [--node ID] | forget --node ID"
	if len(args) == 0 {
		return errors.New(use)
	}
	var cfg Config
	var wait bool
	fs := flag.NewFlagSet("node "+args[0], flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\n\n%s\nflags:\n", use, fmt.Sprintf(nodeHelp, cluster.JoinGrace))
		fs.PrintDefaults()
	}
	bindCommon(fs, &cfg)
	bindNode(fs, &cfg)
	fs.StringVar(&cfg.Addr, "addr", envOr("ADDR", ":8080"), "listen address of this host's node, for the default node id (ADDR)")
	fs.StringVar(&cfg.NodeID, "node", cfg.NodeID, "the node (default NODE_ID of this host)")
	if args[0] == "drain" {
		fs.BoolVar(&wait, "wait", false, fmt.Sprintf("return once the node's consults are over: it reports no room, and no room was placed or joined on it "+
			"in the last %s plus two heartbeats without ending (a client about to connect)", cluster.JoinGrace))
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
			case n.Stopped:
				state = "stopped"
			case !n.Alive:
				state = "gone"
			}
			if n.Draining {
				if state == "live" {
					state = "draining"
				} else {
					state += ", draining"
				}
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
	case "forget":
		if err := cluster.Forget(ctx, db, id, cfg.NodeHeartbeat); err != nil {
			return err
		}
		fmt.Fprintf(out, "node %s: forgotten\n", id)
		return nil
	}
	return errors.New(use)
}

// nodeHelp explains what the node commands promise.
const nodeHelp = `A drained node takes no new consult; its running consults finish there.
The drain lasts until "node undrain", also when the node is stopped and
started again under the same NODE_ID.

drain --wait returns once the node's consults are over: the node reports
no room, and no room was placed on it or joined there in the last %s
plus two heartbeats without ending since (a participant who just got a
join token and is about to connect). It returns at once for a stopped
node.

forget removes the record of a node that is stopped or gone for good; it
refuses a running node.
`
