#!/usr/bin/env bash
# Evaluate a training snapshot beside the shipped T2V model, without copying weights: a model folder
# of links in a scratch directory. The role (and the eval) follows from the snapshot's name:
#   bash experiments/edit_snapshot.sh ~/runs/edit-v1/edit-run/edit-step400 [eval edit options...]
#   bash experiments/edit_snapshot.sh ~/runs/pt2v/pt2v-run/pt2v-step400 [eval personalize options...]
#   EVAL=extend bash experiments/edit_snapshot.sh ~/runs/animate/animate-run/animate-step400 [options...]
set -euo pipefail
snap=$(realpath "$1"); shift
case "$(basename "$snap")" in
  pt2v-step*) role=personalize ;;
  animate-step*) role=animate ;;
  *) role=edit ;;
esac
dir=$(mktemp -d)
root=$(cd "$(dirname "$0")/.." && pwd)
for part in tae t2v rewrite; do ln -s "$root/assets/models/shapes-v2/$part" "$dir/$part"; done
ln -s "$snap" "$dir/$role"
what=${EVAL:-$role}  # an animate snapshot: EVAL=animate, extend or interpolate
cd "$root" && python -m engine eval "$what" --model "$dir" --cache-dir '' "$@"
