"""The report folder of an evaluation: figures, report.json and report.md.

`write_figures` draws the confusion matrices (counts and row-normalised), the reliability
diagram before/after temperature scaling, a grid of the most confident mistakes, optional
Grad-CAM heatmaps of mistakes, and links (or draws) each run's training curves.
`write_report` writes report.json (everything, machine-readable) and report.md (the same
for a reader, figures linked), each atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ferkit.evaluate import plots
from ferkit.files import atomic_text
from ferkit.paths import CURVES_PNG, METRICS_CSV

MISCLASSIFIED = 32  # examples in the misclassified grid and in report.json


def mistakes(labels: np.ndarray, probs: np.ndarray, limit: int) -> np.ndarray:
    """Indices of misclassified examples, most confident mistakes first."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    return wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:limit]


def _curves(members, out: Path) -> dict[str, Path]:
    """Each run's curves.png, drawn from its metrics.csv where the trainer has not yet."""
    from ferkit.train.monitor import plot_curves, read_metrics

    found = {}
    for member in members:
        run = member.run_dir or (member.checkpoint.parent if member.checkpoint else None)
        if run is None or not (run / METRICS_CSV).is_file():
            continue
        curves = run / CURVES_PNG
        if not curves.is_file():
            target = out / f"curves-{run.resolve().name}.png" if run != out else curves
            curves = plot_curves(read_metrics(run / METRICS_CSV), target)
        found[member.name] = curves
    return found


def _gradcam(report, out, dataset, order, members, count) -> Path | None:
    from ferkit.evaluate.explain import gradcam

    member = next((m for m in members if m.model is not None), None)
    if member is None or count <= 0 or len(order) == 0:
        report["explain"] = None if member else "skipped: no PyTorch member for Grad-CAM"
        return None
    picks = order[:count]
    faces, labels, names = dataset.faces[picks], dataset.labels[picks], dataset.class_names
    pred_maps, probs, layer = gradcam(member.model, faces)
    true_maps, _, _ = gradcam(member.model, faces, targets=labels.tolist())
    panels = []
    for k in range(len(picks)):
        p = int(probs[k].argmax())
        panels.append((faces[k], pred_maps[k], f"predicted {names[p]} {probs[k, p]:.0%}"))
        panels.append(
            (faces[k], true_maps[k], f"true {names[labels[k]]} {probs[k, labels[k]]:.0%}")
        )
    report["explain"] = {"member": member.name, "layer": layer, "faces": len(picks)}
    title = f"Grad-CAM of {member.name} ({layer}) on misclassified faces: predicted vs true"
    return plots.plot_gradcam(panels, out / "gradcam_misclassified.png", title=title)


def write_figures(report, out, dataset, probs, members, explain: int = 0) -> dict[str, Path]:
    """Draw every figure of the report into `out`; records links and examples in `report`."""
    out = Path(out)
    head = report["headline"]
    names, metrics = dataset.class_names, head["metrics"]
    title = head["name"]
    figures = {
        "confusion": plots.plot_confusion(
            metrics["confusion"], names, out / "confusion.png", title=title
        ),
        "confusion_normalized": plots.plot_confusion(
            metrics["confusion"], names, out / "confusion_normalized.png", True, title
        ),
    }
    curves = {"before calibration": metrics["reliability"]}
    if head["calibration"]:
        t = head["calibration"]["temperature"]
        curves[f"after temperature scaling (T={t:.2f})"] = head["calibration"]["reliability_after"]
    figures["reliability"] = plots.plot_reliability(curves, out / "reliability.png", title)
    order = mistakes(dataset.labels, probs, max(MISCLASSIFIED, explain))
    shown = order[:MISCLASSIFIED]
    report["misclassified"] = [
        {
            "id": dataset.ids[i],
            "true": names[dataset.labels[i]],
            "predicted": names[int(probs[i].argmax())],
            "p_predicted": float(probs[i].max()),
            "p_true": float(probs[i, dataset.labels[i]]),
        }
        for i in shown
    ]
    if len(shown):
        captions = [
            f"{m['true']}→{m['predicted']}\np={m['p_predicted']:.2f}"
            for m in report["misclassified"]
        ]
        figures["misclassified"] = plots.plot_face_grid(
            dataset.faces[shown], captions, out / "misclassified.png",
            title=f"{title}: most confident mistakes (true→predicted, probability)",
        )  # fmt: skip
    if explain:
        gradcam = _gradcam(report, out, dataset, order, members, explain)
        if gradcam is not None:
            figures["gradcam"] = gradcam
    for name, path in _curves(members, out).items():
        figures[f"curves {name}"] = path
    report["files"] = {key: os.path.relpath(path, out) for key, path in figures.items()}
    return figures


def _pct(value) -> str:
    return "–" if value is None or value != value else f"{100 * value:.2f}"


