#!/usr/bin/env bash
# Load at the issue's scale (issue 8): `weir serve` holding 1,000 scheduled
# projects (20 contacts each, every minute, their seconds spread over the minute:
# ~17 runs/s) while 50 long executions (the 50,000-contact sample each: CSV →
# mappings → normalize → JSON Lines) are started at once and wrk hits the API
# (the dashboard's project list and summary, with the bearer token).
#
# Reports wrk's requests/s, p99 latency and errors, the most executions seen
# Running at once, and then checks from the execution history that: all 50 long
# executions Completed with every record; every scheduled run that started ended
# Completed (or was recorded Skipped); none was lost (each run the scheduler fired
# has exactly one record, counted after the fired runs drain) or left Running
# after SIGTERM.
#
#   tests/load/scale.sh [SECONDS of wrk, default 20] [LONG_RECORDS, default 50000]
#
# Needs wrk and python3. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION="${1:-20}"
LONG_RECORDS="${2:-50000}"
PROJECTS=1000
LONG=50
. tests/load/lib.sh

mkdir -p "$work/small/crm-export" "$work/big/crm-export" "$work/out-small" "$work/out-big"
(cd "$work/small" && python3 "$OLDPWD/examples/contacts/generate.py" 20 >/dev/null)
(cd "$work/big" && python3 "$OLDPWD/examples/contacts/generate.py" "$LONG_RECORDS" >/dev/null)
cat >"$work/serve.toml" <<EOF
concurrency = 64
shutdown_grace_secs = 30
EOF
export WEIR_TOKEN="scale-test-token-$(date +%s)-0123456789"
start_serve --config "$work/serve.toml"
echo "== weir serve on $addr (concurrency 64)"

# The projects, through the API: the sample project's file with its name, its
# folders (absolute), a destination file of its own, and a schedule.
python3 - "$addr" "$work" "$PROJECTS" "$LONG" <<'PY'
import re, sys, time, urllib.request
addr, work, projects, long = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
import os
token = os.environ["WEIR_TOKEN"]
template = open("examples/contacts/project.toml").read()
def project(name, source, out, entity, schedule):
    text = template.replace('name = "contacts-sync"', f'name = "{name}"')
    text = text.replace('directory = "crm-export"', f'directory = "{source}"')
    text = text.replace('directory = "marketing"', f'directory = "{out}"')
    text = text.replace('destination_entity = "contacts"', f'destination_entity = "{entity}"')
    if schedule:
        text = text.replace("batch_size = 500", f'batch_size = 500\nschedule = "{schedule}"')
    return text
