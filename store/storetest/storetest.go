// Package storetest gives each test package its own fresh, migrated
// PostgreSQL database on a real server, and each test that asks for one a
// private clone of it.
//
// The server is TEST_DATABASE_URL (an administrative connection, e.g.
// postgres://postgres@127.0.0.1:5432/postgres); `make test` sets it.
//
// Use it from TestMain so the databases are dropped at the end:
//
//	func TestMain(m *testing.M) { storetest.Main(m) }
//
// then db := storetest.New(t) in each test.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"teleconsult/store"
)

// DefaultAdminURL is used when TEST_DATABASE_URL is not set.
const DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

var (
	mu        sync.Mutex
	template  string
	templErr  error
	templOnce sync.Once
	created   []string
)

// AdminURL returns the administrative connection string.
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultAdminURL
}

// URLFor returns the connection string of database name on the test server.
func URLFor(name string) string {
	u, err := url.Parse(AdminURL())
	if err != nil {
		panic(fmt.Sprintf("storetest: TEST_DATABASE_URL: %v", err))
	}
	u.Path = "/" + name
	return u.String()
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func admin(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return fmt.Errorf("storetest: connect to %s: %w (is PostgreSQL running? `make test` starts one)", AdminURL(), err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func makeTemplate() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := randomName("tc_tmpl_")
	if err := admin(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	mu.Lock()
	created = append(created, name)
	mu.Unlock()
	db, err := store.Open(ctx, URLFor(name))
	if err != nil {
		return "", err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return "", err
	}
	return name, nil
}

// NewURL creates a fresh migrated database for t, dropped when t ends,
// and returns its connection string (for a child process, say).
func NewURL(t testing.TB) string {
	t.Helper()
	templOnce.Do(func() { template, templErr = makeTemplate() })
	if templErr != nil {
		t.Fatalf("storetest: %v", templErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := randomName("tc_test_")
	if err := admin(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, template)); err != nil {
		t.Fatalf("storetest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := admin(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("storetest: drop %s: %v", name, err)
		}
	})
	return URLFor(name)
}

// New creates a fresh migrated database for t and returns an open pool to
// it; both are closed and dropped when t ends.
func New(t testing.TB) *store.DB {
	t.Helper()
	u := NewURL(t)
	db, err := store.Open(context.Background(), u)
	if err != nil {
		t.Fatalf("storetest: open: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

// Main runs the package's tests and then drops the template database.
func Main(m *testing.M) {
	code := m.Run()
	mu.Lock()
	names := created
	mu.Unlock()
	for _, n := range names {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = admin(ctx, "DROP DATABASE IF EXISTS "+n+" WITH (FORCE)")
		cancel()
	}
	os.Exit(code)
}
