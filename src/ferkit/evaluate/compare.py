"""`ferkit compare runs/*`: evaluated runs side by side — a Markdown table and a bar chart.

Each path is a folder holding a report.json (written by `ferkit evaluate`) or a report.json
itself; folders without one (runs not evaluated yet, other folders a shell glob picked up)
are listed as skipped. Rows are sorted by accuracy. Numbers from different data (another
split, store or folder) or test-time augmentation are not comparable, and the table says
so when that happens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ferkit.errors import DataError

COLUMNS = ("model", "arch", "params", "accuracy", "macro_f1", "ece", "crops_per_s", "data", "tta")


@dataclass
class Comparison:
    rows: list[dict]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def comparable(self) -> bool:
        """True when every row was evaluated on the same data with the same TTA."""
        return len({(r["data"], r["tta"]) for r in self.rows}) <= 1

    def markdown(self) -> str:
        lines = [
            "| model | arch | params | accuracy % | macro-F1 % | ECE % | crops/s | data | TTA |",
            "|---|---|---:|---:|---:|---:|---:|---|---|",
        ]
        for r in self.rows:
            params = f"{r['params']:,}" if r["params"] is not None else "–"
            speed = f"{r['crops_per_s']:,.0f}" if r["crops_per_s"] is not None else "–"
            lines.append(
                f"| {r['model']} | {r['arch']} | {params} | {100 * r['accuracy']:.2f} | "
                f"{100 * r['macro_f1']:.2f} | {100 * r['ece']:.2f} | {speed} | "
                f"{r['data']} | {r['tta']} |"
            )
        if not self.comparable:
            lines += ["", "**warning:** rows were evaluated on different data or TTA modes."]
        if self.skipped:
            lines += [""] + [f"- skipped `{path}`: {why}" for path, why in self.skipped]
        return "\n".join(lines) + "\n"


def _report_path(path: Path) -> Path:
    return path / "report.json" if path.is_dir() else path


def _row(name: str, report: dict) -> dict:
    members = report["members"]
    head = report["headline"]["metrics"]
    data = report["data"]
    if data.get("kind") == "store":
        where = f"{Path(data['path']).name}:{data['split']} ({data['store_sha256'][:8]})"
    else:
        where = f"folder {Path(data['path']).name}"
    params = [m.get("params") for m in members]
    speeds = [m.get("crops_per_s") for m in members]
    return {
        "model": name,
        "arch": "+".join(str(m.get("arch") or m.get("backend")) for m in members),
        "params": sum(params) if None not in params else None,
        "accuracy": head["accuracy"],
        "macro_f1": head["macro"]["f1"],
        "ece": head["ece"],
        # an ensemble runs every member on each crop: its rate is the harmonic sum
        "crops_per_s": 1.0 / sum(1.0 / s for s in speeds) if None not in speeds else None,
        "data": where,
        "tta": report["tta"]["mode"],
    }


def compare(paths: Sequence[str | Path], out: str | Path | None = None) -> Comparison:
    """Rows of every evaluated path (best accuracy first); with `out`, also write
    compare.md and compare.png there."""
    rows, skipped = [], []
    for path in map(Path, paths):
        report_file = _report_path(path)
        if not report_file.is_file():
            skipped.append((str(path), "no report.json (run `ferkit evaluate` on it first)"))
            continue
        try:
            report = json.loads(report_file.read_text())
            rows.append(_row(report_file.parent.name, report))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            skipped.append((str(path), f"unreadable report.json ({type(error).__name__}: {error})"))
    if not rows:
        raise DataError(
            "nothing to compare: no evaluated run among "
            + ", ".join(str(p) for p in paths)
            + " (each needs a report.json from `ferkit evaluate`)"
        )
    rows.sort(key=lambda r: -r["accuracy"])
    result = Comparison(rows, skipped)
    if out is not None:
        from ferkit.evaluate.plots import plot_compare
        from ferkit.files import atomic_text

        out = Path(out)
        result.files = [
            atomic_text(out / "compare.md", result.markdown()),
            plot_compare(rows, out / "compare.png"),
        ]
    return result
