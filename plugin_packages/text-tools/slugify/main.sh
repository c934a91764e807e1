#!/bin/sh
set -eu
cat > /dev/null
slug=$(printf '%s' "${FUSE_PARAM_TEXT:-}" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9' '-' | sed 's/--*/-/g; s/^-//; s/-$//')
printf '{"output": {"slug": "%s"}}\n' "$slug"
