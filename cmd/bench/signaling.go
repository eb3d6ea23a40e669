package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"teleconsult/auth"
)

// joinOnce opens a signalling socket, sends hello with a fresh
// practitioner token for a room of its own, waits for welcome, then
// leaves and closes.
func joinOnce(ctx context.Context, c *sfuChild, room string) error {
	tok, err := c.signer.Sign(auth.JoinClaims{Room: room, Participant: "doc-" + room, Name: "Dr Bench", Role: auth.RolePractitioner, Expires: time.Now().Add(5 * time.Minute)})
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ws, _, err := websocket.DefaultDialer.DialContext(dctx, "ws://"+c.addr+"/api/v1/signal", nil)
	if err != nil {
		return err
	}
	defer ws.Close()
	_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteJSON(map[string]any{"type": "hello", "version": 1, "token": tok}); err != nil {
		return err
	}
	_, data, err := ws.ReadMessage()
	if err != nil {
		return err
	}
	var m struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(data, &m); m.Type != "welcome" {
		return fmt.Errorf("expected welcome, got %.100s", data)
	}
	_ = ws.WriteJSON(map[string]any{"type": "leave"})
	_ = ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	return nil
}

// runSignaling measures WebSocket joins per second against the
// signalling server in its own process.
func runSignaling(ctx context.Context, o options, rep *Report) error {
	const workers = 16
	window := 4 * time.Second
	if o.Quick {
		window = 500 * time.Millisecond
	}
	child, err := startSFUChild(ctx)
	if err != nil {
		rep.section("Signalling", "Not measured: "+err.Error()+"\n")
		return err
	}
	defer child.close()
	var perSec, p50s, p99s []float64
	var failures int64
	var firstErr atomic.Value
	for run := range o.Runs {
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		var seq atomic.Int64
		prefix := "join-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
		start := time.Now()
		end := start.Add(window)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var local []time.Duration
				for time.Now().Before(end) && ctx.Err() == nil {
					t0 := time.Now()
					if err := joinOnce(ctx, child, prefix+strconv.FormatInt(seq.Add(1), 10)); err != nil {
						atomic.AddInt64(&failures, 1)
						firstErr.CompareAndSwap(nil, err.Error())
						continue
					}
					local = append(local, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		perSec = append(perSec, float64(len(lat))/elapsed.Seconds())
		p50s = append(p50s, percentileMs(lat, 50))
		p99s = append(p99s, percentileMs(lat, 99))
		logf("signalling run %d: %.0f joins/s, p50 %.1f ms", run+1, perSec[run], p50s[run])
		child.waitEmpty()
	}
	ps, p50, p99 := statOf(perSec), statOf(p50s), statOf(p99s)
	rep.put("signalling", "joins_per_second", ps.Median)
	rep.put("signalling", "join_p50_ms", p50.Median)
	rep.put("signalling", "join_p99_ms", p99.Median)
	rep.put("signalling", "failures", float64(failures))
	rep.row("Signalling", "WebSocket joins per second", "/s", ps, 0, "", "")
	rep.row("Signalling", "join (hello to welcome) p99", "ms", p99, 1, "", "")
	var b strings.Builder
	fmt.Fprintf(&b, "**What:** how many participants per second can enter a room through the signalling WebSocket. "+
		"**How:** %d concurrent workers, for %.1f s per run, each repeatedly opening a socket to the signalling server (in its own process, as for the SFU), "+
		"sending `hello` with a freshly signed practitioner join token for a room of its own, waiting for `welcome`, then sending `leave` and closing. "+
		"No media is negotiated: this is the cost of the WebSocket upgrade, the token check and the room bookkeeping.\n\n", workers, window.Seconds())
	fmt.Fprintf(&b, "| Figure | Median | Spread |\n|---|---:|---:|\n| joins per second | %s | %s |\n| join p50 (ms) | %s | %s |\n| join p99 (ms) | %s | %s |\n\n",
		ps.med(0), ps.spread(0), p50.med(2), p50.spread(2), p99.med(2), p99.spread(2))
	if failures > 0 {
		fmt.Fprintf(&b, "%d joins failed; the first: %v\n", failures, firstErr.Load())
	}
	if math.IsNaN(ps.Median) {
		return fmt.Errorf("no join measured")
	}
	rep.section("Signalling (WebSocket joins)", b.String())
	return nil
}
