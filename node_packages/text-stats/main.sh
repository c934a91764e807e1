#!/bin/sh
# text-stats: lines, words and bytes of $FUSE_PARAM_TEXT (docs/node-protocol.md).
set -eu
cat > /dev/null
text=${FUSE_PARAM_TEXT:-}
set -- $(printf '%s' "$text" | wc -l -w -c)
echo "counted $1 lines, $2 words, $3 bytes" >&2
printf '{"output": {"lines": %s, "words": %s, "bytes": %s}}\n' "$1" "$2" "$3"
