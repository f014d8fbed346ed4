"""Data benchmark: prepare time, and loading the train split from HDF5 vs JPEG vs CSV.

The three loaders produce the same (N, 48, 48) uint8 array of the train split:
    hdf5   ferkit's store: one contiguous read
    jpeg   a folder of JPEG files (the Kaggle layout, unpacked), decoded with OpenCV
    csv    the fer2013.csv layout, parsed with ferkit's own CSV reader
Targets (issue 2): prepare ≤ 20 s; HDF5 ≥ 20× faster than JPEG decoding. Where the FER+
votes are present, prepare with `--ferplus` is timed beside the plain prepare (alternating,
best of 2 each; FER+ issue: ≤ 3 s more).
"""

from __future__ import annotations

import csv
import tarfile
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from _common import best_of, fer2013_or_exit, report
from ferkit.data import open_store, prepare
from ferkit.data.ferplus import locate_ferplus
from ferkit.data.readers import iter_csv


def prepare_seconds(archive: Path, out: Path, votes: Path | None) -> tuple[float, float | None]:
    """(plain prepare, prepare with FER+ votes or None), each the best of 2, alternating
    so that both see the same machine."""
    plain, joined = [], []
    for _ in range(2 if votes else 1):
        start = time.perf_counter()
        prepare(archive, out, force=True)
        plain.append(time.perf_counter() - start)
        if votes:
            start = time.perf_counter()
            prepare(archive, out.with_name("ferplus.h5"), force=True, ferplus=votes)
            joined.append(time.perf_counter() - start)
    return min(plain), (min(joined) if joined else None)


def main() -> None:
    archive = fer2013_or_exit()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        votes = locate_ferplus()
        prepare_s, ferplus_s = prepare_seconds(
            archive, tmp / "fer2013.h5", votes if votes.exists() else None
        )

        jpeg_dir = tmp / "jpeg"
        with tarfile.open(archive) as tar:
            tar.extractall(jpeg_dir, members=[m for m in tar if m.name.startswith("train/")],
                           filter="data")  # fmt: skip
        jpeg_files = sorted(jpeg_dir.rglob("*.jpg"))
        with open_store(tmp / "fer2013.h5") as store:
            train, labels = store.split_arrays("train")
        csv_path = tmp / "train.csv"
        with open(csv_path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["emotion", "pixels", "Usage"])
            for image, label in zip(train, labels):
                writer.writerow([int(label), " ".join(map(str, image.ravel())), "Training"])

        def load_hdf5():
            with open_store(tmp / "fer2013.h5") as store:
                return store.split_arrays("train")[0]

        def load_jpeg():
            return np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in jpeg_files])

        def load_csv():
            with open(csv_path, newline="") as f:
                return np.stack([item.payload for item in iter_csv(f, csv_path.name)])

        assert load_hdf5().shape == (len(train), 48, 48)
        hdf5_s = best_of(load_hdf5, 5)
        jpeg_s = best_of(load_jpeg, 2)
        csv_s = best_of(load_csv, 2)

    rows = [
        {"step": "prepare full archive (read+clean+write)", "seconds": prepare_s, "x vs jpeg": "-"},
        {"step": f"load train ({len(train):,}) from HDF5", "seconds": hdf5_s,
         "x vs jpeg": f"{jpeg_s / hdf5_s:.0f}x"},
        {"step": f"load train ({len(jpeg_files):,}) decoding JPEG files", "seconds": jpeg_s,
         "x vs jpeg": "1x"},
        {"step": f"load train ({len(train):,}) parsing CSV", "seconds": csv_s,
         "x vs jpeg": f"{jpeg_s / csv_s:.2f}x"},
    ]  # fmt: skip
    if ferplus_s is not None:
        rows.insert(1, {"step": "prepare with --ferplus votes", "seconds": ferplus_s,
                        "x vs jpeg": f"+{ferplus_s - prepare_s:.1f} s"})  # fmt: skip
    report(
        "data",
        rows,
        prepare_s=prepare_s,
        prepare_ferplus_s=ferplus_s,
        hdf5_s=hdf5_s,
        jpeg_s=jpeg_s,
        csv_s=csv_s,
        hdf5_speedup_vs_jpeg=jpeg_s / hdf5_s,
        hdf5_speedup_vs_csv=csv_s / hdf5_s,
    )


if __name__ == "__main__":
    main()
