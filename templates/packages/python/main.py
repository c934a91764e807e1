#!/usr/bin/env python3
"""A fuse node package (oneshot): one JSON request on stdin, one JSON reply on stdout.

Request: {"params": {...inputs...}, "input": <upstream data>, "context": {...}, "credentials": {...}}
Reply:   {"output": ...}  or  {"error": {"message": "...", "retryable": false}}
Anything printed to stderr goes to the run's log. See docs/node-protocol.md.
"""
import json
import sys


def run(params, upstream):
    text = str(params.get("text", ""))
    print(f"got {len(text)} characters", file=sys.stderr)
    return {"text": text, "length": len(text), "input": upstream}


def main():
    request = json.load(sys.stdin)
    try:
        output = run(request.get("params", {}), request.get("input"))
        json.dump({"output": output}, sys.stdout)
    except Exception as e:  # a clear error instead of a traceback
        json.dump({"error": {"message": str(e), "retryable": False}}, sys.stdout)


if __name__ == "__main__":
    main()
