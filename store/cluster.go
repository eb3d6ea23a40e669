package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/problem"
)

// Node is one `teleconsult serve` process as the others see it: where its
// signalling and media are, and how loaded it was at its last heartbeat.
type Node struct {
	ID           string    `db:"id"`
	SignalingURL string    `db:"signaling_url"`
	MediaAddress string    `db:"media_address"`
	Rooms        int       `db:"rooms"`
	Participants int       `db:"participants"`
	CPU          float64   `db:"cpu"`       // share of all cores, 0..1
	Bandwidth    int64     `db:"bandwidth"` // forwarded bits per second
	Draining     bool      `db:"draining"`
	StartedAt    time.Time `db:"started_at"`
	HeartbeatAt  time.Time `db:"heartbeat_at"`
	// Placed counts the rooms placed on the node and not finished; Alive
	// says whether it refreshed its row within the gone interval and did
	// not stop; Stopped, whether its last process stopped cleanly.
	Placed  int  `db:"placed"`
	Alive   bool `db:"alive"`
	Stopped bool `db:"stopped"`
}

const nodeColumns = `n.id, n.signaling_url, n.media_address, n.rooms, n.participants, n.cpu, n.bandwidth, n.draining,
	n.started_at, n.heartbeat_at,
	(SELECT count(*) FROM room_placements p
		WHERE p.node_id = n.id AND p.finished_at IS NULL AND p.placed_at >= n.started_at AND n.stopped_at IS NULL)::int AS placed,
	n.stopped_at IS NULL AND n.heartbeat_at > now() - $1::interval AS alive,
	n.stopped_at IS NOT NULL AS stopped`

// liveNode is the condition on nodes n under which n may hold rooms, with
// the gone interval as $1.
const liveNode = `n.stopped_at IS NULL AND n.heartbeat_at > now() - $1::interval`

// HeartbeatNode registers node n or refreshes its row with its load, and
// clears the stopped mark of an earlier process under the same id. It
// keeps the draining flag an operator set, across restarts too. first
// marks the first heartbeat of a process: the node's start time is
// reset, so that rooms placed on an earlier process under the same id
// (killed, or stopped while calls ran) stop counting as its load until
// someone joins them again (see PlaceRoom).
func HeartbeatNode(ctx context.Context, q Q, n Node, first bool) error {
	_, err := q.Exec(ctx, `INSERT INTO nodes (id, signaling_url, media_address, rooms, participants, cpu, bandwidth)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (id) DO UPDATE SET signaling_url = $2, media_address = $3, rooms = $4, participants = $5,
			cpu = $6, bandwidth = $7, heartbeat_at = now(), stopped_at = NULL,
			started_at = CASE WHEN $8 THEN now() ELSE nodes.started_at END`,
		n.ID, n.SignalingURL, n.MediaAddress, n.Rooms, n.Participants, n.CPU, n.Bandwidth, first)
	if err != nil {
		return fmt.Errorf("store: node heartbeat: %w", err)
	}
	return nil
}

// StopNode marks node id stopped (a clean shutdown): it is no longer
// alive, so its rooms are placed again at their next join, but its row
// and its draining flag stay for its next start under the same id.
func StopNode(ctx context.Context, q Q, id string) error {
	if _, err := q.Exec(ctx, `UPDATE nodes SET stopped_at = now(), rooms = 0, participants = 0, cpu = 0, bandwidth = 0
		WHERE id = $1`, id); err != nil {
		return fmt.Errorf("store: stop node: %w", err)
	}
	return nil
}

// ErrNodeAlive is returned when a live node's row would be deleted: it
// would register again, undrained, at its next heartbeat.
var ErrNodeAlive = problem.New(problem.Conflict, "node_alive", "the node is running; stop it first")

// DeleteNode removes the row of node id, a node removed from the cluster;
// it refuses a node that is alive (heartbeat within gone, not stopped).
func DeleteNode(ctx context.Context, q Q, id string, gone time.Duration) error {
	var alive bool
	err := q.QueryRow(ctx, `WITH gone AS (
			DELETE FROM nodes n WHERE n.id = $2 AND NOT (`+liveNode+`) RETURNING false AS alive)
		SELECT alive FROM gone
		UNION ALL SELECT true FROM nodes n WHERE n.id = $2 AND `+liveNode, gone, id).Scan(&alive)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return ErrNotFound.Withf("no node %q is registered", id)
	case err != nil:
		return fmt.Errorf("store: delete node: %w", err)
	case alive:
		return ErrNodeAlive.Withf("node %q is running; stop it before removing it", id)
	}
	return nil
}

