#!/usr/bin/env bash
# Regenerate the example plots shown in docs/examples.md (default sizes, seed 0).
# The figures quoted in docs/examples.md come from the same runs: update them together.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/assets/examples
mkdir -p "$out"
for name in regression_outliers imbalanced_classification segmentation metric_learning language_model; do
  MPLBACKEND=Agg python "examples/$name.py" --out "$out"
done