def put(name, body):
    req = urllib.request.Request(f"http://{addr}/api/v1/projects/{name}", data=body.encode(), method="PUT",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"})
    urllib.request.urlopen(req, timeout=30).read()
started = time.time()
for i in range(projects):
    put(f"sched-{i:04}", project(f"sched-{i:04}", f"{work}/small/crm-export", f"{work}/out-small", f"c{i}", f"{i % 60} * * * * *"))
for i in range(long):
    put(f"long-{i:02}", project(f"long-{i:02}", f"{work}/big/crm-export", f"{work}/out-big", f"c{i}", None))
print(f"applied {projects} scheduled and {long} long projects through the API in {time.time() - started:.1f} s")
PY

started_ms=$(($(date +%s%N) / 1000000))
# Sample the running executions every 0.5 s while everything else happens.
python3 - "$addr" "$work/active.txt" <<'PY' &
import json, os, sys, time, urllib.request
addr, out = sys.argv[1], sys.argv[2]
token = os.environ["WEIR_TOKEN"]
with open(out, "w") as f:
    while True:
        try:
            req = urllib.request.Request(f"http://{addr}/api/v1/scheduler", headers={"Authorization": f"Bearer {token}"})
            active = json.load(urllib.request.urlopen(req, timeout=10))["active"]
            f.write(f"{active if isinstance(active, int) else len(active)}\n"); f.flush()
        except Exception as e:
            f.write(f"error {e}\n"); f.flush()
        time.sleep(0.5)
PY
sampler=$!

# The 50 long executions, all at once.
python3 - "$addr" "$LONG" "$work/long-ids.txt" <<'PY'
import json, os, sys, urllib.request
addr, long, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
token = os.environ["WEIR_TOKEN"]
ids = []
for i in range(long):
    req = urllib.request.Request(f"http://{addr}/api/v1/projects/long-{i:02}/run", data=b"", method="POST",
        headers={"Authorization": f"Bearer {token}"})
    # A run starts when a slot is free: on a slow machine the scheduled runs can hold
    # every slot for a while, and the answer waits for the start.
    ids.append(json.load(urllib.request.urlopen(req, timeout=180))["execution"])
open(out, "w").write("\n".join(map(str, ids)))
print(f"started {len(ids)} long executions")
PY

echo "== wrk: GET /api/v1/projects ($PROJECTS + $LONG projects) and /api/v1/summary, 2 threads, 32 connections, ${DURATION}s"
wrk -t2 -c32 -d"${DURATION}s" --timeout 10s --latency -s tests/load/api.lua "http://$addr" | tee "$work/wrk-api.txt"

# Wait for the long executions to end (bounded).
python3 - "$addr" "$work/long-ids.txt" <<'PY'
import json, os, sys, time, urllib.request
addr, ids = sys.argv[1], open(sys.argv[2]).read().split()
token = os.environ["WEIR_TOKEN"]
deadline = time.time() + 600
for i in ids:
    while True:
        req = urllib.request.Request(f"http://{addr}/api/v1/executions/{i}", headers={"Authorization": f"Bearer {token}"})
        e = json.load(urllib.request.urlopen(req, timeout=30))
        if e["status"] != "Running":
            break
        if time.time() > deadline:
            sys.exit(f"execution {i} still Running after 600 s")
        time.sleep(0.5)
PY
ended_ms=$(($(date +%s%N) / 1000000))
kill "$sampler" 2>/dev/null || true

# "None lost" is checked exactly, not as a rate: how many scheduled runs a saturated
# machine gets through in the window depends on its speed (a CI machine 3x slower
# than a workstation records half as many), but every run the scheduler fired must
# end with a record. So: note the scheduler's count at the end of the window, pause
# the scheduled projects (no new firings), let the fired runs waiting for a slot
# start and finish (bounded), and compare the history with the scheduler's count.
python3 - "$addr" "$PROJECTS" "$LONG" "$work/drained.json" <<'PY'
import json, os, sys, time, urllib.request
addr, projects, long, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
token = os.environ["WEIR_TOKEN"]
def call(path, method="GET"):
    req = urllib.request.Request(f"http://{addr}{path}", method=method, data=b"{}" if method == "POST" else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=60))
at_window_end = call("/api/v1/scheduler")["stats"]["fired"]
for i in range(projects):
    call(f"/api/v1/projects/sched-{i:04}/pause", "POST")
deadline = time.time() + 300
while True:
    view = call("/api/v1/scheduler")
    s = view["stats"]
    # Every fired run has started or been recorded skipped (the long runs are the
    # manual starts), and none is still running.
    if s["started"] - long + s["skipped"] == s["fired"] and view["active"] == 0:
        break
    if time.time() > deadline:
        sys.exit(f"fired runs did not drain within 300 s: {view}")
    time.sleep(0.5)
json.dump({"fired_at_window_end": at_window_end, "stats": s}, open(out, "w"))
PY

python3 - "$addr" <<'PY' >"$work/executions.json"
import json, os, sys, urllib.request
addr = sys.argv[1]
token = os.environ["WEIR_TOKEN"]
# The API pages at most 1,000 executions: read every page, or a run with more than
# 1,000 executions would count the oldest (the long ones) as lost.
items, offset = [], 0
while True:
    req = urllib.request.Request(f"http://{addr}/api/v1/executions?limit=1000&offset={offset}", headers={"Authorization": f"Bearer {token}"})
    page = json.load(urllib.request.urlopen(req, timeout=60))
    items += page["items"]
    offset += len(page["items"])
    if not page["items"] or offset >= page["total"]:
        break
print(json.dumps({"total": len(items), "items": items}))
PY

kill -TERM "$server"
stop_status=0
wait "$server" || stop_status=$?
server=""
"$WEIR" --data-dir "$work/data" executions list --status running --limit 100000 >"$work/running.txt" 2>&1 || true
left_running=$(grep -cE 'sched-|long-' "$work/running.txt" || true)