// Nodes lists every registered node, alive or not, by id; a node is alive
// when it refreshed its row within gone.
func Nodes(ctx context.Context, q Q, gone time.Duration) ([]Node, error) {
	rows, err := q.Query(ctx, `SELECT `+nodeColumns+` FROM nodes n ORDER BY n.id`, gone)
	if err != nil {
		return nil, fmt.Errorf("store: nodes: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[Node])
}

// SetNodeDraining sets or clears node id's draining flag.
func SetNodeDraining(ctx context.Context, q Q, id string, draining bool) error {
	tag, err := q.Exec(ctx, `UPDATE nodes SET draining = $2 WHERE id = $1`, id, draining)
	if err != nil {
		return fmt.Errorf("store: drain node: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound.Withf("no node %q is registered", id)
	}
	return nil
}

// ErrNoNode is returned when no live, non-draining node can take a room.
var ErrNoNode = problem.New(problem.Unavailable, "no_node", "no video node is available; please try again in a moment")

// PlaceRoom returns the node room lives on, placing it first if needed:
// an open placement on a live node stays where it is (even if that node
// drains, so that running consults finish there); otherwise the live,
// non-draining node with the lowest score gets it. score ranks a node;
// lower is better. Run it in a transaction: it takes advisory locks
// held until commit, so that concurrent joins of a room agree and
// concurrent placements see each other.
func PlaceRoom(ctx context.Context, tx pgx.Tx, room string, gone time.Duration, score func(Node) float64) (Node, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('tc_room_placement'), hashtext($1))`, room); err != nil {
		return Node{}, fmt.Errorf("store: lock room placement: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT `+nodeColumns+` FROM nodes n
		JOIN room_placements p ON p.node_id = n.id AND p.room = $2 AND p.finished_at IS NULL
		WHERE `+liveNode, gone, room)
	if err != nil {
		return Node{}, fmt.Errorf("store: room placement: %w", err)
	}
	cur, err := pgx.CollectRows(rows, pgx.RowToStructByName[Node])
	if err != nil {
		return Node{}, fmt.Errorf("store: room placement: %w", err)
	}
	if len(cur) == 1 {
		// Every join refreshes placed_at: a room placed before its node
		// restarted counts as that node's load once more, and a drain
		// waits for the client that is about to connect (see
		// RecentPlacements).
		if _, err := tx.Exec(ctx, `UPDATE room_placements SET placed_at = now() WHERE room = $1`, room); err != nil {
			return Node{}, fmt.Errorf("store: room placement: %w", err)
		}
		return cur[0], nil
	}
	// Why one lock for every new placement: joins of different rooms in
	// the same instant must see each other's choice, or they all pick the
	// node that looked emptiest at the last heartbeat.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('tc_room_placement'), 0)`); err != nil {
		return Node{}, fmt.Errorf("store: lock placements: %w", err)
	}
	rows, err = tx.Query(ctx, `SELECT `+nodeColumns+` FROM nodes n
		WHERE `+liveNode+` AND NOT n.draining ORDER BY n.id`, gone)
	if err != nil {
		return Node{}, fmt.Errorf("store: candidate nodes: %w", err)
	}
	nodes, err := pgx.CollectRows(rows, pgx.RowToStructByName[Node])
	if err != nil {
		return Node{}, fmt.Errorf("store: candidate nodes: %w", err)
	}
	if len(nodes) == 0 {
		return Node{}, ErrNoNode
	}
	best := nodes[0]
	for _, n := range nodes[1:] {
		if score(n) < score(best) {
			best = n
		}
	}
	_, err = tx.Exec(ctx, `INSERT INTO room_placements (room, node_id) VALUES ($1, $2)
		ON CONFLICT (room) DO UPDATE SET node_id = $2, placed_at = now(), finished_at = NULL`, room, best.ID)
	if err != nil {
		return Node{}, fmt.Errorf("store: place room: %w", err)
	}
	best.Placed++
	return best, nil
}

// RoomAdmitted records that room's patient was admitted (once).
func RoomAdmitted(ctx context.Context, q Q, room string) error {
	_, err := q.Exec(ctx, `UPDATE room_placements SET admitted_at = coalesce(admitted_at, now()) WHERE room = $1`, room)
	if err != nil {
		return fmt.Errorf("store: room admitted: %w", err)
	}
	return nil
}

// RoomWasAdmitted reports whether room's patient was admitted before.
func RoomWasAdmitted(ctx context.Context, q Q, room string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM room_placements WHERE room = $1 AND admitted_at IS NOT NULL)`, room).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("store: room admitted: %w", err)
	}
	return ok, nil
}

// FinishRoom marks room's placement finished on node (it ended or
// emptied), so that it no longer counts as that node's load.
func FinishRoom(ctx context.Context, q Q, room, node string) error {
	_, err := q.Exec(ctx, `UPDATE room_placements SET finished_at = now() WHERE room = $1 AND node_id = $2 AND finished_at IS NULL`, room, node)
	if err != nil {
		return fmt.Errorf("store: finish room: %w", err)
	}
	return nil
}

// RecentPlacements counts the rooms placed or joined on node id within
// the last recent and not finished: rooms whose clients may not have
// reached the node yet, so that its last heartbeat does not count them.
func RecentPlacements(ctx context.Context, q Q, id string, recent time.Duration) (int, error) {
	var n int
	err := q.QueryRow(ctx, `SELECT count(*) FROM room_placements
		WHERE node_id = $1 AND finished_at IS NULL AND placed_at > now() - $2::interval`, id, recent).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: recent placements: %w", err)
	}
	return n, nil
}
