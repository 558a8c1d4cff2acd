#!/usr/bin/env bash
# Evaluate upsampler snapshots (RUN/upscale-run/upscale-stepN and updecoder-stepM) beside the
# shipped models, without copying weights: a model folder of links in a scratch directory.
#   bash experiments/upscale_snapshot.sh RUN/upscale-run/upscale-step400 RUN/upscale-run/updecoder-step300 [eval options...]
set -euo pipefail
gen=$(realpath "$1"); dec=$(realpath "$2"); shift 2
dir=$(mktemp -d)
root=$(cd "$(dirname "$0")/.." && pwd)
for part in tae t2v rewrite edit; do ln -s "$root/assets/models/shapes-v2/$part" "$dir/$part"; done
ln -s "$gen" "$dir/upscale"
ln -s "$dec" "$dir/upscale-decoder"
cd "$root" && python -m engine eval upscale --model "$dir" --cache-dir '' "$@"
