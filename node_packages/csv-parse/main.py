#!/usr/bin/env python3
"""csv-parse: CSV text -> rows. A oneshot fuse node (docs/node-protocol.md)."""
import csv
import io
import json
import sys


def parse(params):
    text = params.get("text")
    if not isinstance(text, str):
        raise ValueError("`text` must be a string of CSV")
    delimiter = params.get("delimiter") or ","
    if len(delimiter) != 1:
        raise ValueError("`delimiter` must be one character")
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    records = [r for r in reader if r]
    if params.get("header", True):
        columns = records[0] if records else []
        rows = [dict(zip(columns, r)) for r in records[1:]]
    else:
        columns = []
        rows = records
    print(f"parsed {len(rows)} rows", file=sys.stderr)
    return {"rows": rows, "columns": columns, "count": len(rows)}


def main():
    try:
        request = json.load(sys.stdin)
        json.dump({"output": parse(request.get("params", {}))}, sys.stdout)
    except Exception as e:
        json.dump({"error": {"message": str(e), "retryable": False}}, sys.stdout)


if __name__ == "__main__":
    main()
