"""The leaderboard's metrics as `evaluate` modules kept in this folder and loaded by local path.

`evaluate.load("wer")` fetches its script from the Hub and fails offline; `load_metric("wer")` loads
`metrics/wer/wer.py` from this package instead. Each module wraps a function of `speechpeft.leaderboard`.
"""

from __future__ import annotations

import functools
from pathlib import Path

METRICS_DIR = Path(__file__).parent
METRIC_NAMES = ("wer", "cer", "classification", "dnsmos", "mcd")


@functools.cache  # evaluate copies and imports the script on every load: once per process is enough
def load_metric(name: str):
    """The `evaluate` module `name` (one of METRIC_NAMES), loaded from this package with no network."""
    import evaluate

    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}; valid metrics: {', '.join(METRIC_NAMES)}")
    return evaluate.load(str(METRICS_DIR / name))
