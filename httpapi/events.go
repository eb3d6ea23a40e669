package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

func (a *API) eventRoutes(mux *http.ServeMux) {
	if a.Live == nil {
		return
	}
	mux.HandleFunc("GET /api/v1/events", a.events)
}

// heartbeat keeps proxies from closing an idle event stream and lets the
// server notice a gone browser.
const heartbeat = 25 * time.Second

// events streams the caller's live events as Server-Sent Events.
func (a *API) events(w http.ResponseWriter, r *http.Request) {
	acct, err := a.account(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	ch, stop := a.Live.Subscribe(acct.ID)
	defer stop()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 3000\n\n")
	if err := rc.Flush(); err != nil {
		return
	}
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
			fmt.Fprint(w, ": ping\n\n")
		case e := <-ch:
			b, _ := json.Marshal(e)
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.Kind, b)
		}
		rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
