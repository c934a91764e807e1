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
# The scale-out tests need a PostgreSQL server on 127.0.0.1:5432 that lets the
# `postgres` user in (FUSE_TEST_PG_URL names another). Use the one that
# listens; else install Debian's and start a cluster that trusts loopback.
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) >/dev/null 2>&1; }
if [ -z "${FUSE_TEST_PG_URL:-}" ] && ! pg_up; then
  if ! command -v pg_lsclusters >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
      SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
      $SUDO apt-get update -qq
      $SUDO apt-get install -y -qq postgresql
    else
      echo "please start PostgreSQL on 127.0.0.1:5432 (or set FUSE_TEST_PG_URL)" >&2
      exit 1
    fi
  fi
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  read -r version cluster _ < <(pg_lsclusters -h | head -1) || true
  if [ -z "${version:-}" ]; then
    version=$(ls /usr/lib/postgresql | sort -n | tail -1); cluster=main
    $SUDO pg_createcluster "$version" "$cluster"
  fi
  hba=/etc/postgresql/$version/$cluster/pg_hba.conf
  if ! $SUDO grep -q "fuse tests" "$hba"; then
    $SUDO sed -i "1i host all postgres 127.0.0.1/32 trust # fuse tests\nhost all postgres ::1/128 trust # fuse tests" "$hba"
  fi
  $SUDO pg_ctlcluster "$version" "$cluster" start || $SUDO pg_ctlcluster "$version" "$cluster" reload
  for _ in $(seq 1 50); do pg_up && break; sleep 0.2; done
  pg_up || { echo "PostgreSQL did not start on 127.0.0.1:5432" >&2; exit 1; }
fi
