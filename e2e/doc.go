// Package e2e holds the browser journeys: `go test` starts the whole
// service (package server) on a fresh PostgreSQL database and a loopback
// port, then drives a real headless Chromium, with a fake camera and
// microphone, through what patients, practitioners, pharmacists and
// admins do.
//
// Each person gets a browser context of their own (separate cookies).
// Every request a page makes is recorded, and a request to any other
// origin fails the test; so do uncaught exceptions and Content Security
// Policy violations. Screenshots of the main pages at phone (390x844) and
// desktop (1366x768) sizes are written to out/screenshots/ at the root of
// the module, and each of those pages gets an accessibility audit.
//
// Running: `make test`, or `go test ./e2e` with TEST_DATABASE_URL set
// (see store/storetest) and Debian's chromium installed (the tests
// install it with apt-get when run as root; they never download a
// browser).
package e2e
