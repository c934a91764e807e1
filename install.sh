#!/usr/bin/env bash
# Installs the `fuse` binary from this checkout with cargo, then shows the next step.
# Needs a Rust toolchain (https://rustup.rs) and a C compiler (SQLite is bundled and
# built from source; no OpenSSL or other system library is used).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v cargo >/dev/null 2>&1; then
  echo "install.sh: cargo not found; install Rust first: https://rustup.rs" >&2
  exit 1
fi
if ! command -v cc >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq gcc
  else
    echo "install.sh: a C compiler (cc) is needed to build the bundled SQLite" >&2
    exit 1
  fi
fi
cargo install --path . --locked --quiet
bin="$(command -v fuse || echo "${CARGO_HOME:-$HOME/.cargo}/bin/fuse")"
echo "installed $("$bin" --version) at $bin"
case ":$PATH:" in
  *":$(dirname "$bin"):"*) ;;
  *) echo "note: add $(dirname "$bin") to your PATH" >&2 ;;
esac
echo "next: fuse run templates/hello.json   (and \`fuse init\` to keep run history)"
