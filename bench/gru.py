"""Forward + backward of generated/gru.py against torch.nn.GRU on the CPU.

    python bench/gru.py --threads 1      # the recorded table (also: lstm-derive bench --cell gru --threads 1)
    python bench/gru.py --cell elman     # generated/elman.py against torch.nn.RNN(nonlinearity='tanh')

The same sizes, dtypes, thread control and measurement as bench/lstm.py; see
derive/cli/benchmark.py for how it measures, and BENCHMARKS.md for the results.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from derive.cli.benchmark import main  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    raise SystemExit(main(argv if "--cell" in argv else ["--cell", "gru", *argv]))
