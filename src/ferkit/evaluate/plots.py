"""Figures: class distribution and sample grids of a store; confusion matrices, reliability
diagrams, face grids, Grad-CAM overlays and model comparisons of an evaluation (training
curves are drawn by `ferkit.train.monitor`). matplotlib is imported inside each function
with the non-interactive Agg backend, so importing this module costs nothing and needs no
display."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ferkit.files import save_figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Write the figure atomically and close it (the evaluation figures' resolution)."""
    return save_figure(fig, path, dpi=120, bbox_inches="tight")


def plot_class_distribution(counts: dict[str, dict[str, int]], path: Path) -> Path:
    """Grouped bars: images per class, one bar per split (shares in the labels)."""
    plt = _pyplot()
    splits = list(counts)
    classes = list(next(iter(counts.values())))
    x = np.arange(len(classes))
    width = 0.8 / max(len(splits), 1)
    fig, ax = plt.subplots(figsize=(9, 4))
    for k, split in enumerate(splits):
        values = [counts[split][c] for c in classes]
        total = sum(values) or 1
        bars = ax.bar(x + (k - (len(splits) - 1) / 2) * width, values, width, label=split)
        ax.bar_label(bars, [f"{100 * v / total:.0f}%" for v in values], fontsize=7)
    ax.set_xticks(x, classes)
    ax.set_ylabel("images")
    ax.set_title("class distribution per split")
    ax.legend()
    return _save(fig, path)


def plot_sample_grid(store, path: Path, per_class: int = 8, split: str = "train") -> Path:
    """A grid of the first `per_class` images of each class in one split of a store."""
    plt = _pyplot()
    images, labels = store.split_arrays(split)
    names = store.class_names
    fig, axes = plt.subplots(len(names), per_class, figsize=(per_class, len(names) * 1.05))
    for row, name in enumerate(names):
        picks = np.flatnonzero(labels == row)[:per_class]
        for col in range(per_class):
            ax = axes[row, col]
            ax.axis("off")
            if col < len(picks):
                ax.imshow(images[picks[col]], cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_title(name, fontsize=8, loc="left")
    return _save(fig, path)


def plot_confusion(
    confusion,
    class_names,
    path: Path,
    normalize: bool = False,
    title: str = "",
    columns=None,
    axes: tuple[str, str] = ("true", "predicted"),
) -> Path:
    """Confusion matrix heatmap: counts, or shares of each true class (rows sum to 1).

    `columns` names the columns where they differ from the rows (e.g. FER-2013 labels ×
    FER+ majority, with unknown and not-a-face); `axes` labels the rows and the columns."""
    plt = _pyplot()
    matrix = np.asarray(confusion, dtype=np.float64)
    if normalize:
        matrix = matrix / np.clip(matrix.sum(axis=1, keepdims=True), 1, None)
    columns = class_names if columns is None else columns
    k, m = len(class_names), len(columns)
    fig, ax = plt.subplots(figsize=(1.0 * m + 2, 1.0 * k + 1))
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    peak = matrix.max() or 1
    for i in range(k):
        for j in range(m):
            text = f"{matrix[i, j]:.2f}" if normalize else f"{int(matrix[i, j])}"
            color = "white" if matrix[i, j] > 0.6 * peak else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(m), columns, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel(axes[1])
    ax.set_ylabel(axes[0])
    recall = " (recall on the diagonal)" if columns is class_names else ""
    kind = f"row-normalised{recall}" if normalize else "counts"
    ax.set_title(f"{title} confusion matrix, {kind}".strip(), fontsize=9)
    return _save(fig, path)


def plot_reliability(curves: dict[str, dict], path: Path, title: str = "") -> Path:
    """Reliability diagram: accuracy against confidence per bin for each named set of bins
    (e.g. before and after temperature scaling), with the diagonal of perfect calibration
    and the share of predictions per bin underneath."""
    plt = _pyplot()
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for label, bins in curves.items():
        edges = np.asarray(bins["edges"])
        centres = (edges[:-1] + edges[1:]) / 2
        keep = [i for i, n in enumerate(bins["count"]) if n]
        ax.plot(
            [bins["confidence"][i] for i in keep],
            [bins["accuracy"][i] for i in keep],
            "o-",
            ms=4,
            label=label,
        )
        total = sum(bins["count"]) or 1
        width = (edges[1] - edges[0]) / (len(curves) + 0.5)
        offset = (list(curves).index(label) - (len(curves) - 1) / 2) * width
        hist.bar(centres + offset, np.asarray(bins["count"]) / total, width, label=label)
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"{title} reliability diagram".strip(), fontsize=9)
    hist.set_xlabel("confidence (top probability)")
    hist.set_ylabel("share")
    return _save(fig, path)


