#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain. Idempotent; safe to
# run on a fresh Debian/Ubuntu machine (as root or with sudo) and on macOS.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v cc >/dev/null 2>&1 || need+=(gcc)
# The workflow schema is checked with a real JSON Schema validator.
python3 -c "import jsonschema" >/dev/null 2>&1 || need+=(python3-jsonschema)
# The full-disk tests mount a small tmpfs; the pipe tests use mkfifo.
command -v mount >/dev/null 2>&1 || need+=(mount)
# The dashboard is tested in real headless Chromium through ChromeDriver.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
# scripts/api-fuzz.sh installs schemathesis (PyPI) into a virtualenv.
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${need[@]}"
  else
    echo "please install: ${need[*]}" >&2
    exit 1
  fi
fi
# schemathesis for scripts/api-fuzz.sh, in target/api-fuzz-venv.
if [ ! -x target/api-fuzz-venv/bin/schemathesis ]; then
  python3 -m venv target/api-fuzz-venv
  target/api-fuzz-venv/bin/pip install -q --disable-pip-version-check 'schemathesis>=4,<5'
fi
