#!/usr/bin/env bash
# The scoreboard's decisions, as files to compare across commits:
#
#   bash benchmarks/scoreboard_decisions.sh OUTDIR [EVENTS]
#   git stash; bash benchmarks/scoreboard_decisions.sh /tmp/before; git stash pop
#   bash benchmarks/scoreboard_decisions.sh /tmp/after && diff -r /tmp/before /tmp/after
#
# Every scenario of `driftgate simulate --list` with seeds 0, 1 and 2 (EVENTS predictions
# each, 200,000 as the scoreboard) is simulated and replayed with this checkout's code, two
# at a time; OUTDIR/<scenario>-<seed>.jsonl holds the decisions, byte for byte. A change
# that moves code and changes no verdict leaves `diff -r` silent (about 7 minutes on 2 cores).
set -euo pipefail
out=$(mkdir -p "$1" && cd "$1" && pwd)
events=${2:-200000}
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
for scenario in $("$python" -m streamer.cli simulate --list); do
    for seed in 0 1 2; do echo "$scenario $seed"; done
done | xargs -P 2 -L 1 bash -c '
    stream=$(mktemp --suffix=.jsonl)
    "'"$python"'" -m streamer.cli simulate "$0" --out "$stream" --events '"$events"' --seed "$1" >/dev/null
    "'"$python"'" -m streamer.cli replay "$stream" --decisions "'"$out"'/$0-$1.jsonl" >/dev/null 2>&1
    rm -f "$stream"'
echo "$(ls "$out" | wc -l) decision files in $out"
