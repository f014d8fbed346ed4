"""End-to-end recognition speed, detector recall and flicker on synthetic 640×480 videos.

Videos: the bundled astronaut head (NASA, public domain) pasted on a blurred background,
1 or 4 faces per frame, each with its own scale, flip, brightness/contrast and drift, plus
per-frame sensor noise and exposure jitter; the ground-truth face boxes are known. Written
as mp4 and read back, so decoding counts.

Measured side by side in one run, per detector (`DETECTORS`: Haar and MTCNN as they are by
default, each also with the other turned-search setting) and per face count:
- frames/s of `Recognizer.stream` with detection on every frame (no tracking) and with
  the default tracking (detect every n-th frame, IoU tracker, moving-average smoothing;
  the fastest of --repeat passes),
  both by the wall clock and per CPU-second (steadier on a shared machine); torch, OpenCV
  and ONNX Runtime as the CLI runs them (one thread for torch and OpenCV); the model is
  loaded by name, so the classifier backend is the default one (recorded per row);
- recall: share of ground-truth faces reported with IoU ≥ 0.4, and false faces per frame,
  also on a clip with no face at all (photos of objects, animals and textures);
- flicker (trained weights and the FER-2013 store): label changes per second of still
  test faces under camera jitter, without smoothing, with EMA and with a moving average;
- with trained weights and the FER-2013 store: test accuracy with and without histogram
  equalisation of the crops, on the faces as stored and made camera-like (lower contrast,
  brightness shift, gamma, blur, noise) — does equalising live faces help?

    python benchmarks/recognize.py [--frames 60] [--model PATH] [--quick] [--only PART]
                                   [--detectors LABEL ...] [--repeat 3]

Prints Markdown tables and writes benchmarks/results/recognize.json (with --only, that
part; the others stay as they were). The clip without faces needs scikit-image.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from _common import DETECTORS, camera_like, cpu_summary
from ferkit.infer.demo import sample_image
from ferkit.infer.frames import read_image
from ferkit.infer.loading import choose_model
from ferkit.infer.recognizer import Recognizer, set_threads
from ferkit.infer.smoothing import SmoothingConfig, flicker
from ferkit.infer.tracking import TrackingConfig, iou_matrix
from ferkit.paths import DEFAULT_STORE

SIZE = (640, 480)
FPS = 30.0
HEAD = (90, 20, 180, 180)  # (x, y, w, h) of the head in the bundled 400×400 portrait
FACE_IN_HEAD = (50, 25, 72, 90)  # the face inside that crop (hand-measured)
MATCH_IOU = 0.4
RESULTS = Path(__file__).parent / "results" / "recognize.json"


def make_video(path: Path, faces: int, frames: int, seed: int = 0) -> list[list[tuple]]:
    """Write the benchmark clip; return the ground-truth face boxes of every frame."""
    rng = np.random.default_rng(seed)
    portrait = read_image(sample_image())
    x, y, w, h = HEAD
    head = portrait[y : y + h, x : x + w]
    # An out-of-focus room: the portrait blurred and stretched, plus mild sensor noise.
    background = cv2.resize(cv2.GaussianBlur(portrait, (0, 0), 12), SIZE)
    noise = rng.normal(0, 4, background.shape)
    background = np.clip(background + noise, 0, 255).astype(np.uint8)
    sprites = []
    for i in range(faces):
        side = int(rng.uniform(110, 170)) if faces == 1 else int(rng.uniform(90, 130))
        sprite = cv2.resize(head, (side, side), interpolation=cv2.INTER_AREA)
        if i % 2:
            sprite = sprite[:, ::-1]
        gain, bias = rng.uniform(0.6, 1.2), rng.uniform(-30, 30)
        sprite = np.clip(sprite.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
        cell_w, cell_h = (SIZE[0], SIZE[1]) if faces == 1 else (SIZE[0] // 2, SIZE[1] // 2)
        origin = ((i % 2) * cell_w, (i // 2) * cell_h) if faces > 1 else (0, 0)
        span = (cell_w - side, cell_h - side)
        start = rng.uniform(0.1, 0.9, 2) * span
        speed = rng.uniform(-3, 3, 2)
        sprites.append((np.ascontiguousarray(sprite), side, origin, span, start, speed, i % 2))
    truth = []
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    for t in range(frames):
        frame, boxes = background.copy(), []
        for sprite, side, origin, span, start, speed, flipped in sprites:
            pos = np.abs((start + speed * t) % (2 * np.maximum(span, 1)))  # bounce
            pos = np.where(pos > span, 2 * np.asarray(span) - pos, pos)
            px, py = int(origin[0] + pos[0]), int(origin[1] + pos[1])
            frame[py : py + side, px : px + side] = sprite
            scale = side / HEAD[2]
            fx, fy, fw, fh = (v * scale for v in FACE_IN_HEAD)
            if flipped:
                fx = side - fx - fw
            boxes.append((px + fx, py + fy, fw, fh))
        # Per-frame sensor noise and exposure jitter: what makes a live classifier flicker.
        jitter = frame.astype(np.float32) * rng.uniform(0.95, 1.05) + rng.normal(0, 5, frame.shape)
        writer.write(np.clip(jitter, 0, 255).astype(np.uint8))
        truth.append(boxes)
    writer.release()
    return truth


def make_objects_video(path: Path, frames: int, seed: int = 0) -> list[list[tuple]] | None:
    """A clip with no face: four of scikit-image's bundled photos of objects, animals and
    textures (a cat, a rocket, coins, bricks, text, ...) per frame, drifting, replaced every
    half second, with the same sensor noise. Every face reported on it is false; None where
    scikit-image is not installed."""
    try:
        import skimage.data
    except ImportError:
        return None
    folder = Path(skimage.data.__file__).parent
    names = ("chelsea.png", "coffee.png", "rocket.jpg", "horse.png", "clock_motion.png",
             "coins.png", "page.png", "text.png", "brick.png", "grass.png", "gravel.png",
             "hubble_deep_field.jpg", "motorcycle_left.png", "moon.png", "ihc.png",
             "retina.jpg")  # fmt: skip
    photos = [cv2.resize(cv2.imread(str(folder / n)), (400, 300)) for n in names]
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    for t in range(frames):
        first, shift = (t // 15) * 4, int(2 * (t % 15))
        cells = [photos[(first + i) % len(photos)][shift : shift + 240, shift : shift + 320]
                 for i in range(4)]  # fmt: skip
        frame = np.vstack([np.hstack(cells[:2]), np.hstack(cells[2:])]).astype(np.float32)
        frame = frame * rng.uniform(0.95, 1.05) + rng.normal(0, 5, frame.shape)
        writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    writer.release()
    return [[] for _ in range(frames)]


def score(results, truth) -> dict:
    """Recall (IoU ≥ MATCH_IOU, one detection per face; None without faces) and false
    faces per frame."""
    found = false = total = 0
    for result, boxes in zip(results, truth, strict=True):
        total += len(boxes)
        if not result.faces:
            continue
        iou = iou_matrix([f.box for f in result.faces], boxes)
        hits = (iou >= MATCH_IOU).any(axis=0).sum()
        found += int(hits)
        false += int((iou.max(axis=1) < MATCH_IOU).sum()) if iou.size else len(result.faces)
    return {"recall": found / total if total else None, "false_per_frame": false / len(truth)}


def run(recognizer: Recognizer, video: Path, warmup: np.ndarray):
    """Results, wall-clock frames/s and frames per CPU-second of one pass over the video."""
    recognizer.predict(warmup)  # first-call allocations
    wall, cpu = time.perf_counter(), time.process_time()
    results = list(recognizer.stream(video))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return results, len(results) / wall, len(results) / cpu


def jittered_clip(face: np.ndarray, frames: int, rng) -> list[np.ndarray]:
    """One 48×48 face as a 192×192 'live' clip: per frame a small shift and zoom, exposure
    change and sensor noise — the input changes a camera makes while the face does not."""
    big = cv2.resize(face, (192, 192), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    clip = []
    for _ in range(frames):
        dx, dy = rng.uniform(-4, 4, 2)
        zoom = rng.uniform(0.96, 1.04)
        warp = cv2.getRotationMatrix2D((96, 96), 0.0, zoom)
        warp[:, 2] += (dx, dy)
        frame = cv2.warpAffine(big, warp, (192, 192), borderMode=cv2.BORDER_REFLECT)
        frame = frame * rng.uniform(0.93, 1.07) + rng.normal(0, 6, frame.shape)
        clip.append(np.clip(frame, 0, 255).astype(np.uint8))
    return clip


def flicker_study(classifier, store_path: Path, faces=60, frames=60) -> list[dict] | str:
    """Label changes per second of still FER-2013 test faces under camera jitter, without
    and with smoothing (a still face should keep its label), and per-frame accuracy."""
    from ferkit.data.store import open_store
    from ferkit.infer.frames import Frame, Source

    if not store_path.is_file():
        return f"skipped: no FER-2013 store at {store_path} (ferkit data prepare)"
    with open_store(store_path) as store:
        images, labels = store.split_arrays("test")
    pick = np.random.default_rng(0).choice(len(labels), faces, replace=False)
    clips = [jittered_clip(images[i], frames, np.random.default_rng(int(i))) for i in pick]
    rows = []
    for method in ("none", "ema", "mean"):
        rec = Recognizer(classifier, detector="none", smoothing=SmoothingConfig(method),
                         tracking=TrackingConfig(detect_every=1, min_hits=1))  # fmt: skip
        changes, correct = [], 0
        for clip, label in zip(clips, labels[pick], strict=True):
            stream = iter(Frame(i, i / FPS, img, "jitter") for i, img in enumerate(clip))
            source = Source("jitter", is_video=True, fps=FPS, _frames=stream)
            names = [r.faces[0].label for r in rec.stream(source)]
            changes.append(flicker(names, FPS))
            correct += sum(name == rec.class_names[label] for name in names)
        rows.append({"smoothing": method, "changes_per_s": float(np.mean(changes)),
                     "accuracy": correct / (faces * frames), "faces": faces,
                     "frames": frames})  # fmt: skip
    return rows


def equalisation_study(classifier, store_path: Path) -> list[dict] | str:
    """Test accuracy with and without histogram equalisation, on the FER-2013 test split
    (PrivateTest) as stored and made camera-like. A reason string where it cannot run."""
    from ferkit.data.store import open_store

    if not store_path.is_file():
        return f"skipped: no FER-2013 store at {store_path} (ferkit data prepare)"
    with open_store(store_path) as store:
        faces, labels = store.split_arrays("test")
    rows = []
    for name, images in (("FER-2013 test as stored", faces), ("camera-like", camera_like(faces))):
        for equalize in (False, True):
            batch = np.stack([cv2.equalizeHist(f) for f in images]) if equalize else images
            accuracy = float((classifier.predict_proba(batch).argmax(1) == labels).mean())
            rows.append({"faces": name, "equalize": equalize, "accuracy": accuracy,
                         "n": int(len(labels))})  # fmt: skip
    return rows


def speed_and_recall(model, frames: int, detectors, repeat: int) -> list[dict]:
    """frames/s, recall and false faces per face count (0: the objects clip), detector and
    detection schedule; with tracking the fastest of `repeat` passes."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for faces in (1, 4, 0):
            video = Path(tmp) / f"faces{faces}.mp4"
            truth = make_video(video, faces, frames) if faces else make_objects_video(video, frames)
            if truth is None:
                print("(no scikit-image: the clip without faces is skipped)")
                continue
            first = cv2.VideoCapture(str(video)).read()[1]
            for label in detectors:
                name, options = DETECTORS[label]
                for mode, tracking in (("every frame", False), ("default", True)):
                    rec = Recognizer(model, detector=name, detector_options=options,
                                     tracking=tracking)  # fmt: skip
                    passes = [run(rec, video, first) for _ in range(repeat if tracking else 1)]
                    results = passes[-1][0]
                    row = {"faces": faces, "detector": label, "mode": mode,
                           "fps": max(p[1] for p in passes),
                           "fps_cpu": max(p[2] for p in passes)}  # fmt: skip
                    row["detect_every"] = rec.tracking.detect_every if rec.tracking else 1
                    row["classifier"] = type(rec.classifier).__name__
                    rows.append({**row, **score(results, truth)})
    print("| faces | detector | mode | frames/s (wall) | frames/CPU-s | recall "
          "| false faces/frame |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for r in rows:
        print(f"| {r['faces']} | {r['detector']} | {r['mode']} | "
              f"{r['fps']:.1f} | {r['fps_cpu']:.1f} | "
              f"{'–' if r['recall'] is None else format(r['recall'], '.3f')} | "
              f"{r['false_per_frame']:.3f} |")  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--model", default=None, help="checkpoint (default: best available)")
    parser.add_argument("--quick", action="store_true", help="30 frames, for a smoke test")
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    parser.add_argument("--only", choices=("speed", "equalize", "flicker"),
                        help="one part only; the JSON keeps the others as they were")  # fmt: skip
    parser.add_argument("--detectors", nargs="+", choices=list(DETECTORS),
                        default=list(DETECTORS), help="the speed rows (all)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3,
                        help="passes per tracked run; the fastest is kept")  # fmt: skip
    args = parser.parse_args()
    frames = 30 if args.quick else args.frames
    # One thread each: per-core throughput, and no thread thrashing on a shared machine.
    set_threads(1)
    choice = choose_model(args.model)
    print(f"model: {choice.description}")
    needs_training = "skipped: needs trained weights (an untrained model's output says nothing)"
    payload = {"model": choice.description, "trained": choice.trained, "frames": frames,
               "machine": platform.platform(), "cpus": os.cpu_count(), "cpu": cpu_summary(),
               "match_iou": MATCH_IOU,
               "defaults": {"tracking": TrackingConfig().__dict__,
                            "smoothing": SmoothingConfig().__dict__}}  # fmt: skip
    if args.only in (None, "equalize"):
        classifier = choice.classifier
        study = equalisation_study(classifier, args.store) if choice.trained else needs_training
        payload["equalisation"] = study
        print_study(study)
    if args.only in (None, "speed"):
        load = os.getloadavg()[0]
        print(f"\nspeed and recall, {frames} frames of 640×480 per video, load average "
              f"{load:.1f} on {os.cpu_count()} CPUs:")  # fmt: skip
        payload["speed_recall"] = speed_and_recall(choice.classifier, frames, args.detectors,
                                                   args.repeat)  # fmt: skip
        payload["load_average"] = [load, os.getloadavg()[0]]
    if args.only in (None, "flicker"):
        rows = flicker_study(choice.classifier, args.store) if choice.trained else needs_training
        payload["flicker"] = rows
        print("\nflicker of still FER-2013 test faces under camera jitter (30 fps, 2 s each):")
        if isinstance(rows, str):
            print(rows)
        else:
            print("| smoothing | label changes/s | accuracy over frames |\n|---|---|---|")
            for r in rows:
                print(f"| {r['smoothing']} | {r['changes_per_s']:.2f} | {r['accuracy']:.3f} |")
    if args.only is not None and RESULTS.is_file():  # the other parts as they were
        payload = {**json.loads(RESULTS.read_text()), **payload}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = RESULTS.with_suffix(".json.tmp")
    tmp_path.write_text(json.dumps(payload, indent=2))
    os.replace(tmp_path, RESULTS)
    print(f"\nwrote {RESULTS}")


def print_study(study: list[dict] | str) -> None:
    print("\nhistogram equalisation of face crops (model trained without it):")
    if isinstance(study, str):
        print(study)
        return
    print("| faces | equalize | accuracy | n |\n|---|---|---|---|")
    for r in study:
        print(f"| {r['faces']} | {r['equalize']} | {r['accuracy']:.4f} | {r['n']} |")


if __name__ == "__main__":
    main()
