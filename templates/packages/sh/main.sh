#!/bin/sh
# A fuse node package in POSIX sh (oneshot). The JSON request is on stdin; each
# string/number/boolean input is also in $FUSE_PARAM_<NAME> (upper case), so
# simple nodes need no JSON parser. Print one JSON reply on stdout:
#   {"output": ...}  or  {"error": {"message": "...", "retryable": false}}
# stderr lines go to the run's log. See docs/node-protocol.md.
set -eu
cat > /dev/null   # the JSON request (not needed here)
text=${FUSE_PARAM_TEXT:-}
bytes=$(printf '%s' "$text" | wc -c | tr -d ' ')
echo "counted $bytes bytes" >&2
# Escape the text for JSON (backslashes and quotes; this template keeps it simple).
escaped=$(printf '%s' "$text" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr '\n\t' '  ')
printf '{"output": {"text": "%s", "bytes": %s}}\n' "$escaped" "$bytes"
