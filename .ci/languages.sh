#!/usr/bin/env bash
# Plugins in other languages (issue 22): runs the Python and JavaScript guides' commands as
# written — read out of sdk/python/README.md and sdk/js/README.md, so guide and CI cannot
# drift apart — each in an empty folder, against a json-server REST API. The guides build
# both examples (a lookup transform and a paged, incremental REST connector), run
# `weir plugin test` on them (with its edge cases, a sample and the expected output) and
# run them in a project. Then this script checks what the project wrote.
#
# Safe to rerun: tool downloads are cached under $HOME/.cache/weir (pip and npm caches),
# the weir build is incremental, and each run starts from empty folders.
# Usage: .ci/languages.sh [--bench]   (--bench: also the per-language benchmark rows)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CACHE="$HOME/.cache/weir"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
# The guides' own `pip install` and `npm install`, served from caches kept between runs.
export PIP_CACHE_DIR="$CACHE/pip" npm_config_cache="$CACHE/npm"
export PIP_DISABLE_PIP_VERSION_CHECK=1 npm_config_update_notifier=false

echo "== weir (release build, incremental)"
cargo build --release -q -p weir-host --bin weir
export PATH="$CARGO_TARGET_DIR/release:$PATH"
export WEIR_REPO="$REPO"

WORK=$(mktemp -d /tmp/weir-ci-languages.XXXXXX)
# Kept when something failed, to look at.
cleanup() {
  local rc=$?
  [ -n "${API_PID:-}" ] && kill "$API_PID" 2>/dev/null
  if [ "$rc" -eq 0 ]; then rm -rf "$WORK"; else echo "kept for inspection: $WORK" >&2; fi
}
trap cleanup EXIT

echo "== json-server 0.17.4 as the guides' REST API"
JSON_SERVER="${WEIR_JSON_SERVER:-$CACHE/node/node_modules/.bin/json-server}"
[ -x "$JSON_SERVER" ] || { echo "json-server not found at $JSON_SERVER (see .ci/run)" >&2; exit 1; }
# 23 people and one id beyond 2^53 (2^53+2: json-server, itself JavaScript, holds it exactly;
# it would round 2^53+1), which Python keeps exact and QuickJS must refuse, not round.
python3 - "$WORK/db.json" <<'EOF'
import json, sys
people = [{"id": i, "name": f"Person {i}", "email": f"p{i}@example.com", "country": ["FR", "DE", "IT"][i % 3]} for i in range(1, 24)]
people.append({"id": 9007199254740994, "name": "Big Id", "email": "big@example.com", "country": "FR"})
json.dump({"people": people}, open(sys.argv[1], "w"))
EOF
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$JSON_SERVER" --port "$PORT" --host 127.0.0.1 --quiet "$WORK/db.json" >"$WORK/api.log" 2>&1 &
API_PID=$!
export API_HOST="127.0.0.1:$PORT"
python3 - "http://$API_HOST/people?_limit=1" <<'EOF'
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1).read()
        break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit("json-server did not start")
EOF

# The first sh block under "## From an empty folder" of a guide, run as written in a new
# empty folder, with its own weir data directory.
guide() {
  local readme=$1 dir=$2
  awk '/^## From an empty folder/{f=1} f&&/^```sh/{b=1;next} b&&/^```/{exit} b' "$readme" > "$WORK/$dir.sh"
  [ -s "$WORK/$dir.sh" ] || { echo "$readme: no sh block under '## From an empty folder'" >&2; exit 1; }
  mkdir "$WORK/$dir"
  echo "== $readme, verbatim ($(wc -l < "$WORK/$dir.sh") lines) in an empty folder"
  (cd "$WORK/$dir" && WEIR_DATA_DIR="$WORK/$dir-data" bash -euo pipefail -x "$WORK/$dir.sh") 2>&1 \
    | tee "$WORK/$dir.log" | grep -Ev '^(\+ |Collecting|Downloading|Using cached|  )' || {
      echo "the guide $readme failed; its log:" >&2; tail -n 60 "$WORK/$dir.log" >&2; exit 1; }
  for want in "all 14 checks passed" "all 8 checks passed"; do
    grep -q "$want" "$WORK/$dir.log" || { echo "$readme: expected '$want' from weir plugin test" >&2; exit 1; }
  done
  grep -Eq '^status: +(Completed|Warning)$' "$WORK/$dir.log" \
    || { echo "$readme: the project run did not complete" >&2; exit 1; }
  grep -q '"country_name":"Germany"' "$WORK/$dir/out/people.jsonl" \
    || { echo "$readme: the transform's lookup is not in out/people.jsonl" >&2; exit 1; }
}

guide sdk/python/README.md python
# Python ints are exact: the id beyond 2^53 arrives as written.
grep -Eq '"id":"?9007199254740994"?[,}]' "$WORK/python/out/people.jsonl" \
  || { echo "python: id 9007199254740994 did not arrive exactly" >&2; exit 1; }
[ "$(wc -l < "$WORK/python/out/people.jsonl")" -eq 24 ] || { echo "python: expected 24 people" >&2; exit 1; }

guide sdk/js/README.md js
# QuickJS carries s64 as a Number: the record beyond 2^53 is refused with a message, never passed on.
! grep -q '900719925474099' "$WORK/js/out/people.jsonl" \
  || { echo "js: an id beyond 2^53 was passed on" >&2; exit 1; }
grep -q 'beyond ±2^53' "$WORK/js.log" || { echo "js: the refused record's message is missing" >&2; exit 1; }
[ "$(wc -l < "$WORK/js/out/people.jsonl")" -eq 23 ] || { echo "js: expected 23 people" >&2; exit 1; }

if [ "${1:-}" = "--bench" ]; then
  echo "== the same transform in Rust, Python and JavaScript (records/s, records per CPU-second)"
  cargo bench -q -p weir-host --bench languages -- \
    "$WORK/python/transform.wasm" "$WORK/js/transform.wasm"
fi
echo "== languages: both guides ran as written; both examples built and passed weir plugin test"
