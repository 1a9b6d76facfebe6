#!/usr/bin/env bash
# Set up (with test tools) and run the test suite: tiny random-weight models built during the run.
# Extra args go to pytest, e.g. `scripts/test.sh -m slow` for the real-model checks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
# The store tests run against a real PostgreSQL server, which the tests start on 127.0.0.1.
if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  echo "test: installing PostgreSQL (Debian package postgresql)" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python -m pytest "$@"
