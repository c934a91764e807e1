#!/usr/bin/env bash
# The test command: installs what the tests need (scripts/setup-test-deps.sh),
# then runs the whole suite. `.ci/run` calls this after fmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-test-deps.sh
cargo test --locked "$@"
