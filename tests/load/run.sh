#!/usr/bin/env bash
# Load test (issue 8): `weir serve` on loopback with a project scheduled every 2 s
# (the 5,000-contact sample: CSV → mappings → normalize → JSON Lines), while wrk
# hits the API — the project list and the summary with the bearer token, then
# /health. Reports requests/s, p99 latency and errors, then checks from the
# execution history that the scheduled runs kept their schedule, none failed and
# none was left Running, and that SIGTERM stops the daemon cleanly.
#
#   tests/load/run.sh [SECONDS per wrk run, default 20]
#
# Needs wrk (Debian: apt-get install -y wrk) and python3. Exits non-zero on any
# failed request, failed or missed run, or unclean stop.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION="${1:-20}"
. tests/load/lib.sh

# The sample project, scheduled every 2 seconds.
cp -r examples/contacts "$work/project"
sed -i 's/^batch_size = 500$/batch_size = 500\nschedule = "*\/2 * * * * *"/' "$work/project/project.toml"
grep -q '^schedule = ' "$work/project/project.toml"
export WEIR_TOKEN="load-test-token-$(date +%s)-0123456789"
"$WEIR" --data-dir "$work/data" project apply -f "$work/project/project.toml" >/dev/null

start_serve
echo "== weir serve on $addr, project contacts-sync every 2 s, wrk for ${DURATION}s per run"
started_ms=$(($(date +%s%N) / 1000000))

echo "== wrk: GET /api/v1/projects and /api/v1/summary (bearer token), 2 threads, 32 connections"
wrk -t2 -c32 -d"${DURATION}s" --latency -s tests/load/api.lua "http://$addr" | tee "$work/wrk-api.txt"
echo "== wrk: GET /health, 2 threads, 32 connections"
wrk -t2 -c32 -d"${DURATION}s" --latency "http://$addr/health" | tee "$work/wrk-health.txt"
ended_ms=$(($(date +%s%N) / 1000000))

curl_json() { python3 - "$@" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
print(urllib.request.urlopen(req, timeout=10).read().decode())
PY
}
curl_json "http://$addr/api/v1/executions?project=contacts-sync&limit=1000" "$WEIR_TOKEN" >"$work/executions.json"

kill -TERM "$server"
stop_status=0
wait "$server" || stop_status=$?
server=""
# Nothing left Running in the store after the stop.
running_list=$("$WEIR" --data-dir "$work/data" executions list --project contacts-sync --status running)
left_running=$(printf '%s\n' "$running_list" | grep -c 'contacts-sync' || true)
echo "left Running after SIGTERM: $left_running"
[ "$left_running" = 0 ] || { echo "LOAD TEST FAILED: executions left Running"; exit 1; }

python3 - "$work" "$started_ms" "$ended_ms" "$stop_status" <<'PY'
import json, re, sys
work, started, ended, stop_status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
failures = []

sys.path.insert(0, "tests/load")
from wrk_figures import wrk_figures
for name in ("api", "health"):
    error = wrk_figures(f"{work}/wrk-{name}.txt", name)
    if error:
        failures.append(error)

items = json.load(open(f"{work}/executions.json"))["items"]
window = [e for e in items if started <= e["started_at"] <= ended]
starts = sorted(e["started_at"] for e in window)
gaps = [b - a for a, b in zip(starts, starts[1:])]
statuses = {}
for e in window:
    statuses[e["status"]] = statuses.get(e["status"], 0) + 1
expected = (ended - started) / 2000
print(f"schedule: {len(window)} runs started in {(ended - started) / 1000:.1f} s "
      f"(every 2 s: ~{expected:.0f} due), statuses {statuses}, "
      f"longest gap between starts {max(gaps) if gaps else 0} ms")
if len(window) < 0.8 * expected:
    failures.append(f"only {len(window)} of ~{expected:.0f} scheduled runs started")
if gaps and max(gaps) > 4500:
    failures.append(f"a gap of {max(gaps)} ms between scheduled runs")
bad = {s: n for s, n in statuses.items() if s not in ("Completed", "Warning", "Running", "Skipped")}
if bad:
    failures.append(f"runs ended badly: {bad}")
stderr = open(f"{work}/serve.err").read()
print(f"stop: exit status {stop_status}; {'clean' if 'weir serve: stopped' in stderr else 'no stop message'}")
if stop_status != 0 or "weir serve: stopped" not in stderr:
    failures.append("weir serve did not stop cleanly on SIGTERM")
if failures:
    print("LOAD TEST FAILED: " + "; ".join(failures))
    sys.exit(1)
print("load test passed")
PY
