// Package e2e holds the browser journeys: `go test` starts the whole
// service (package server) on a fresh PostgreSQL database and a loopback
// port, then drives a real headless Chromium, with a fake camera and
// microphone, through what patients, practitioners and pharmacists do.
//
// Each person gets a browser context of their own (separate cookies).
// Every request a page makes is recorded, and a request to any other
// origin fails the test; so do uncaught exceptions and Content Security
// Policy violations. Screenshots of the main pages at phone and desktop
// sizes are written to out/screenshots/ at the root of the module.
package e2e
