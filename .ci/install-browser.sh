#!/usr/bin/env bash
# Debian's Chromium for tests/test_browser.py (idempotent; run as root before `make test`).
# Playwright drives it; never let `playwright install` download a browser.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
chromium --version
