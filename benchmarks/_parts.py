"""What the benchmarks with ``--parts`` share: run the chosen parts, keep the others' results."""

import json
import os
import time

from tfcompress import _io


def run(parts: dict, selected, out: str) -> dict:
    """Runs ``parts[name]()`` for each selected name into the JSON file ``out`` (atomically).

    Results of parts not selected this time stay as the file had them.
    """
    results = {}
    if os.path.exists(out):
        with open(out) as f:
            results = json.load(f)
    results["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for part in selected:
        start = time.time()
        results[part] = parts[part]()
        results[part]["seconds"] = time.time() - start
        print(json.dumps({part: results[part]}, indent=1, default=str))
    _io.write_text(out, json.dumps(results, indent=2, default=str))
    print("wrote", out)
    return results
