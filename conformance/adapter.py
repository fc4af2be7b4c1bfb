"""The reference implementation behind the adapter protocol (README.md).

    python -m conformance.runner --adapter "python -m conformance.adapter"

reads one JSON request per line on stdin and answers each with one JSON line on stdout. It is
both a working adapter and the model for one in another language.
"""

from __future__ import annotations

import json
import sys

from conformance.reference import handle


def main() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            response = handle(request)
        except Exception as e:  # report, keep serving: one bad request is not the end
            response = {"id": request.get("id"), "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(response) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
