"""`studies.md` and `studies.png`: each study's reported number next to ferkit's measurement.

The table puts, per study, what the original reported (with the split it refers to),
ferkit's PublicTest and PrivateTest accuracy and PrivateTest macro-F1 of the best-val
checkpoint, the train accuracy of that epoch, the epochs actually run, the budget and the
wall time; then the shipped models (`fast`, `default`) from their model cards. Both files
are written to a temporary name and renamed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ferkit.files import atomic_text, save_figure
from ferkit.hardware import cpu_summary

# What the table reads of a row, by kind: a row written by an older ferkit that lacks any of
# these is left out of the table rather than failing it after hours of training.
_ROW_KEYS = {"number", "title", "name", "differs", "wall_s"}
_KIND_KEYS = {
    "train": {"reported", "reported_values", "val", "test", "train_acc", "epochs_run",
              "epochs_preset", "stopped_early", "budget", "device"},
    "recognize": {"video", "model"},
}  # fmt: skip


def reportable(row: dict) -> bool:
    """Whether `write_report` can show this study.json row."""
    return _ROW_KEYS | _KIND_KEYS.get(row.get("kind"), {"kind"}) <= set(row)


def shipped_rows() -> list[dict]:
    """The shipped models' card numbers (no TTA, as the studies), or why there are none."""
    from ferkit.models.checkpoint import shipped_aliases, shipped_models, weights_dir

    rows = []
    aliases = shipped_aliases()
    for name in ("default", "fast"):
        card = weights_dir() / f"{name}.card.json"
        if name not in shipped_models() or not card.is_file():
            target = aliases.get(name)
            note = f"no separate `{name}` model yet" + (
                f" (the name is an alias of `{target}`)" if target else " (not shipped)"
            )
            rows.append({"name": name, "note": note})
            continue
        data = json.loads(card.read_text())
        plain = data["results"]["by_tta"]["none"]
        chosen = data["results"].get("tta_chosen_on_val", "none")
        training = data["training"]["config"]
        rows.append({
            "name": name,
            "val": plain["val"]["accuracy"],
            "test": plain["test"]["accuracy"],
            "test_macro_f1": plain["test"]["macro_f1"],
            "test_tta": data["results"]["test_accuracy"] if chosen != "none" else None,
            "tta": chosen,
            "epochs": data["training"].get("epoch_selected", training["epochs"]),
            "epochs_total": training["epochs"],
            "wall_s": data["training"].get("wall_time_s"),
            "model": f"{data['architecture']['arch']} {data['architecture']['arch_kwargs']}",
        })  # fmt: skip
    return rows


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def _time(seconds) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _training_line(row: dict, earlier: bool) -> str:
    epochs = f"{row['epochs_run']} / {row['epochs_preset']}"
    if row["stopped_early"]:
        epochs += " (early stop)"
    subset = f", {row['train_images']} train images" if row.get("train_images") else ""
    reported = "<br>".join(row["reported"]) or "no number given"
    return (
        f"| {row['number']} | {row['title']} (`{row['name']}`){' †' * earlier} | {reported} "
        f"| {_pct(row['val']['accuracy'])} | {_pct(row['test']['accuracy'])} "
        f"| {row['test']['macro_f1']:.3f} | {_pct(row['train_acc'])} | {epochs} "
        f"| {row['budget']:g}{subset} | {_time(row['wall_s'])} |"
    )


def _shipped_line(row: dict) -> str:
    if "note" in row:
        return f"| — | ferkit `{row['name']}` | — | {row['note']} | | | | | | |"
    tta = f" ({row['tta']} TTA: {_pct(row['test_tta'])})" if row.get("test_tta") else ""
    return (
        f"| — | ferkit `{row['name']}` (shipped, {row['model']}) | — "
        f"| {_pct(row['val'])} | {_pct(row['test'])}{tta} | {row['test_macro_f1']:.3f} | — "
        f"| {row['epochs_total']} / {row['epochs_total']} | full | {_time(row['wall_s'])} |"
    )


def _clip_line(clip: dict) -> str:
    if clip["source"] == "given clip":
        return f"`{Path(clip['path']).name}` (given with `--clip`, as recorded)"
    return (
        f"{clip['seconds']:g} s at {clip['fps']:g} fps, 640×480, {clip['source']}, noise σ "
        f"{clip['noise']:g}, exposure ±{100 * clip['exposure']:g} %"
    )


