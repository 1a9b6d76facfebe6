#!/usr/bin/env bash
# Set up (with test tools) and run the test suite: tiny random-weight models built during the run.
# Extra args go to pytest, e.g. `scripts/test.sh -m slow` for the real-model checks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python -m pytest "$@"
