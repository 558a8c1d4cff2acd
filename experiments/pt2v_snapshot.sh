#!/usr/bin/env bash
# Evaluate a PT2V-stage snapshot (RUN/pt2v-run/pt2v-stepN) beside the shipped T2V model, without
# copying weights: a model folder of links in a scratch directory.
#   bash experiments/pt2v_snapshot.sh ~/runs/pilot/pt2v-seq/pt2v-run/pt2v-step400 [eval personalize options...]
set -euo pipefail
snap=$(realpath "$1"); shift
dir=$(mktemp -d)
root=$(cd "$(dirname "$0")/.." && pwd)
for part in tae t2v rewrite; do ln -s "$root/assets/models/shapes-v2/$part" "$dir/$part"; done
ln -s "$snap" "$dir/personalize"
cd "$root" && python -m engine eval personalize --model "$dir" --cache-dir '' "$@"
