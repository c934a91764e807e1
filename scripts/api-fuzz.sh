#!/usr/bin/env bash
# Fuzzes the daemon's HTTP API with schemathesis against its own OpenAPI
# document: a daemon is started on a free port in a throwaway home, with a few
# workflows deployed, and every operation is called with generated valid and
# invalid input. Fails on a 5xx, an answer that does not fit the document, or
# a wrong status/content type/header.
#
#   scripts/api-fuzz.sh [SECONDS]     # default 60; CI runs a short pass
#
# schemathesis comes from PyPI into target/api-fuzz-venv (set
# SCHEMATHESIS=/path/to/schemathesis to use another).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_BUDGET="${1:-60}"
VENV="target/api-fuzz-venv"
ST="${SCHEMATHESIS:-$VENV/bin/schemathesis}"
if [ ! -x "$ST" ]; then
  echo "api-fuzz: installing schemathesis into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check 'schemathesis>=4,<5'
fi
cargo build -q --bin fuse
FUSE="$PWD/target/debug/fuse"
HOME_DIR="$(mktemp -d)"
cleanup() {
  "$FUSE" --home "$HOME_DIR" stop >/dev/null 2>&1 || true
  rm -rf "$HOME_DIR"
}
trap cleanup EXIT
"$FUSE" --home "$HOME_DIR" init --yes --no-keyring -q
"$FUSE" --home "$HOME_DIR" start --port 0 -q
URL="$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("http://%s:%s" % (d["host"], d["port"]))' "$HOME_DIR/daemon.json")"
TOKEN="$(cat "$HOME_DIR/api-token")"
# Something to find: a workflow with two versions and a recorded run.
WF="$HOME_DIR/hello.json"
cat > "$WF" <<'JSON'
{"name": "hello", "nodes": [{"id": "s", "type": "transform.set", "data": {"inputs": {"values": {"hi": "there"}}}}], "edges": []}
JSON
"$FUSE" --home "$HOME_DIR" workflows deploy "$WF" -q
sed -i 's/there/again/' "$WF"
"$FUSE" --home "$HOME_DIR" workflows deploy "$WF" -q
"$FUSE" --home "$HOME_DIR" workflows run hello --follow -q >/dev/null
echo "api-fuzz: $URL for ${SECONDS_BUDGET}s" >&2
# One worker: Python 3.11's ast module is not thread-safe (CPython gh-106905),
# and hypothesis parses lambdas with it, so two workers sometimes fail with
# "AST constructor recursion depth mismatch" inside schemathesis itself.
"$ST" run "$URL/api/v1/openapi.json" \
  --header "Authorization: Bearer $TOKEN" \
  --checks all \
  --exclude-checks positive_data_acceptance \
  --max-time "$SECONDS_BUDGET" \
  --workers 1 \
  --request-timeout 30 \
  --suppress-health-check all \
  --warnings off \
  --no-color
