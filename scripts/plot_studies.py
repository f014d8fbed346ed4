"""Keep the full-budget study results (issue 19) and redraw docs/studies.png from them.

Each study at budget 1 takes one to three hours here and its run folder rarely outlives the
session that ran it, so `ferkit studies run`'s own report (the studies in its `--out` folder)
loses the earlier ones. This script keeps one durable row per study in
docs/studies_full_budget.json
— the measured numbers, the CPU flags from the run's metrics.csv and where the row came from —
and draws the plot of docs/studies.md (reported number vs ferkit's) from all of them. A study
run without the ImageNet weights its preset names (`--set model.args.pretrained=null`, or 5c/5d
without a local file) is the variant "from scratch", kept beside the pretrained row.

    python scripts/plot_studies.py --add runs/studies/optuna_cnn/study.json --session 21 \
        [--note "wall_s counts only the last command; ..."]
    python scripts/plot_studies.py                  # redraw only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ferkit.files import atomic_text  # noqa: E402
from ferkit.paths import METRICS_CSV  # noqa: E402
from ferkit.studies.presets import load_presets  # noqa: E402
from ferkit.studies.table import shipped_rows, write_plot  # noqa: E402
from ferkit.train.monitor import read_metrics  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"


def run_cpu_flags(run_dir: Path) -> str:
    """The CPU flags recorded by the run's epochs (several where it moved between machines)."""
    metrics = run_dir / METRICS_CSV
    if not metrics.is_file():
        raise SystemExit(f"{metrics}: missing; the row needs the run's CPU flags")
    return " | ".join(sorted({epoch.cpu or "unknown" for epoch in read_metrics(metrics)}))


def row_from_study(path: Path, session: str, note: str) -> dict:
    """The durable row of a finished study's `study.json` (`ferkit.studies.reproduce`)."""
    try:
        study = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"{path}: not a readable study result ({error})") from None
    if study.get("kind") != "train" or study.get("budget") != 1:
        raise SystemExit(f"{path}: not a training study at budget 1")
    return {
        "name": study["name"],
        "variant": "from scratch" if "FROM SCRATCH" in (study.get("weights") or "") else "",
        "val_accuracy": study["val"]["accuracy"],
        "test_accuracy": study["test"]["accuracy"],
        "test_macro_f1": study["test"]["macro_f1"],
        "train_acc": study["train_acc"],
        "epochs_run": study["epochs_run"],
        "epochs_preset": study["epochs_preset"],
        "best_epoch": study["best_epoch"],
        "wall_s": study["wall_s"],
        "tuning": study.get("tuning", {}).get("note"),
        "cpu_flags": run_cpu_flags(Path(study["run_dir"])),
        "session": session,
        "note": note,
        "source": f"{path} (run folder {study['run_dir']})",
    }


def plot_rows(results: list[dict], presets: dict) -> list[dict]:
    """`write_plot`'s rows: measured numbers beside each preset's reported ones."""
    rows = []
    for result in results:
        study = presets[result["name"]]
        rows.append({
            "kind": "train",
            "number": study.number,
            "name": study.name + (f" ({result['variant']})" if result["variant"] else ""),
            "val": {"accuracy": result["val_accuracy"]},
            "test": {"accuracy": result["test_accuracy"]},
            "reported_values": [vars(r) for r in study.reported],
        })  # fmt: skip
    return sorted(rows, key=lambda row: (row["number"], row["name"]))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=DOCS / "studies_full_budget.json")
    parser.add_argument("--plot", type=Path, default=DOCS / "studies.png")
    parser.add_argument("--add", type=Path, help="a finished study's study.json to (re)place")
    parser.add_argument("--session", default="", help="the session that ran it, for the row")
    parser.add_argument("--note", default="", help="what the numbers alone do not say")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text()) if args.results.is_file() else []
    presets = load_presets()
    if args.add:
        row = row_from_study(args.add, args.session, args.note)
        same = (row["name"], row["variant"])
        results = [r for r in results if (r["name"], r["variant"]) != same] + [row]
        results.sort(key=lambda r: (presets[r["name"]].number, r["variant"]))
        atomic_text(args.results, json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    unknown = sorted({r["name"] for r in results} - set(presets))
    if unknown:
        raise SystemExit(f"{args.results}: rows for unknown studies {unknown}")
    title = "FER-2013 at full budget (issue 19): original studies reproduced by ferkit"
    write_plot(plot_rows(results, presets), shipped_rows(), args.plot, title)
    print(f"{len(results)} studies → {args.plot}")
    return results


if __name__ == "__main__":
    main()
