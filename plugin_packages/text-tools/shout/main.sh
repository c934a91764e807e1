#!/bin/sh
set -eu
cat > /dev/null
loud=$(printf '%s' "${FUSE_PARAM_TEXT:-}" | tr '[:lower:]' '[:upper:]' | sed 's/\\/\\\\/g; s/"/\\"/g' | tr '\n' ' ')
echo "shouting ${#loud} characters" >&2
printf '{"output": {"text": "%s"}}\n' "$loud"
