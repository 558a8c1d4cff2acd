#!/usr/bin/env bash
# Run a job longer than one device call (10 min) on the lent GPU machine, and bring its checkpoints
# back through $OUT, whose files are capped at 16 MiB each (the shipped TAE alone is 19 MB).
#
# On the device machine (each line one `run` call; call again at once: an idle machine goes back
# after 30 s, and the job with it):
#   bash experiments/device_job.sh start runs/g.log -- python3 -m engine train --preset shapes-v2 --out runs/g --stages tae,t2v,refine
#   bash experiments/device_job.sh poll runs/g.log 570 runs/g/tae runs/g/t2v      # again until it says "finished rc=0"
# Here, with the folder the reply names in files_at:
#   bash experiments/device_job.sh unpack FILES_AT .                # -> ./runs/g
#
# start: runs the command in its own process session (setsid), so it outlives the call.
# poll:  waits until the job ends or SECONDS pass, prints the log's tail, and packs the named
#        folders (what exists so far: a finished stage's checkpoint) as 15 MiB parts into $OUT.
# unpack: joins the parts and unpacks them under DEST.
set -euo pipefail

cmd=${1:-}
shift || true
case "$cmd" in
start)
  log=$1
  shift
  [ "${1:-}" = "--" ] && shift
  [ $# -gt 0 ] || { echo "start: no command given (start LOG -- COMMAND...)" >&2; exit 2; }
  mkdir -p "$(dirname "$log")"
  rm -f "$log.rc"
  # The exit status goes to LOG.rc so that a later poll can tell "finished" from "running".
  setsid nohup bash -c '"$@"; echo $? >"$0.rc"' "$log" "$@" >"$log" 2>&1 </dev/null &
  echo $! >"$log.pid"
  echo "started pid $(cat "$log.pid"): $*"
  ;;
poll)
  log=$1 seconds=$2
  shift 2
  end=$((SECONDS + seconds))
  state=running
  while [ $SECONDS -lt $end ]; do
    [ -f "$log.rc" ] && break
    kill -0 "$(cat "$log.pid")" 2>/dev/null || { sleep 1; [ -f "$log.rc" ] || state=gone; break; }
    sleep 2
  done
  [ -f "$log.rc" ] && state="finished rc=$(cat "$log.rc")"
  tail -n 25 "$log"
  [ "$state" = gone ] && state="gone without an exit status (killed, or the machine was restarted)"
  echo "$state"
  if [ -n "${OUT:-}" ]; then
    cp "$log" "$OUT/job.log"
    dirs=()
    for d in "$@"; do [ -e "$d" ] && dirs+=("$d"); done
    if [ ${#dirs[@]} -gt 0 ]; then
      tar czf - "${dirs[@]}" | split -b 15M -d - "$OUT/pack.tgz.part-"
      total=$(du -cb "$OUT"/pack.tgz.part-* | tail -n 1 | cut -f1)
      echo "packed ${dirs[*]}: $total bytes in $(ls "$OUT"/pack.tgz.part-* | wc -l) parts"
      # At most 64 MiB and 8 files come back; over that, nothing is lost on the machine yet.
      [ "$total" -le $((60 * 1024 * 1024)) ] || echo "warning: over 60 MiB, some parts will not come back" >&2
    fi
  fi
  ;;
unpack)
  from=$1 dest=${2:-.}
  ls "$from"/pack.tgz.part-* >/dev/null || { echo "unpack: no pack.tgz.part-* in $from" >&2; exit 2; }
  mkdir -p "$dest"
  cat "$from"/pack.tgz.part-* | tar xzf - -C "$dest"
  echo "unpacked into $dest"
  ;;
*)
  echo "usage: device_job.sh start LOG -- COMMAND... | poll LOG SECONDS [DIR...] | unpack FOLDER [DEST]" >&2
  exit 2
  ;;
esac
