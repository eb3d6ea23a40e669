package httpapi

import (
	"net/http"
	"strings"
	"sync"
	"time"

	"teleconsult/problem"
)

// Why these numbers: a person using the pages meets a "not found" now and
// then, never thirty times a minute; someone walking through guessed ids
// (the 2020 leak) does, and is stopped after thirty. An API token's
// software gets two requests a second on average, bursts included.
const (
	defaultProbeBudget = 30
	probeWindow        = time.Minute
	tokenBudget        = 120
	tokenWindow        = time.Minute
	tidyInterval       = 5 * time.Minute
)

// ErrSlowDown is the answer to a caller over its budget.
var ErrSlowDown = problem.New(problem.TooMany, "rate_limited", "too many requests; please slow down")

// window counts events per key over a sliding window.
type window struct {
	limit  int
	period time.Duration

	mu       sync.Mutex // guards hits and lastTidy
	hits     map[string][]time.Time
	lastTidy time.Time
}

func newWindow(limit int, period time.Duration) *window {
	return &window{limit: limit, period: period, hits: map[string][]time.Time{}}
}

// trimLocked drops the hits of key older than the window; the caller
// holds w.mu.
func (w *window) trimLocked(key string, now time.Time) []time.Time {
	h := w.hits[key]
	cut := now.Add(-w.period)
	i := 0
	for i < len(h) && !h[i].After(cut) {
		i++
	}
	h = h[i:]
	if len(h) == 0 {
		delete(w.hits, key)
	} else {
		w.hits[key] = h
	}
	if now.Sub(w.lastTidy) > tidyInterval {
		w.lastTidy = now
		for k, v := range w.hits {
			if len(v) == 0 || !v[len(v)-1].After(cut) {
				delete(w.hits, k)
			}
		}
	}
	return h
}

// over reports whether key has used its budget, and how long until a
// slot frees up.
func (w *window) over(key string, now time.Time) (bool, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.trimLocked(key, now)
	if len(h) >= w.limit {
		return true, h[0].Add(w.period).Sub(now)
	}
	return false, 0
}

// add records one event for key.
func (w *window) add(key string, now time.Time) {
	w.mu.Lock()
	w.trimLocked(key, now)
	w.hits[key] = append(w.hits[key], now)
	w.mu.Unlock()
}

func slowDown(wait time.Duration) error {
	e := *ErrSlowDown
	e.RetryAfter = int(wait.Seconds()) + 1
	return &e
}

// principal names who is asking: a token, an account, or an address.
func (a *API) principal(r *http.Request) string {
	if t := a.apiToken(r); t != nil {
		return "token:" + t.ID
	}
	if acct, err := a.sessionAccount(r); err == nil {
		return "account:" + acct.ID
	}
	return "ip:" + a.clientIP(r)
}

// withLimits stops enumeration (too many "not found" answers) and holds
// each API token to its request budget.
func (a *API) withLimits(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		who := a.principal(r)
		if t := a.apiToken(r); t != nil {
			if over, wait := a.tokenHits.over(t.ID, now); over {
				writeError(w, r, slowDown(wait))
				return
			}
			a.tokenHits.add(t.ID, now)
		}
		if over, wait := a.probes.over(who, now); over {
			writeError(w, r, slowDown(wait))
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == http.StatusNotFound && (strings.HasPrefix(r.URL.Path, "/api/") || strings.HasPrefix(r.URL.Path, "/fhir/")) {
			a.probes.add(who, now)
		}
	})
}
