#!/usr/bin/env bash
# Retrain every task in turn (never two at once: two cores). Each writes adapters/<task>/ and its model card.
# Usage: scripts/train_all.sh [task ...]   Extra args via TRAIN_ARGS, e.g. TRAIN_ARGS="--scale 10" on a GPU host.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
bash scripts/install_data.sh
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
tasks=("$@")
[ ${#tasks[@]} -gt 0 ] || tasks=(sentiment finnews summarize translate generate qa)
for t in "${tasks[@]}"; do
  echo "=== $t ===" >&2
  .venv/bin/python -m export train --task "$t" ${TRAIN_ARGS:-}
done
