#!/usr/bin/env bash
# CPU for a fixed amount of work, to compare builds (scale.sh is not for that: it
# saturates the machine for a set time, so its CPU follows its wall time and
# whatever else runs). `weir serve` (the build's, or $WEIR) gets N small projects
# (20 contacts) and L long ones (R contacts) through the API, each run once, and G
# requests of the project list and summary; when every execution has ended it
# prints the daemon's CPU: user + system, all threads.
#
#   N=400 L=4 R=20000 G=600 tests/load/cpu.sh          # this build
#   WEIR=/path/to/other/weir tests/load/cpu.sh           # another build
#
# Run builds interleaved, a few rounds each, and compare medians.
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${N:-400}"; L="${L:-4}"; R="${R:-20000}"; G="${G:-600}"
. tests/load/lib.sh
mkdir -p "$work/small/crm-export" "$work/big/crm-export" "$work/out-small" "$work/out-big"
(cd "$work/small" && python3 "$OLDPWD/examples/contacts/generate.py" 20 >/dev/null)
(cd "$work/big" && python3 "$OLDPWD/examples/contacts/generate.py" "$R" >/dev/null)
printf 'concurrency = 16\nshutdown_grace_secs = 30\n' >"$work/serve.toml"
export WEIR_TOKEN="fixed-test-token-0123456789abcdef"
start_serve --config "$work/serve.toml"
python3 - "$addr" "$work" "$N" "$L" "$G" <<'PY'
import json, os, sys, time, urllib.request
addr, work, n, l, g = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
token = os.environ["WEIR_TOKEN"]
H = {"Authorization": f"Bearer {token}"}
template = open("examples/contacts/project.toml").read()
def project(name, source, out, entity):
    text = template.replace('name = "contacts-sync"', f'name = "{name}"')
    text = text.replace('directory = "crm-export"', f'directory = "{source}"')
    text = text.replace('directory = "marketing"', f'directory = "{out}"')
    return text.replace('destination_entity = "contacts"', f'destination_entity = "{entity}"')
def call(method, path, body=None):
    req = urllib.request.Request(f"http://{addr}{path}", data=body, method=method, headers={**H, "Content-Type": "text/plain"})
    return json.load(urllib.request.urlopen(req, timeout=600))
names = [f"s{i:04}" for i in range(n)] + [f"l{i:02}" for i in range(l)]
for name in names:
    big = name.startswith("l")
    call("PUT", f"/api/v1/projects/{name}", project(name, f"{work}/{'big' if big else 'small'}/crm-export", f"{work}/out-{'big' if big else 'small'}", f"c{name}").encode())
ids = [call("POST", f"/api/v1/projects/{name}/run", b"")["execution"] for name in names]
for i in range(g):
    call("GET", "/api/v1/projects" if i % 2 else "/api/v1/summary")
for i in ids:
    while call("GET", f"/api/v1/executions/{i}")["status"] == "Running":
        time.sleep(0.2)
bad = [i for i in ids if call("GET", f"/api/v1/executions/{i}")["status"] != "Completed"]
print(f"{len(ids)} executions, {len(bad)} not Completed")
if bad:
    sys.exit(f"executions not Completed: {bad[:10]}")
PY
read -r -a st < /proc/$server/stat
awk -v u="${st[13]}" -v s="${st[14]}" -v hz="$(getconf CLK_TCK)" \
  'BEGIN { printf "daemon CPU: %.2f s (user %.2f s, system %.2f s)\n", (u + s) / hz, u / hz, s / hz }'
