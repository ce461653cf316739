"""Forward + backward of generated/pytorch.py against torch.nn.LSTM on the CPU.

    python bench/lstm.py                 # the full table, measured twice
    python bench/lstm.py --threads 1     # the same thread count for NumPy's BLAS and torch
    lstm-derive bench --help             # the same benchmark from the command line

See derive/cli/benchmark.py for how it measures, and BENCHMARKS.md for the results.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from derive.cli.benchmark import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