def _video_section(row: dict, earlier: bool) -> list[str]:
    video = row["video"]
    lines = [
        f"### Study {row['number']}: {row['title']} (`{row['name']}`){' †' * earlier}",
        "",
        f"Model: `{row['model']}`; detector {video['detector']}. No emotion labels exist for "
        "the clips: what is measured is how the output behaves over time.",
        "",
        "| clip | smoothing | frames with a face | face tracks | label changes / s (main track) "
        "| most frequent label |",
        "|---|---|---|---|---|---|",
    ]
    for measured in video["clips"]:  # frames/s is in study.json; speed is recognize.py's
        clip = _clip_line(measured["clip"])
        for p in measured["passes"]:
            lines.append(
                f"| {clip} | {p['smoothing']} | {p['face_frames']} / {p['frames']} "
                f"| {p['tracks']} | {p['flicker_per_s']:.2f} | {p['top_label']} "
                f"({p['top_share']:.0%}) |"
            )
    return [*lines, ""]


def write_plot(
    rows: list[dict],
    shipped: list[dict],
    path: Path,
    title: str = "FER-2013: original studies reproduced by ferkit",
) -> Path | None:
    """Grouped bars: PublicTest and PrivateTest accuracy per study and shipped model, with
    each study's reported number (a dot, or a bar for a range) where it gave one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [
        (
            f"{r['number']} {r['name']}",
            r["val"]["accuracy"],
            r["test"]["accuracy"],
            r["reported_values"],
        )
        for r in rows
        if r["kind"] == "train"
    ]
    entries += [(f"ferkit {s['name']}", s["val"], s["test"], []) for s in shipped if "val" in s]
    if not entries:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(entries) + 2), 4.5))
    xs = range(len(entries))
    ax.bar([x - 0.2 for x in xs], [100 * e[1] for e in entries], 0.4, label="ferkit PublicTest")
    ax.bar([x + 0.2 for x in xs], [100 * e[2] for e in entries], 0.4, label="ferkit PrivateTest")
    marked = False
    for x, entry in zip(xs, entries, strict=True):
        for reported in entry[3]:
            if "train" in reported["metric"]:
                continue
            mid = (reported["low"] + reported["high"]) / 2
            half = (reported["high"] - reported["low"]) / 2
            label = None if marked else "reported by the original (val/test)"
            ax.errorbar(x, mid, yerr=half or None, fmt="kD", capsize=4, label=label)
            marked = True
    ax.set_xticks(list(xs), [e[0] for e in entries], rotation=30, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def write_report(
    rows: list[dict],
    out: Path,
    *,
    data: Path,
    command: str | None = None,
    earlier: frozenset[str] = frozenset(),
) -> tuple[Path, Path | None]:
    """Write `<out>/studies.md` and `<out>/studies.png`; returns their paths. `earlier`:
    the names of rows finished by earlier commands, marked † (the machine line is this
    command's)."""
    out.mkdir(parents=True, exist_ok=True)
    shipped = shipped_rows()
    plot = write_plot(rows, shipped, out / "studies.png")
    trained = [r for r in rows if r["kind"] == "train"]
    total = sum(r["wall_s"] for r in rows)
    lines = [
        "# The original studies, reproduced by ferkit on FER-2013",
        "",
        f"Command: `{command or 'ferkit studies run'}`"
        + (" (rows marked † were finished by earlier commands in this folder)" if earlier else "")
        + "  ",
        f"Data: `{data}`; machine: {cpu_summary()}, "
        f"device {', '.join(sorted({r['device'] for r in trained})) or '—'}; "
        f"total wall time {_time(total)}; written {time.strftime('%Y-%m-%d %H:%M %Z')}.",
        "",
        "Protocol: every study trains on the training split; its best epoch is chosen on val "
        "(PublicTest); that checkpoint is evaluated with `ferkit evaluate` (no TTA) on PublicTest "
        "and PrivateTest. PrivateTest never served a choice. *Budget* is the fraction of the "
        "preset's training (epochs × images; below one epoch, one epoch on a stratified subset) "
        "and of study 1's search that was run: below 1 the numbers are a reduced-budget "
        "measurement, not the study at full length. Train accuracy is the "
        "running accuracy on augmented batches during the best epoch.",
        "",
        "| # | study | reported by the original | ferkit PublicTest | ferkit PrivateTest "
        "| PrivateTest macro-F1 | ferkit train acc | epochs run / preset | budget | wall time |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[_training_line(r, r["name"] in earlier) for r in trained],
        *[_shipped_line(s) for s in shipped],
        "",
    ]
    if plot is not None:
        lines += [f"![accuracy per study]({plot.name})", ""]
    for row in rows:
        if row["kind"] == "recognize":
            lines += _video_section(row, row["name"] in earlier)
    lines += ["## What each preset does differently from the original", ""]
    for row in rows:
        notes = [row["differs"]]
        if row.get("tuning"):
            notes.append(row["tuning"]["note"] + ".")
        if row.get("weights"):
            notes.append(f"**{row['weights']}**.")
        lines.append(f"- **{row['number']} {row['title']}** (`{row['name']}`): {' '.join(notes)}")
    table = atomic_text(out / "studies.md", "\n".join(lines) + "\n")
    return table, plot
