#!/usr/bin/env python3
"""Validates an OpenAPI document (JSON, the path given) with openapi-spec-validator.

Exit 0 and one line `valid: OpenAPI <version>, <n> paths` when it is valid; else exit 1 with
the validator's message on stderr. Used by tests/openapi.rs.
"""
import json
import sys

from openapi_spec_validator import validate


def main() -> int:
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    try:
        validate(doc)
    except Exception as e:  # the validator's errors carry the failing JSON path
        print(f"{path}: invalid OpenAPI document: {e}", file=sys.stderr)
        return 1
    print(f"valid: OpenAPI {doc.get('openapi')}, {len(doc.get('paths', {}))} paths")
    return 0


if __name__ == "__main__":
    sys.exit(main())
