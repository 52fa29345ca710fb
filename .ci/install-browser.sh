#!/usr/bin/env bash
# Debian's Chromium for tests/test_browser.py (idempotent; run as root before `make test`).
# Playwright drives it; never let `playwright install` download a browser.
set -euo pipefail
if [ "${MOPOE_SKIP_BROWSER:-0}" = "1" ] || command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "The browser test needs Debian's Chromium: run 'sudo apt-get install chromium'" >&2
    echo "(or set MOPOE_SKIP_BROWSER=1 to skip that one test)." >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
chromium --version