def _tile_figure(tiles, captions, path: Path, columns: int, title: str, font: float) -> Path:
    """Equal-size RGB tiles (float, [0, 1]) pasted into one image with a caption band above
    each: one axes and one imshow, so dozens of faces draw in a fraction of a second."""
    plt = _pyplot()
    h, w = tiles[0].shape[:2]
    band, gap = h // 2, max(2, w // 12)
    rows = max(1, -(-len(tiles) // columns))
    cell_h, cell_w = band + h + gap, w + gap
    canvas = np.ones((rows * cell_h, columns * cell_w, 3))
    for k, tile in enumerate(tiles):
        row, col = divmod(k, columns)
        y, x = row * cell_h + band, col * cell_w
        canvas[y : y + h, x : x + w] = tile
    fig, ax = plt.subplots(figsize=(columns * 1.25, rows * 1.25 * cell_h / cell_w + 0.4))
    ax.imshow(canvas, interpolation="nearest")
    ax.axis("off")
    for k, caption in enumerate(captions):
        row, col = divmod(k, columns)
        ax.text(col * cell_w, row * cell_h + band - 2, caption, fontsize=font, va="bottom")
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def _gray_rgb(face: np.ndarray) -> np.ndarray:
    return np.repeat(face[..., None] / 255.0, 3, axis=2)


def plot_face_grid(
    faces: np.ndarray, captions: list[str], path: Path, title: str = "", columns: int = 8
) -> Path:
    """Faces in a grid, each with a caption (e.g. misclassified examples: true/predicted/p)."""
    tiles = [_gray_rgb(face) for face in faces]
    return _tile_figure(tiles, captions, path, min(columns, len(tiles)), title, 6)


def plot_gradcam(panels: list[tuple[np.ndarray, np.ndarray, str]], path: Path, title="") -> Path:
    """Grad-CAM figure: per (face, heatmap in [0, 1], caption) the face and the heatmap
    laid over it (jet colours, 45 %), side by side; up to four panels per row."""
    import matplotlib

    jet = matplotlib.colormaps["jet"]
    tiles, captions = [], []
    for face, heat, caption in panels:
        gray = _gray_rgb(face)
        tiles += [gray, 0.55 * gray + 0.45 * jet(np.clip(heat, 0, 1))[..., :3]]
        captions += [caption, ""]
    return _tile_figure(tiles, captions, path, 2 * min(4, len(panels)), title, 7)


def plot_compare(rows: list[dict], path: Path) -> Path:
    """Bars of accuracy and macro-F1 per model (from `ferkit compare`), best first."""
    plt = _pyplot()
    names = [row["model"] for row in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(rows) + 2), 4))
    for k, key in enumerate(("accuracy", "macro_f1")):
        values = [100 * row[key] for row in rows]
        bars = ax.bar(x + (k - 0.5) * 0.38, values, 0.38, label=key.replace("_", "-"))
        ax.bar_label(bars, [f"{v:.1f}" for v in values], fontsize=7)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend()
    ax.set_title("models compared", fontsize=9)
    return _save(fig, path)
