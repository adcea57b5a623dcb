#!/usr/bin/env bash
# Headless Chromium for tests/test_browser.py: Debian's chromium + chromium-driver (no browser download).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y --no-install-recommends chromium chromium-driver fonts-dejavu-core
