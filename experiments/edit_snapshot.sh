#!/usr/bin/env bash
# Evaluate an edit-stage snapshot (RUN/edit-run/edit-stepN) beside the shipped T2V model, without
# copying weights: a model folder of links in a scratch directory.
#   bash experiments/edit_snapshot.sh ~/runs/edit-v1/edit-run/edit-step400 [eval edit options...]
set -euo pipefail
snap=$(realpath "$1"); shift
dir=$(mktemp -d)
root=$(cd "$(dirname "$0")/.." && pwd)
for part in tae t2v rewrite; do ln -s "$root/assets/models/shapes-v2/$part" "$dir/$part"; done
ln -s "$snap" "$dir/edit"
cd "$root" && python -m engine eval edit --model "$dir" --cache-dir '' "$@"
