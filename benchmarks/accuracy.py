"""Shipped models as users get them: accuracy on clean and camera-like faces, and speed.

For each model (default: every shipped name), through the `Recognizer` exactly as
`predict` and `serve` run it (the model's default backend, its stored TTA and
temperature, histogram-equalised crops) on FER-2013 PrivateTest:

- accuracy on the faces as stored, without equalisation (the model card's protocol);
- accuracy through the Recognizer's default preprocessing, on the faces as stored and on
  the same faces made camera-like (`_common.camera_like`: lower contrast, brightness shift,
  gamma, blur, sensor noise) — the drop between the two is the robustness target (≤ 3
  points, issue "pretrained models");
- faces/s through `Recognizer.predict_batch` on 48×48 face crops (detector "none", so only
  cropping, preprocessing and the classifier count), torch/ONNX Runtime on `--threads`.

    python benchmarks/accuracy.py [--models default fast ensemble] [--split val] [--threads 2]

Prints a Markdown table and writes benchmarks/results/accuracy.json (with the CPU flags).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _common import camera_like, report, store_or_exit
from ferkit.infer.recognizer import Recognizer, set_threads
from ferkit.models.checkpoint import shipped_aliases, shipped_models
from ferkit.paths import DEFAULT_STORE
from ferkit.ship import crops_per_second


def accuracy(rec: Recognizer, faces: np.ndarray, labels: np.ndarray) -> float:
    """Each face as the Recognizer crops a whole image (detector "none"), classified."""
    crops = np.stack([rec.crop(face, None) for face in faces])
    probs = rec.classifier.predict_proba(crops)
    return float((probs.argmax(1) == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = sorted(set(shipped_models()) | set(shipped_aliases()))
    parser.add_argument("--models", nargs="+", default=names)
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    parser.add_argument(
        "--split",
        default="test",
        choices=("test", "val"),
        help="test (PrivateTest, reporting) or val (PublicTest, choosing)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16, help="faces per predict_batch call")
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    store_or_exit(args.store)
    from ferkit.data.store import open_store

    with open_store(args.store) as store:
        faces, labels = store.split_arrays(args.split)
    degraded = camera_like(faces)
    images = [np.ascontiguousarray(face) for face in faces]  # predict_batch takes images
    set_threads(args.threads)
    rows = []
    for name in args.models:
        rec = Recognizer(name, detector="none")
        stored = accuracy(Recognizer(name, detector="none", equalize=False), faces, labels)
        clean = accuracy(rec, faces, labels)
        camera = accuracy(rec, degraded, labels)
        rows.append({
            "model": name,
            "backend": type(rec.classifier).__name__,
            "tta": getattr(rec.classifier, "tta", "none"),
            f"{args.split}: as stored (card protocol)": stored,
            "Recognizer: clean": clean,
            "Recognizer: camera-like": camera,
            "drop (points)": 100 * (clean - camera),
            "faces/s": crops_per_second(rec.predict_batch, images, args.batch, args.seconds),
        })  # fmt: skip
        print(rows[-1], flush=True)
    name = "accuracy" if args.split == "test" else "accuracy_val"
    report(name, rows, split=args.split, threads=args.threads, batch=args.batch, faces=len(faces))


if __name__ == "__main__":
    main()
