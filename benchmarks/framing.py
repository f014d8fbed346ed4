"""Measure FER-2013's face framing: where MTCNN finds the eyes, nose and mouth in the
48×48 training faces, and where each detector's box lies relative to that frame.

Training faces (a seeded sample of the train split) are upscaled 4× and set in a mid-gray
border, then each detector runs over them (`ferkit.infer.align.measure_framing`). The
printed medians are the `FER_TEMPLATE` and `FER_BOX_FRAMES` constants of
`ferkit.preprocess`, which alignment uses at inference; the IQRs say how much real faces
spread around them.

    python benchmarks/framing.py [--faces 3000] [--store data/fer2013.h5]

Prints a table and writes benchmarks/results/framing.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _common import report
from ferkit.data.store import open_store
from ferkit.infer.align import measure_framing
from ferkit.infer.faces import create_detector
from ferkit.infer.recognizer import set_threads
from ferkit.paths import DEFAULT_STORE

NAMES = ("left eye", "right eye", "nose tip", "left mouth", "right mouth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=3000)
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    set_threads(1)
    with open_store(args.store) as store:
        images, _ = store.split_arrays("train")
    pick = np.sort(np.random.default_rng(args.seed).choice(len(images), args.faces, False))
    faces = images[pick]
    rows, summaries = [], {}
    for name in ("mtcnn", "haar"):
        start = time.perf_counter()
        framing = measure_framing(faces, create_detector(name, max_side=None))
        summary = framing.summary()
        summary["seconds"] = round(time.perf_counter() - start, 1)
        summaries[name] = summary
        frame = summary["box_frame"]
        rows.append({"detector": name, "faces": summary["faces"],
                     "found": summary["found"] / summary["faces"],
                     "frame dy": frame["median"][1], "frame side": frame["median"][2],
                     "IQR dy, side": f"{frame['iqr'][1]:.3f}, {frame['iqr'][2]:.3f}"})  # fmt: skip
    template = summaries["mtcnn"]["template"]
    for name, point, raw, iqr in zip(
        NAMES, template["median"], template["raw_median"], template["iqr"], strict=True
    ):
        rows.append({"detector": f"mtcnn {name}", "faces": "", "found": "",
                     "frame dy": f"x {point[0]:.3f} (raw {raw[0]:.3f}, IQR {iqr[0]:.3f})",
                     "frame side": f"y {point[1]:.3f} (raw {raw[1]:.3f}, IQR {iqr[1]:.3f})",
                     "IQR dy, side": ""})  # fmt: skip
    report("framing", rows, store=str(args.store), sample=args.faces, seed=args.seed,
           summaries=summaries)  # fmt: skip


if __name__ == "__main__":
    main()
