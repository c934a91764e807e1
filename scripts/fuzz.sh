#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60), seeded from
# fuzz/seeds/<target>; new inputs go to fuzz/corpus/<target> (not committed),
# crashes to fuzz/artifacts/<target>. Needs the nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`); installs cargo-fuzz when missing.
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 600        # 10 minutes per target
#   scripts/fuzz.sh 5 workflow # one target
#   FUZZ_RUNS=1000000 scripts/fuzz.sh 0   # a number of executions instead of a time
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(workflow expression manifest config api_body)
fi
if ! rustup toolchain list | grep -q nightly; then
  rustup toolchain install nightly --profile minimal
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# FUZZ_FLAGS: extra flags for cargo fuzz (CI builds a quick unoptimised smoke
# with `--dev -s none`; real runs keep the default: optimised, AddressSanitizer).
read -r -a flags <<< "${FUZZ_FLAGS:-}"
cd fuzz
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  limit=(-max_total_time="$seconds")
  label="$seconds s"
  if [ -n "${FUZZ_RUNS:-}" ]; then limit=(-runs="$FUZZ_RUNS"); label="$FUZZ_RUNS runs"; fi
  echo "== fuzz $t ($label)"
  log="$(mktemp)"
  code=0
  cargo +nightly fuzz run "${flags[@]}" "$t" "corpus/$t" "seeds/$t" -- \
    "${limit[@]}" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || code=$?
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY|ERROR|Done )|panicked" "$log" || true
  if [ "$code" -ne 0 ]; then
    tail -40 "$log" >&2
    echo "fuzz $t FAILED (exit $code): the input is in fuzz/artifacts/$t" >&2
    status=1
  fi
  rm -f "$log"
done
exit $status
