"""Train a recipe on a lent GPU inside a fixed wall-clock budget (issue 14; docs/gpu.md).

Runs on the device machine from the repository root with that machine's own torch
(`PYTHONPATH=src`, nothing installed): unpack the carried pack into a store, time one
calibration epoch, then train as many epochs of the recipe as fit what is left of the budget
— a one-cycle schedule must know its epoch count before it starts, so a run cut short by a
timeout would end at a high learning rate and waste the lease. The best weights leave as an
fp16 `.safetensors` (the format shipped weights use) cut into parts under the tool's
per-file limit, beside metrics.csv, config.yaml and summary.json. On the CPU it runs the same
way with a tiny budget, which is how it is tested.

    python3 scripts/gpu_train.py --pack .gpu/fer2013.pack.npz --out "$OUT" --budget-s 330
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ferkit.config import apply_overrides, resolve_config  # noqa: E402
from ferkit.data.pack import unpack_store  # noqa: E402
from ferkit.models.checkpoint import load_checkpoint  # noqa: E402
from ferkit.paths import BEST, CONFIG_YAML, METRICS_CSV  # noqa: E402
from ferkit.train.trainer import train  # noqa: E402


def epochs_that_fit(budget_s: float, spent_s: float, epoch_s: float, cap: int) -> int:
    """Epochs of `epoch_s` seconds that fit in what is left of the budget, 1 to `cap`."""
    return max(1, min(cap, int((budget_s - spent_s) / max(epoch_s, 1e-6))))


def split_file(path: Path, part_bytes: int) -> list[Path]:
    """Cut `path` into `path.partN` files of at most `part_bytes`; `cat` joins them back."""
    data = path.read_bytes()
    parts = []
    for index, start in enumerate(range(0, len(data), part_bytes)):
        part = path.with_name(f"{path.name}.part{index}")
        part.write_bytes(data[start : start + part_bytes])
        parts.append(part)
    path.unlink()
    return parts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", required=True, help="an .npz from `ferkit data pack`")
    parser.add_argument("--config", default="configs/gpu_default.yaml")
    parser.add_argument("--out", default=os.environ.get("OUT", "runs/gpu"))
    parser.add_argument("--budget-s", type=float, default=330.0, help="wall clock for all of it")
    parser.add_argument("--part-mb", type=float, default=15.0, help="largest file written")
    parser.add_argument("--set", action="append", default=[], help="key=value, as `ferkit train`")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ferkit-gpu-"))
    try:
        store = unpack_store(args.pack, work / "store.h5")
        unpacked_s = time.monotonic() - start

        def config(folder: str, epochs: int | None):
            recipe = resolve_config(
                args.config, {"data.path": store, "out": work / folder}, args.set
            )
            return apply_overrides(recipe, {"epochs": epochs}) if epochs else recipe

        calibration = train(config("calibrate", 1))
        epoch_s = calibration.history[0].seconds
        cap = config("run", None).epochs
        epochs = epochs_that_fit(args.budget_s, time.monotonic() - start, epoch_s, cap)
        logging.info(
            "one epoch took %.1f s: training %d of at most %d epochs", epoch_s, epochs, cap
        )
        result = train(config("run", epochs))

        weights = load_checkpoint(result.run_dir / BEST).save(out / "best.safetensors", half=True)
        parts = split_file(weights, int(args.part_mb * 1e6))
        for name in (METRICS_CSV, CONFIG_YAML):
            shutil.copy(result.run_dir / name, out / name)
        seconds = sorted(stats.seconds for stats in result.history)
        summary = {
            "config": args.config, "overrides": args.set, "device": result.device,
            "amp": result.amp, "budget_s": args.budget_s, "unpack_s": round(unpacked_s, 1),
            "calibration_epoch_s": round(epoch_s, 2), "epochs": result.epochs, "cap": cap,
            "median_epoch_s": round(seconds[len(seconds) // 2], 2),
            "best_epoch": result.best_epoch, "best_val_acc": result.best_val_acc,
            "wall_s": round(time.monotonic() - start, 1), "parts": [p.name for p in parts],
        }  # fmt: skip
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        logging.info("%s", json.dumps(summary))
        return summary
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
