"""How long deriving every bundled preset takes, from a cold start.

    python bench/derive_all.py [--repeat 5]

Each run is a fresh interpreter (no cache of any kind: not the in-process LRU
cache, not the verifier's disk cache) that imports derive and derives every
preset; the script reports the import time and the derivation time of each
run, and their medians. Target (issue 3): the six LSTMs in under 10 s on a 2-core
machine; the four cells issue 7 added are timed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, time
t0 = time.perf_counter()
import derive
t1 = time.perf_counter()
per = {}
for name in derive.presets():
    s = time.perf_counter()
    derive.derive(name)
    per[name] = time.perf_counter() - s
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "derive": t2 - t1, "per": per}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    env = {**os.environ, "LSTM_DERIVE_CACHE": "off"}
    runs = []
    for _ in range(args.repeat):
        out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, check=True)
        runs.append(json.loads(out.stdout))
        time.sleep(0.5)
    imp = statistics.median(r["import"] for r in runs)
    der = statistics.median(r["derive"] for r in runs)
    print(f"runs: {args.repeat}  (cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f})")
    print(f"import derive:       median {imp:.3f} s")
    each = ", ".join(f"{r['derive']:.2f}" for r in runs)
    print(f"derive all {len(runs[0]['per'])}:       median {der:.3f} s   (runs: {each})")
    for name in runs[0]["per"]:
        print(f"  {name:<14} median {statistics.median(r['per'][name] for r in runs):.3f} s")


if __name__ == "__main__":
    main()
