package httpapi

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"teleconsult/live"
)

func TestEventStream(t *testing.T) {
	e := newEnv(t)
	hub := live.NewHub(e.DB)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go hub.Run(ctx)
	<-hub.Ready()
	e.API.Live = hub
	e.start()

	if st := e.client().json("GET", "/api/v1/events", nil, nil); st != 401 {
		t.Fatalf("events without session: %d", st)
	}
	c, doctor := e.user("practitioner", "Dr Who")
	req, _ := http.NewRequestWithContext(ctx, "GET", e.Srv.URL+"/api/v1/events", nil)
	resp, err := c.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	lines := make(chan string, 16)
	go func() {
		s := bufio.NewScanner(resp.Body)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	// The stream is subscribed once its first bytes arrive.
	<-lines
	live.Publish(ctx, e.DB.Pool, live.Event{AccountID: doctor.ID, Kind: "patient.waiting", Data: map[string]string{"appointment_id": "x"}})
	deadline := time.After(5 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("stream closed")
			}
			if strings.HasPrefix(l, "data: ") && strings.Contains(l, `"patient.waiting"`) {
				return
			}
		case <-deadline:
			t.Fatal("no event arrived")
		}
	}
}
