"""Evaluation: honest metrics, calibration, test-time augmentation, ensembles, labelled
folders, Grad-CAM and comparisons of runs.

    evaluate(models, data=..., split="test", tta="none")  → report folder (workflow.py)
    compare.compare(paths)                                 → table of evaluated runs
    explain_images(model, images, out)                     → Grad-CAM figures

Modules: metrics (scikit-learn metrics), calibration (ECE, temperature scaling), tta,
ensemble (members and their average), folder (labelled image folders), explain (Grad-CAM),
workflow (evaluate, measure), dataset (the faces scored), report_files
(report.json / report.md / figures), compare, plots (matplotlib figures).
Names are imported lazily, so `ferkit.evaluate.plots` stays cheap to import.
"""

from __future__ import annotations

from importlib import import_module

_LAZY = {
    "evaluate": "ferkit.evaluate.workflow",
    "EvalResult": "ferkit.evaluate.workflow",
    "explain_images": "ferkit.evaluate.explain",
    "gradcam": "ferkit.evaluate.explain",
    "classification_metrics": "ferkit.evaluate.metrics",
    "fit_temperature": "ferkit.evaluate.calibration",
    "predict_tta": "ferkit.evaluate.tta",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ferkit.evaluate' has no attribute {name!r}")
