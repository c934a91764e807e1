#!/usr/bin/env bash
# The test command: installs what the tests need (scripts/setup-test-deps.sh),
# then runs the whole suite. `.ci/run` runs the same two steps, with fmt,
# clippy and a fuzz smoke around them.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-test-deps.sh
cargo test --locked "$@"
