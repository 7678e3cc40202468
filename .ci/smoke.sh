#!/usr/bin/env bash
# Smoke test with an independent client (grpcurl, through reflection): starts the binary built
# by `cargo test` (or $BIN) on free loopback ports with a temporary store and a caller token,
# waits for health, lists the services, calls TestMapping with an inline mapping, checks the
# per-RPC log line and /metrics, then stops it with SIGTERM and expects exit 0.
# Needs .ci/tools.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug/segment-connections}
GRPCURL=.tools/venv/bin/grpcurl
TOKEN=smoke-token-$$
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "smoke: $*"; echo "--- server log"; cat "$work/log"; exit 1; }

(cd "$work" && exec env -u RUST_LOG SEGMENT_CONNECTIONS_AUTH_TOKENS="$TOKEN" \
  "$OLDPWD/$BIN" serve --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 \
  --store "sqlite://$work/store.db" --log-format json) 2>"$work/log" &
pid=$!

# The real ports, from the start-up log.
addr= metrics=
for _ in $(seq 1 100); do
  addr=$(grep '"message":"serving"' "$work/log" | sed -E 's/.*"addr":"([^"]+)".*/\1/' || true)
  metrics=$(grep '"message":"serving /metrics"' "$work/log" | sed -E 's/.*"addr":"([^"]+)".*/\1/' || true)
  [ -n "$addr" ] && [ -n "$metrics" ] && break
  kill -0 "$pid" 2>/dev/null || fail "serve exited early"
  sleep 0.1
done
[ -n "$addr" ] || fail "no 'serving' line"
echo "smoke: serving on $addr, metrics on $metrics"

# Wait until the service reports SERVING. Health itself needs no token (tests/api/security.rs
# shows it), but grpcurl learns its schema through reflection, which does.
auth=(-H "authorization: Bearer $TOKEN")
for _ in $(seq 1 50); do
  status=$("$GRPCURL" -plaintext "${auth[@]}" -d '{"service":"segment_connections.v1.Connections"}' \
    "$addr" grpc.health.v1.Health/Check 2>/dev/null || true)
  grep -q SERVING <<<"$status" && break
  sleep 0.1
done
grep -q '"SERVING"' <<<"$status" || fail "health: $status"

# Without the token: UNAUTHENTICATED.
if out=$("$GRPCURL" -plaintext "$addr" list 2>&1); then fail "list without a token: $out"; fi
grep -q Unauthenticated <<<"$out" || fail "list without a token: $out"

services=$("$GRPCURL" -plaintext "${auth[@]}" "$addr" list)
[ "$services" = $'grpc.health.v1.Health\nsegment_connections.v1.Connections' ] \
  || fail "services: $services"

mapping='{"name":"orders","action":"track","fields":{"event_name":{"@literal":"Order Completed"},"user_id":{"@path":"$.properties.user_id"}}}'
columns=$(printf '{"user_id":"u-1","revenue":19.99}' | base64 -w0)
request=$(python3 -c 'import json,sys; print(json.dumps({"mappingJson": sys.argv[1], "rows": [
  {"id": "o-1", "op": "OP_ADDED", "columnsJson": sys.argv[2]},
  {"id": "o-2", "op": "OP_ADDED", "columnsJson": sys.argv[2]}]}))' "$mapping" "$columns")
response=$("$GRPCURL" -plaintext "${auth[@]}" -d "$request" "$addr" \
  segment_connections.v1.Connections/TestMapping)
python3 - "$response" <<'PY' || fail "TestMapping: $response"
import json, sys
r = json.loads(sys.argv[1])["results"]
assert len(r) == 2 and all(x["accepted"] for x in r), r
event = json.loads(r[0]["eventJson"])
assert event["event"] == "Order Completed" and event["userId"] == "u-1", event
PY

# One structured log line for the call, with its counts.
grep '"target":"segment_connections::rpc"' "$work/log" | grep '"method":"TestMapping"' \
  | grep '"code":"OK"' | grep -q '"rows":2' || fail "no log line for TestMapping"
! grep -q "$TOKEN" "$work/log" || fail "the token was logged"

python3 - "$metrics" <<'PY' || fail "metrics"
import sys, urllib.request
body = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5).read().decode()
want = 'segment_connections_rpc_requests_total{service="segment_connections.v1.Connections",method="TestMapping",code="OK"} 1'
assert want in body, body
PY

kill -TERM "$pid"
code=0; wait "$pid" || code=$?
pid=
[ "$code" = 0 ] || fail "exit $code after SIGTERM"
grep -q '"message":"stopped"' "$work/log" || fail "no 'stopped' line"
echo "smoke ok"
