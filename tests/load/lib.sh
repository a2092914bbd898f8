# Shared by the load scripts (sourced): builds weir (or takes the binary in $WEIR,
# to compare builds), makes a work folder removed on exit (kept with KEEP=1),
# stops a started daemon on exit, and starts `weir serve` on a free loopback port.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}"
if [ -z "${WEIR:-}" ]; then
  cargo build --release -q -p weir-host --bin weir
  WEIR="$CARGO_TARGET_DIR/release/weir"
fi

work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then kill -TERM "$server"; wait "$server" || true; fi
  if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# start_serve [ARGS...]: `weir serve` over $work/data with the token $WEIR_TOKEN;
# sets $server (its pid) and $addr (host:port).
start_serve() {
  WEIR_ADMIN_TOKEN="$WEIR_TOKEN" "$WEIR" --data-dir "$work/data" serve --listen 127.0.0.1:0 "$@" \
    >"$work/serve.out" 2>"$work/serve.err" &
  server=$!
  for _ in $(seq 100); do
    grep -q 'listening on' "$work/serve.out" 2>/dev/null && break
    sleep 0.1
  done
  addr=$(sed -n 's|^weir serve: listening on http://||p' "$work/serve.out" | head -n 1)
  [ -n "$addr" ] || { echo "weir serve did not start:"; cat "$work/serve.err"; exit 1; }
}
