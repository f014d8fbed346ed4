"""Shared by the benchmark scripts: where the data is, a Markdown table, JSON results."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ferkit.data.readers import locate_fer2013  # noqa: E402
from ferkit.paths import DEFAULT_STORE  # noqa: E402

# The store `ferkit data prepare` writes in the repository (benchmarks run from any folder).
REPO_STORE = Path(__file__).resolve().parents[1] / DEFAULT_STORE
from ferkit.hardware import cpu_summary  # noqa: E402

# The detector rows of benchmarks/recognize.py and wild.py, side by side in one run:
# label: (detector, options). Haar, MTCNN and the SSD as they are by default ("mtcnn" is
# ferkit's default), each also with the other turned-search setting (rotations: the angles
# tried where the upright pass finds no face; MTCNN's and the SSD's default ±20°, Haar's none).
DETECTORS = {
    "haar": ("haar", {}),
    "haar, turned ±20°": ("haar", {"rotations": (-20, 20)}),
    "mtcnn, upright only": ("mtcnn", {"rotations": ()}),
    "mtcnn": ("mtcnn", {}),
    "ssd, upright only": ("ssd", {"rotations": ()}),
    "ssd": ("ssd", {}),
}


def fer2013_or_exit() -> Path:
    """The real archive, or exit 0 with the reason (benchmarks skip where data is absent)."""
    path = locate_fer2013()
    if not path.exists():
        print(f"skipped: FER-2013 archive not found at {path} (set FERKIT_FER2013)")
        sys.exit(0)
    return path


def store_or_exit(store: Path) -> Path:
    """The prepared store, or exit 0 with the reason: the archive missing, or not prepared."""
    fer2013_or_exit()
    if not Path(store).is_file():
        print(f"skipped: no FER-2013 store at {store} (ferkit data prepare)")
        sys.exit(0)
    return Path(store)


def best_of(fn, repeat: int = 3) -> float:
    """Fastest wall time of `repeat` calls, in seconds (least disturbed by other load)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def markdown_table(rows: list[dict]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{v:,.3f}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(name: str, rows: list[dict], **extra) -> Path:
    """Print the table and write benchmarks/results/<name>.json with machine facts."""
    print(markdown_table(rows))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "cpu": cpu_summary(),
            "python": platform.python_version(),
            "load_avg_at_end": os.getloadavg(),
        },
        "rows": rows,
        **extra,
    }
    path.write_text(json.dumps(payload, indent=1))
    print(f"wrote {path}")
    return path


def camera_like(faces, seed: int = 0):
    """FER-2013 faces (N, 48, 48) uint8 made to look like raw camera crops, reproducibly:
    lower contrast, shifted brightness, a random gamma, slight blur and sensor noise (FER
    faces are stretched). The robustness test of benchmarks/recognize.py and accuracy.py."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    out = np.empty_like(faces)
    for i, face in enumerate(faces.astype(np.float32) / 255.0):
        face = cv2.GaussianBlur(face, (3, 3), 0.6)
        face = (face - face.mean()) * rng.uniform(0.35, 0.7) + face.mean()
        face = np.clip(face + rng.uniform(-0.2, 0.2), 0.0, 1.0) ** rng.uniform(0.6, 1.6)
        face = face + rng.normal(0, 0.02, face.shape)
        out[i] = np.clip(face * 255.0, 0, 255).astype(np.uint8)
    return out
