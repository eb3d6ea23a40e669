package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"teleconsult/auth"
	"teleconsult/store"
	"teleconsult/store/storetest"
	"teleconsult/vault"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// testEnv is a real API on a fresh database. Domain tests set their
// service fields on API before calling start.
type testEnv struct {
	t    *testing.T
	DB   *store.DB
	API  *API
	Srv  *httptest.Server
	Logs *bytes.Buffer // everything the service logged
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	db := storetest.New(t)
	logs := &bytes.Buffer{}
	api := &API{
		DB:       db,
		Vault:    vault.NewForTest(t, db),
		Auth:     auth.NewService(db, auth.DefaultConfig, nil),
		Log:      slog.New(slog.NewJSONHandler(logs, nil)),
		BaseURL:  "http://127.0.0.1",
		Registry: prometheus.NewRegistry(),
	}
	return &testEnv{t: t, DB: db, API: api, Logs: logs}
}

// start serves the API (with extra routes, if any) on a loopback port.
func (e *testEnv) start(extra ...func(*http.ServeMux)) *testEnv {
	mux := http.NewServeMux()
	e.API.Routes(mux)
	for _, f := range extra {
		f(mux)
	}
	e.Srv = httptest.NewServer(e.API.Handler(mux))
	e.t.Cleanup(e.Srv.Close)
	return e
}

// client is a browser-like HTTP client with its own cookie jar.
type client struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (e *testEnv) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: e.t, base: e.Srv.URL, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request with body (JSON-encoded unless it is a string or
// []byte) and returns the response with its body read.
func (c *client) do(method, path string, body any) (*http.Response, []byte) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

// json sends a request and decodes the JSON answer into out (if not nil),
// returning the status code.
func (c *client) json(method, path string, body, out any) int {
	c.t.Helper()
	resp, b := c.do(method, path, body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

// errorCode returns the "error.code" of a JSON error body.
func errorCode(b []byte) string {
	var e errorBody
	_ = json.Unmarshal(b, &e)
	return e.Error.Code
}

const testPassword = "correct horse battery"

func randomEmail(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b) + "@example.test"
}

// user creates an account of role and returns a client logged in as it.
func (e *testEnv) user(role, name string) (*client, auth.Account) {
	e.t.Helper()
	acct, err := e.API.Auth.Create(context.Background(), role, randomEmail(role), testPassword, name, "en")
	if err != nil {
		e.t.Fatal(err)
	}
	c := e.client()
	if st := c.json("POST", "/api/v1/login", map[string]string{"email": acct.Email, "password": testPassword}, nil); st != 200 {
		e.t.Fatalf("login as %s: %d", role, st)
	}
	return c, acct
}
