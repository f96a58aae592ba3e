#!/usr/bin/env python3
"""Parses a Prometheus text exposition (format 0.0.4) with prometheus_client's own parser.

Reads the exposition on stdin; prints one JSON object on stdout:
  {"families": [{"name", "type", "help", "series", "samples": [{"name", "labels", "value"}]}]}
where "series" is the name as exposed and documented (a counter's family name with its
`_total`, which the parser strips). A line the parser rejects is an error: exit status 1
and the parser's message on stderr.
"""

import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    text = sys.stdin.read()
    families = []
    try:
        for f in text_string_to_metric_families(text):
            samples = [
                {
                    "name": s.name,
                    "labels": dict(s.labels),
                    # JSON has no NaN/Inf: those are written as strings.
                    "value": s.value if math.isfinite(s.value) else str(s.value),
                }
                for s in f.samples
            ]
            series = f.name
            if f.type == "counter" and any(s["name"] == f.name + "_total" for s in samples):
                series = f.name + "_total"
            elif f.type == "counter" and not samples:
                series = f.name + "_total"
            families.append(
                {"name": f.name, "type": f.type, "help": f.documentation, "series": series,
                 "samples": samples}
            )
    except Exception as e:  # the parser raises ValueError (and others) on bad input
        print(f"prometheus_client rejected the exposition: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    json.dump({"families": families}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
