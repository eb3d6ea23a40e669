package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"teleconsult/store"
	"teleconsult/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func TestAdminCreate(t *testing.T) {
	url := storetest.NewURL(t)
	dir := t.TempDir()
	ctx := context.Background()
	var out bytes.Buffer
	args := []string{"create", "--database-url", url, "--data-dir", dir, "--role", "practitioner", "--email", "Dr.House@Example.test", "--name", "Dr House"}
	if err := runAdmin(ctx, args, strings.NewReader("a long enough secret\n"), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "created practitioner dr.house@example.test") {
		t.Errorf("output: %q", out.String())
	}
	if strings.Contains(out.String(), "a long enough secret") {
		t.Error("the password was echoed")
	}
	for name, tc := range map[string]struct {
		args  []string
		stdin string
	}{
		"patient role":  {[]string{"create", "--database-url", url, "--role", "patient", "--email", "p@example.test", "--name", "P"}, "a long enough secret\n"},
		"no password":   {[]string{"create", "--database-url", url, "--role", "admin", "--email", "a@example.test", "--name", "A"}, ""},
		"weak password": {[]string{"create", "--database-url", url, "--role", "admin", "--email", "a@example.test", "--name", "A"}, "short\n"},
		"duplicate":     {[]string{"create", "--database-url", url, "--role", "admin", "--email", "dr.house@example.test", "--name", "A"}, "a long enough secret\n"},
		"no email":      {[]string{"create", "--database-url", url, "--role", "admin", "--name", "A"}, "a long enough secret\n"},
		"no subcommand": {[]string{}, ""},
	} {
		if err := runAdmin(ctx, tc.args, strings.NewReader(tc.stdin), &out); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	db, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	db.Pool.QueryRow(ctx, `SELECT count(*) FROM accounts`).Scan(&n)
	if n != 1 {
		t.Errorf("%d accounts after one good and several bad creates", n)
	}
}

func TestDemoIsIdempotent(t *testing.T) {
	url := storetest.NewURL(t)
	dir := t.TempDir()
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := runDemo(ctx, []string{"--database-url", url, "--data-dir", dir}); err != nil {
			t.Fatalf("demo run %d: %v", i+1, err)
		}
	}
	db, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, a := range demoAccounts {
		acct, _, err := store.AccountByEmail(ctx, db.Pool, a.email)
		if err != nil || acct.Role != a.role {
			t.Errorf("demo account %s: %+v %v", a.email, acct, err)
		}
	}
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestServeStopsCleanly(t *testing.T) {
	url := storetest.NewURL(t)
	addr := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runServe(ctx, []string{"--database-url", url, "--data-dir", t.TempDir(), "--addr", addr})
	}()
	var ok bool
	for i := 0; i < 100 && !ok; i++ {
		resp, err := http.Get(fmt.Sprintf("http://%s/readyz", addr))
		if err == nil {
			resp.Body.Close()
			ok = resp.StatusCode == 200
		}
		if !ok {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !ok {
		t.Fatal("server never became ready")
	}
	cancel() // what Ctrl-C does
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
	if _, err := http.Get(fmt.Sprintf("http://%s/healthz", addr)); err == nil {
		t.Error("still serving after shutdown")
	}
}

func TestServeTLSWithCertificateFiles(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)

	url := storetest.NewURL(t)
	addr := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- runServe(ctx, []string{"--database-url", url, "--data-dir", dir, "--addr", addr,
			"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--base-url", "https://" + addr})
	}()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	var resp *http.Response
	for i := 0; i < 100; i++ {
		if resp, err = client.Get("https://" + addr + "/healthz"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.TLS == nil || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("HTTPS without HSTS: %v", resp.Header)
	}
	cancel()
	<-done
}
