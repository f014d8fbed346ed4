"""Where ferkit looks for things and what it names them, written once: the default FER-2013
store and the files of a run folder. Every layer may import this (it imports nothing), so
the trainer that writes `best.pt` and the loader that reads it cannot disagree.

A run folder `runs/<name>/` holds `config.yaml` (the resolved config), `metrics.csv` (one
row per epoch), `curves.png`, `best.pt` (the best epoch by val accuracy), `last.pt` (the
latest epoch, with the state to resume) and, after `ferkit evaluate`, `report.json`.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_STORE = Path("data/fer2013.h5")  # `ferkit data prepare`'s output, every reader's input

CONFIG_YAML = "config.yaml"
METRICS_CSV = "metrics.csv"
CURVES_PNG = "curves.png"
BEST = "best.pt"
LAST = "last.pt"
SHIPPED_BEST = "best.safetensors"  # a run folder holding shipped-format weights
REPORT_JSON = "report.json"
