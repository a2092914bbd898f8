"""Reads a wrk report (`wrk --latency` output) for the load scripts: prints one
line of figures and returns an error text when any request failed."""
import re


def wrk_figures(path, name):
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    total = int(re.search(r"(\d+) requests in", text).group(1))
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: (.*)", text)
    errors = int(non2xx.group(1)) if non2xx else 0
    print(f"{name:>7}: {total} requests, {rps:.0f} requests/s, p99 {p99}, "
          f"non-2xx {errors}, socket errors: {sock.group(1) if sock else 'none'}")
    if errors or (sock and re.search(r"[1-9]", sock.group(1))):
        return f"{name}: errors under load"
    return None