def _metric_row(name: str, entry: dict, speed: str) -> str:
    m, cal = entry["metrics"], entry.get("calibration")
    lo, hi = m["accuracy_ci95"]
    ece_after = _pct(cal["ece_after"]) if cal else "–"
    temperature = f"{cal['temperature']:.2f}" if cal else "–"
    return (
        f"| {name} | {_pct(m['accuracy'])} [{_pct(lo)}, {_pct(hi)}] | "
        f"{_pct(m['balanced_accuracy'])} | {_pct(m['macro']['f1'])} | "
        f"{_pct(m['weighted']['f1'])} | {_pct(m['top2_accuracy'])} | {m['nll']:.4f} | "
        f"{_pct(m['ece'])} | {temperature} | {ece_after} | {speed} |"
    )


def render_markdown(report: dict) -> str:
    """report.md: summary table, protocol, per-class metrics, confusions, figures."""
    data, head, files = report["data"], report["headline"], report.get("files", {})
    lines = [f"# Evaluation: {head['name']}", ""]
    if data["kind"] == "store":
        lines.append(
            f"Data: `{data['path']}`, split **{data['split']} ({data['split_label']})**, "
            f"{data['n']:,} images; store sha256 `{data['store_sha256'][:16]}…`; "
            f"leakage-cleaned: {'yes' if data['leakage_cleaned'] else 'no'}."
        )
    else:
        lines.append(
            f"Data: folder `{data['path']}`, {data['n']:,} images, detector "
            f"`{data['detector']}`; {data['failures']['count']} unreadable file(s) skipped, "
            f"{data['no_face']['count']} image(s) without a detected face classified whole."
        )
    if "labels" in data:
        left_out = ", ".join(f"{k} {v:,}" for k, v in data["labels"]["left_out"].items())
        lines.append(f"Labels: {data['labels']['rule']}; left out: {left_out}.")
    if data.get("scoring"):
        lines.append(f"Classes: {data['scoring']}.")
    views = report["tta"]["views"]
    lines += [
        f"Test-time augmentation: {report['tta']['mode']} ({views} view{'s' * (views > 1)}).",
        "",
    ]
    lines += [
        "| model | accuracy % [95% CI] | balanced acc % | macro-F1 % | weighted-F1 % | "
        "top-2 % | NLL | ECE % | T | ECE after T % | crops/s |",
        "|" + "---|" * 11,
    ]
    for row in report["members"]:
        lines.append(_metric_row(row["name"], row, f"{row['crops_per_s']:,.0f}"))
    if report["ensemble"]:
        lines.append(_metric_row("**ensemble**", report["ensemble"], "–"))
    present = head["metrics"]["macro"].get("classes", [])
    if present and len(present) < len(head["metrics"]["per_class"]):
        lines += ["", f"Macro averages and balanced accuracy are over the {len(present)} "
                  f"classes present in the labels: {', '.join(present)}."]  # fmt: skip
    proto = report["protocol"]
    lines += ["", "## Protocol", "", f"- reported on: {proto['reported_on']}"]
    lines.append(
        f"- model selection / early stopping: {', '.join(proto['model_selection']) or 'unknown'}"
    )
    lines.append(f"- calibration (temperature): {proto['calibration'] or 'none fitted here'}")
    lines += [f"- **warning:** {w}" for w in proto["warnings"]]
    metrics = head["metrics"]
    lines += [
        "",
        f"## Per class ({head['name']})",
        "",
        "| class | precision % | recall % | F1 % | support |",
        "|---|---|---|---|---|",
    ]
    for name, c in metrics["per_class"].items():
        lines.append(
            f"| {name} | {_pct(c['precision'])} | {_pct(c['recall'])} | {_pct(c['f1'])} | "
            f"{c['support']} |"
        )
    lines += ["", "Most confused (true → predicted):", ""]
    lines += [
        f"- {p['true']} → {p['predicted']}: {p['count']} "
        f"({_pct(p['share_of_true'])} % of {p['true']})"
        for p in metrics["most_confused"]
    ] or ["- none"]
    lines += ["", "```", metrics["classification_report"].rstrip(), "```", "", "## Figures", ""]
    lines += [f"- {key}: [{path}]({path})" for key, path in files.items()]
    if data["kind"] == "folder" and data["failures"]["count"]:
        lines += ["", f"## Unreadable files ({data['failures']['count']})", ""]
        lines += [f"- `{name}`: {reason}" for name, reason in data["failures"]["files"]]
    return "\n".join(lines) + "\n"


def _finite(value):
    """JSON without NaN: undefined metrics (e.g. balanced accuracy of one class) → null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_report(report: dict, out: str | Path) -> list[Path]:
    """Write report.json and report.md into `out`; returns their paths."""
    out = Path(out)
    text = json.dumps(_finite(report), indent=1, allow_nan=False)
    json_path = atomic_text(out / "report.json", text + "\n")
    md_path = atomic_text(out / "report.md", render_markdown(report))
    return [json_path, md_path]
