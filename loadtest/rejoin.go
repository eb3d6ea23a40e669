package loadtest

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/pion/webrtc/v4"
)

// publishedTrack is a local track and its keyframe group (-1: audio).
type publishedTrack struct {
	track *webrtc.TrackLocalStaticRTP
	group int
}

// failoverDeadline bounds the whole reconnection after a lost node: the
// service promises a consult resumes within 10 seconds.
const failoverDeadline = 10 * time.Second

// final reports whether a close means the session is over for good (the
// consult ended, the participant was refused or replaced), not that its
// node went away.
func final(err error) bool {
	var ce *CloseError
	if !errors.As(err, &ce) {
		return false // the socket failed: the node may be gone
	}
	switch ce.Code {
	case 1001, 1006:
		return false
	}
	return true
}

// Failover is one reconnection after the socket dropped.
type Failover struct {
	Lost time.Time // the socket dropped
	// Done is when the session was back (Err nil) or given up; zero
	// while the client is still trying.
	Done time.Time
	// Rejoined is true when the session was joined again through Rejoin
	// (its node was gone), false when it was resumed on its node.
	Rejoined bool
	Err      error
}

// Failovers returns the client's reconnections so far, oldest first.
func (c *Client) Failovers() []Failover {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.failovers)
}

// failover tries to resume the session on its node, then asks for a new
// placement and joins there, until failoverDeadline.
func (c *Client) failover() {
	c.mu.Lock()
	c.failovers = append(c.failovers, Failover{Lost: time.Now()})
	i := len(c.failovers) - 1
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), failoverDeadline)
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	rctx, rcancel := context.WithTimeout(ctx, time.Second)
	err := c.Resume(rctx)
	rcancel()
	rejoined := err != nil
	for err != nil && ctx.Err() == nil {
		var url, token string
		if url, token, err = c.cfg.Rejoin(ctx); err == nil {
			if err = c.Rejoin(ctx, url, token); err == nil {
				break
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	c.mu.Lock()
	c.failovers[i].Done, c.failovers[i].Rejoined, c.failovers[i].Err = time.Now(), rejoined, err
	c.mu.Unlock()
	ev := Event{Type: "rejoined", Raw: map[string]any{}}
	if err != nil {
		ev = Event{Type: "closed", Raw: map[string]any{"error": err}}
	}
	select {
	case c.Events <- ev:
	default:
	}
}

// Rejoin joins the session again at signalURL with token, as a fresh
// participant there (new peer connections), and publishes the same tracks
// again, so that media flows once the other side is there too.
func (c *Client) Rejoin(ctx context.Context, signalURL, token string) error {
	if c.cfg.Simulcast {
		return errors.New("loadtest: rejoin does not support simulcast")
	}
	up, down, err := c.newPeerConnections()
	if err != nil {
		return err
	}
	for _, p := range c.published {
		tr, err := up.AddTransceiverFromTrack(p.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			up.Close()
			down.Close()
			return err
		}
		var onPLI func()
		if p.group >= 0 {
			g := p.group
			onPLI = func() { c.requestKeyframe(g) }
		}
		go drainRTCP(tr.Sender(), onPLI)
	}
	c.DropSocket()
	c.wmu.Lock()
	oldUp, oldDown := c.up, c.down
	c.up, c.down = up, down
	c.cfg.SignalURL, c.cfg.Token = signalURL, token
	c.wmu.Unlock()
	oldUp.Close()
	oldDown.Close()
	c.mu.Lock()
	c.closeErr = nil
	c.mu.Unlock()
	if err := c.connect(ctx, ""); err != nil {
		return err
	}
	if len(c.published) > 0 {
		return c.offerUp(false)
	}
	return nil
}
