#!/usr/bin/env bash
# Installs what the test suite drives besides Go: Chromium for the browser
# journeys, poppler-utils (pdfsig, pdftotext), qpdf and certutil for the
# signed prescriptions, and stripe-mock for Stripe request shapes. Debian's
# packages need root; without it, missing tools are reported and the tests
# that need them say so.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v pdfsig >/dev/null || missing+=(poppler-utils)
command -v qpdf >/dev/null || missing+=(qpdf)
command -v certutil >/dev/null || missing+=(libnss3-tools)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "test-deps.sh: installing ${missing[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  else
    echo "test-deps.sh: missing ${missing[*]} (install them as root)" >&2
  fi
fi
gobin=$(go env GOPATH)/bin
if ! command -v stripe-mock >/dev/null && [ ! -x "$gobin/stripe-mock" ]; then
  echo "test-deps.sh: installing stripe-mock" >&2
  go install github.com/stripe/stripe-mock@v0.203.0
fi