python3 - "$work" "$started_ms" "$ended_ms" "$stop_status" "$left_running" "$LONG_RECORDS" <<'PY'
import json, re, sys
work, started, ended, stop_status, left_running, long_records = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
failures = []
sys.path.insert(0, "tests/load")
from wrk_figures import wrk_figures
error = wrk_figures(f"{work}/wrk-api.txt", "api")
if error:
    failures.append(error)

samples = [l for l in open(f"{work}/active.txt").read().split("\n") if l]
counts = [int(l) for l in samples if l.isdigit()]
sample_errors = [l for l in samples if not l.isdigit()]
print(f"running at once: peak {max(counts) if counts else 0} (sampled every 0.5 s, {len(counts)} samples)")
if sample_errors:
    failures.append(f"{len(sample_errors)} scheduler samples failed: {sample_errors[:3]}")
if not counts or max(counts) < 50:
    failures.append(f"never 50 executions running at once (peak {max(counts) if counts else 0})")

items = json.load(open(f"{work}/executions.json"))["items"]
long_ids = set(int(i) for i in open(f"{work}/long-ids.txt").read().split())
long = [e for e in items if e["id"] in long_ids]
long_status = {}
for e in long:
    long_status[e["status"]] = long_status.get(e["status"], 0) + 1
secs = [(e["finished_at"] - e["started_at"]) / 1000 for e in long if e.get("finished_at")]
print(f"long executions: {len(long)} recorded of {len(long_ids)}, {long_status}, "
      f"{sum(e['read'] for e in long)} records read, each took {min(secs):.1f}–{max(secs):.1f} s")
if len(long) != len(long_ids):
    failures.append(f"long executions lost: {len(long_ids) - len(long)}")
if long_status.get("Completed", 0) != len(long_ids) or any(e["read"] != long_records for e in long):
    errs = [e.get("error") for e in long if e["status"] != "Completed"][:3]
    failures.append(f"long executions not all Completed with {long_records} records: {long_status} e.g. {errs}")

sched = [e for e in items if e["project"].startswith("sched-") and started <= e["started_at"] <= ended]
st = {}
for e in sched:
    st[e["status"]] = st.get(e["status"], 0) + 1
expected = (ended - started) / 1000 * 1000 / 60
print(f"scheduled: {len(sched)} runs started and recorded in the {(ended - started) / 1000:.1f} s window (~{expected:.0f} due), {st}")
drained = json.load(open(f"{work}/drained.json"))
fired = drained["stats"]["fired"]
# The scheduler fires on time however busy the executions keep the CPU.
print(f"scheduler: fired {fired} in all, {drained['fired_at_window_end']} by the window's end; "
      f"lag p50 {drained['stats']['lag_p50_ms']:.0f} ms, p99 {drained['stats']['lag_p99_ms']:.0f} ms (due time to start, waiting for a slot included)")
if drained["fired_at_window_end"] < 0.8 * expected:
    failures.append(f"the scheduler fired only {drained['fired_at_window_end']} runs of ~{expected:.0f} due")
# None lost: every fired run has exactly one record (Completed or Skipped), none
# left Running, once the paused projects' fired runs have drained.
every = [e for e in items if e["project"].startswith("sched-") and e["trigger"] == "scheduled"]
every_st = {}
for e in every:
    every_st[e["status"]] = every_st.get(e["status"], 0) + 1
print(f"scheduled, after draining: {len(every)} recorded of {fired} fired, {every_st}")
if len(every) != fired:
    failures.append(f"{fired} scheduled runs fired but {len(every)} recorded")
bad = {s: n for s, n in every_st.items() if s not in ("Completed", "Skipped")}
if bad:
    errs = [e.get("error") for e in every if e["status"] not in ("Completed", "Skipped")][:3]
    failures.append(f"scheduled runs ended badly: {bad} e.g. {errs}")

stderr = open(f"{work}/serve.err").read()
print(f"stop: exit status {stop_status}, {'clean' if 'weir serve: stopped' in stderr else 'no stop message'}; left Running: {left_running}")
if stop_status != 0 or "weir serve: stopped" not in stderr:
    failures.append("weir serve did not stop cleanly on SIGTERM")
if left_running:
    failures.append(f"{left_running} executions left Running")
if failures:
    print("SCALE LOAD TEST FAILED: " + "; ".join(failures))
    sys.exit(1)
print("scale load test passed")
PY
