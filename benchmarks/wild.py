"""Faces in the wild, made from labelled faces the pipeline was never tuned on.

PrivateTest faces (FER-2013's test split) are upscaled to 80–200 px and set into 640×480
scenes (random textured rooms) at a random place, scale and roll (±25°), with a lighting
gain, gradient and gamma, blur and sensor noise; the face's frame stays whole, its border
mirrored outwards is feathered into the scene around it (`paste`).
Measured side by side on the same scenes:

- stills: per detector (`DETECTORS`: Haar, MTCNN and the SSD as they are by default, each also
  with the other turned-search setting), face recall, false faces per image, and the accuracy of the
  faces found, through the old box crop and through alignment onto the FER-2013 framing
  (with the default equalisation, and without), next to the accuracy of the direct 48×48
  crops of the very same faces (the model's own test number, on that subset) and of the
  true frame cut out of the scene (what perfect framing would give: the rest of the gap
  is lighting, blur, noise and resampling); for MTCNN also the ways to frame a face from
  its box and landmarks (`FRAMINGS`), with how far each misses the true frame;
- clips: two shots of 30 frames (another scene, another face near the same place) joined
  by a hard cut, through `Recognizer.stream` with default tracking: track purity (share of
  a track's frames that show its majority person) with and without scene-cut detection;
- a clip without faces (benchmarks/recognize.py's objects clip): false faces per frame;
- speed: frames per CPU-second (one thread; steadier than the wall clock on a shared
  machine) of a clip with one upright face (the bundled portrait's head), default
  settings, with and without alignment and scene-cut detection.

    python benchmarks/wild.py [--stills 600] [--clips 16] [--frames 90] [--model default]
                              [--detectors haar mtcnn ...] [--seed 0] [--out wild]

`--clips 0` and `--frames 0` leave out the clips and the speed runs. Prints tables and
writes benchmarks/results/OUT.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from _common import DETECTORS, REPO_STORE, report
from ferkit.data.store import open_store
from ferkit.infer.align import (
    box_frame,
    eye_roll,
    face_crop,
    frame_at,
    frame_geometry,
    frame_transform,
    similarity,
    warp_face,
)
from ferkit.infer.recognizer import Recognizer, set_threads
from ferkit.infer.tracking import TrackingConfig
from ferkit.preprocess import equalize_crop, to_gray

SIZE = (640, 480)
FPS = 30.0


def room(rng) -> np.ndarray:
    """A random textured 640×480 BGR scene: a gradient, blurred blocks and fine texture."""
    h, w = SIZE[1], SIZE[0]
    base = rng.uniform(40, 200, 3)
    ramp = np.linspace(-1, 1, w)[None, :, None] * rng.uniform(-40, 40, 3)
    scene = np.broadcast_to(base + ramp, (h, w, 3)).astype(np.float32).copy()
    for _ in range(rng.integers(6, 14)):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        bw, bh = int(rng.integers(30, 260)), int(rng.integers(30, 220))
        scene[y : y + bh, x : x + bw] = rng.uniform(0, 255, 3)
    scene = cv2.GaussianBlur(scene, (0, 0), rng.uniform(1, 4))
    scene += rng.normal(0, 6, (h, w, 1))
    return np.clip(scene, 0, 255)


def paste(scene: np.ndarray, face: np.ndarray, rng, place=None, roll=None) -> tuple:
    """`face` (48×48 gray) upscaled, rolled and set into `scene` (float BGR); returns the
    scene and the face's ground truth (centre x, y, side, roll in degrees).

    The face's own frame stays whole: around it, its border mirrored outwards (1/7 of the
    side: hair, cheeks, neck, background as a photo would continue them) is feathered into
    the scene. (Feathering the frame's own outer 1/14, as this benchmark first did, hid
    about a quarter of every face's pixels under scene: the true frame cut back out of a
    scene lost 4 points before any detector ran.)"""
    side = int(rng.uniform(80, 200))
    angle = rng.uniform(-25, 25) if roll is None else roll
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    pad = max(4, side // 7)
    big = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REFLECT_101).astype(np.float32)
    full = side + 2 * pad
    if place is None:
        reach = side * 0.75
        place = (rng.uniform(reach, SIZE[0] - reach), rng.uniform(reach, SIZE[1] - reach))
    cx, cy = place
    m = cv2.getRotationMatrix2D((full / 2, full / 2), angle, 1.0)
    m[:, 2] += (cx - full / 2, cy - full / 2)
    layer = cv2.warpAffine(big, m, SIZE, flags=cv2.INTER_LINEAR)
    mask = np.zeros((full, full), np.float32)
    mask[pad // 2 : full - pad // 2, pad // 2 : full - pad // 2] = 1.0  # fades out in the pad
    mask = cv2.GaussianBlur(mask, (0, 0), pad / 4)
    alpha = cv2.warpAffine(mask, m, SIZE, flags=cv2.INTER_LINEAR)[:, :, None]
    out = scene * (1 - alpha) + layer[:, :, None] * alpha
    return out, (cx, cy, side, angle)


def true_frame(truth) -> np.ndarray:
    """The 2×3 map from scene pixels to the pasted face's own 48×48 frame."""
    cx, cy, side, angle = truth
    m = np.vstack([cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0), [0, 0, 1]])
    m[:2, 2] += (cx - side / 2, cy - side / 2)
    return (np.diag([48 / side, 48 / side, 1.0]) @ np.linalg.inv(m))[:2]


def camera(scene: np.ndarray, rng, look=None) -> np.ndarray:
    """Lighting (gain, gamma, a side light), blur and sensor noise; `look` fixes the
    lighting for all frames of one shot (noise stays per frame)."""
    gain, gamma, light, blur = look or (rng.uniform(0.6, 1.25), rng.uniform(0.7, 1.4),
                                        rng.uniform(-0.25, 0.25), rng.uniform(0, 1.2))  # fmt: skip
    x = np.clip(scene / 255.0 * gain, 0, 1) ** gamma
    x = x * (1 + light * np.linspace(-1, 1, SIZE[0])[None, :, None])
    if blur > 0.3:
        x = cv2.GaussianBlur(x.astype(np.float32), (0, 0), blur)
    x = x * 255 + rng.normal(0, rng.uniform(2, 8), x.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


def matches(box, truth) -> bool:
    """A detection belongs to the pasted face when its centre lies within a third of the
    face's side from the face's centre and its size is within a factor of 2.5 of it."""
    x, y, w, h = box
    cx, cy, side = truth[:3]
    near = np.hypot(x + w / 2 - cx, y + h / 2 - cy) < side / 3
    return bool(near and side / 2.5 < max(w, h) < side * 2.5)


# ---------------------------------------------------------------------- stills
ALL = (0, 1, 2, 3, 4)


def crop(image, detection, prep, detector: str, points) -> np.ndarray:
    """`face_crop`, with the similarity fitted to the chosen landmarks."""
    transform = frame_transform(detection.box, detection.landmarks, prep, detector, points)
    if transform is None:
        return face_crop(image, detection, prep, detector)
    return equalize_crop(warp_face(to_gray(image), transform, prep.size), prep)


# Ways to frame a face from MTCNN's box and landmarks (eyes, nose tip, mouth corners):
# centre and side of the frame, and its roll, each taken from the similarity fitted to eyes
# + nose ("fit"), from the box mapped by the detector's box frame ("box"), from both
# ("mean": centres averaged, sides geometric mean) or from the line through the eyes
# ("eyes"; "eyes > T°": only where the roll exceeds T, since FER-2013's own faces are not
# upright either). Chosen on --seed 1 (600 stills), reported on seed 0 (docs/faces.md): the mean
# with the eye-line roll became `align="template"`'s framing for MTCNN.
def framing(detection, prep, kind: str, centre: str, side: str, roll: str) -> np.ndarray:
    size = prep.size
    landmarks = np.asarray(detection.landmarks)
    fit = similarity(landmarks[:3], np.asarray(prep.template)[:3] * size)
    fit_centre, fit_side, fit_roll = frame_geometry(fit, size)
    box_centre, box_side = box_frame(detection.box, prep.box_frames[kind])
    centres = {"fit": fit_centre, "box": box_centre,
               "mean": tuple((np.add(fit_centre, box_centre) / 2).tolist())}  # fmt: skip
    sides = {"fit": fit_side, "box": box_side, "mean": float(np.sqrt(fit_side * box_side))}
    eyes = eye_roll(landmarks)
    if roll.startswith("eyes > "):
        eyes = eyes if abs(eyes) > float(roll[7:].rstrip("°")) else 0.0
    rolls = {"none": 0.0, "fit": fit_roll, "eyes": eyes}
    return frame_at(centres[centre], sides[side], rolls[roll.split(" ")[0]], size)


FRAMINGS = {  # label: (centre, side, roll); MTCNN only, equalised
    "(a) similarity on eyes + nose": ("fit", "fit", "fit"),
    "(b) box frame, no roll": ("box", "box", "none"),
    "(c) box frame, eye-line roll": ("box", "box", "eyes"),
    "(d) box frame, eye-line roll > 5°": ("box", "box", "eyes > 5°"),
    "(d) box frame, eye-line roll > 10°": ("box", "box", "eyes > 10°"),
    "(d) box frame, eye-line roll > 15°": ("box", "box", "eyes > 15°"),
    "(d) box frame, eye-line roll > 20°": ("box", "box", "eyes > 20°"),
    "box frame, fitted roll": ("box", "box", "fit"),
    "fitted centre + roll, box side": ("fit", "box", "fit"),
    "fitted centre + roll, side geometric mean of fit and box": ("fit", "mean", "fit"),
    "mean centre + side, eye-line roll (the default)": ("mean", "mean", "eyes"),
    "mean centre + side, eye-line roll > 10°": ("mean", "mean", "eyes > 10°"),
}


def frame_error(transform: np.ndarray, truth: np.ndarray, size: int = 48) -> tuple:
    """How a framing misses the true frame: |roll| in degrees, |scale − 1|, and the shift
    of the frame centre in frame pixels."""
    both = np.vstack([transform, [0, 0, 1]]) @ np.linalg.inv(np.vstack([truth, [0, 0, 1]]))
    a, b = both[0, 0], both[1, 0]
    shift = both[:2] @ [size / 2, size / 2, 1.0] - size / 2
    return abs(np.rad2deg(np.arctan2(b, a))), abs(np.hypot(a, b) - 1), float(np.hypot(*shift))


def stills(rec_by_detector: dict, faces, labels, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    scenes = []
    for face in faces:
        image, truth = paste(room(rng), face, rng)
        scenes.append((camera(image, rng), truth))
    classifier = next(iter(rec_by_detector.values())).classifier
    direct = classifier.predict_proba(faces).argmax(1) == labels
    rows = []
    for name, rec in rec_by_detector.items():
        found, false = [], 0
        for image, truth in scenes:
            detections = rec.detect(image)
            hits = [d for d in detections if matches(d.box, truth)]
            false += len(detections) - len(hits)
            found.append(max(hits, key=lambda d: d.score * d.box[2], default=None))
        index = [i for i, d in enumerate(found) if d is not None]
        base = rec.preprocessing
        common = {"detector": name, "images": len(faces), "recall": len(index) / len(faces),
                  "false_per_image": false / len(faces),
                  "direct_48_same_faces": float(direct[index].mean()),
                  "direct_48_all": float(direct.mean()), "roll_error_deg": None,
                  "scale_error": None, "shift_px": None}  # fmt: skip
        kind = rec.detector.name  # the detector itself (its box frame, its landmarks)
        extra = name != kind  # a detector's variant (its label is not its name): default rows only
        for equalize in (True,) if extra else (True, False):
            crops = np.stack([equalize_crop(warp_face(to_gray(scenes[i][0]),
                              true_frame(scenes[i][1]), 48), replace(base, equalize=equalize))
                              for i in index])  # fmt: skip
            correct = classifier.predict_proba(crops).argmax(1) == labels[index]
            rows.append({**common, "crop": f"true frame{'' if equalize else ', not'} equalised",
                         "accuracy_found": float(correct.mean())})  # fmt: skip
        variants = {  # (preprocessing, landmarks the similarity is fitted to)
            "box crop (old), equalised": (replace(base, align="box"), ALL),
            "aligned (default), equalised": (replace(base, align="template"), (0, 1, 2)),
            "aligned (default), not equalised": (
                replace(base, align="template", equalize=False), (0, 1, 2)),
            "similarity on 5 landmarks, equalised": (replace(base, align="similarity"), ALL),
            "similarity on eyes + nose (default before), equalised": (
                replace(base, align="similarity"), (0, 1, 2)),
            "similarity on eyes + nose (default before), not equalised": (
                replace(base, align="similarity", equalize=False), (0, 1, 2)),
        }  # fmt: skip
        for variant, (prep, points) in variants.items():
            if kind != "mtcnn" and prep.align == "similarity":
                continue  # no landmarks or no box frame: the same crop as the default
            if extra and variant != "aligned (default), equalised":
                continue
            crops = np.stack([crop(scenes[i][0], found[i], prep, kind, points) for i in index])
            correct = classifier.predict_proba(crops).argmax(1) == labels[index]
            rows.append({**common, "crop": variant, "accuracy_found": float(correct.mean())})
        if name != "mtcnn":
            continue
        prep = replace(base, align="template")
        for variant, how in FRAMINGS.items():
            transforms = [framing(found[i], prep, kind, *how) for i in index]
            crops = np.stack([equalize_crop(warp_face(to_gray(scenes[i][0]), m, prep.size), prep)
                              for i, m in zip(index, transforms)])  # fmt: skip
            correct = classifier.predict_proba(crops).argmax(1) == labels[index]
            errors = np.array([frame_error(m, true_frame(scenes[i][1]))
                               for i, m in zip(index, transforms)])  # fmt: skip
            rows.append({**common, "crop": f"framing {variant}, equalised",
                         "accuracy_found": float(correct.mean()),
                         "roll_error_deg": float(errors[:, 0].mean()),
                         "scale_error": float(errors[:, 1].mean()),
                         "shift_px": float(errors[:, 2].mean())})  # fmt: skip
    return rows


# ---------------------------------------------------------------------- clips
def write_clip(path: Path, faces, rng, frames_per_shot: int = 30) -> list:
    """Two shots joined by a hard cut: per frame, (person, truth) of the face in it."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    truth = []
    place = (rng.uniform(200, 440), rng.uniform(170, 310))
    for person, face in enumerate(faces):
        background = room(rng)
        look = (rng.uniform(0.7, 1.2), rng.uniform(0.8, 1.25), rng.uniform(-0.2, 0.2),
                rng.uniform(0, 0.8))  # fmt: skip
        start = np.asarray(place) + rng.uniform(-30, 30, 2)
        drift = rng.uniform(-1.5, 1.5, 2)
        shot = int(rng.integers(1 << 30))  # one face size and roll for the whole shot
        for t in range(frames_per_shot):
            image, box = paste(background, face, np.random.default_rng(shot), start + drift * t)
            writer.write(camera(image, rng, look))
            truth.append((person, box))
    writer.release()
    return truth


def purity(results, truth) -> dict:
    """Track purity: per track, the share of its frames showing its majority person."""
    frames_of: dict[int, list[int]] = {}
    for result, (person, box) in zip(results, truth, strict=True):
        for face in result.faces:
            who = person if matches(face.box, box) else -1
            frames_of.setdefault(face.track_id, []).append(who)
    shares = [max(np.bincount(np.asarray(v) + 1)) / len(v) for v in frames_of.values()]
    spanning = sum(len(set(v) - {-1}) > 1 for v in frames_of.values())
    seen = sum(1 for r, (p, b) in zip(results, truth) if any(matches(f.box, b) for f in r.faces))
    return {"tracks": len(frames_of), "purity": shares, "tracks_across_cut": spanning,
            "recall": seen / len(truth)}  # fmt: skip


def clips(model, faces, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        made = []
        for k in range(n):
            path = Path(tmp) / f"clip{k}.mp4"
            made.append((path, write_clip(path, faces[2 * k : 2 * k + 2], rng)))
        runs = [
            (detector, label, cut)
            for detector in ("haar", "mtcnn")
            for label, cut in (("scene cuts on (default)", 0.4), ("scene cuts off", 0.0))
        ]
        for detector, label, cut in runs:  # fmt: skip
            rec = Recognizer(model, detector=detector, tracking=TrackingConfig(scene_cut=cut))
            tracks, shares, spanning, recall = 0, [], 0, []
            for path, truth in made:
                scored = purity(list(rec.stream(path)), truth)
                tracks += scored["tracks"]
                shares += scored["purity"]
                spanning += scored["tracks_across_cut"]
                recall.append(scored["recall"])
            rows.append({"detector": detector, "tracking": label, "clips": n, "tracks": tracks,
                         "mean_purity": float(np.mean(shares)) if shares else None,
                         "min_purity": float(np.min(shares)) if shares else None,
                         "tracks_across_cut": spanning,
                         "frame_recall": float(np.mean(recall))})  # fmt: skip
    return rows


# ---------------------------------------------------------------------- speed, false faces
def speed_and_false(model, frames: int, seed: int) -> list[dict]:
    """One upright face that every detector finds (the bundled portrait's head, as in
    benchmarks/recognize.py) drifting through a scene; and the clip without faces."""
    from ferkit.infer.demo import sample_image
    from ferkit.infer.frames import read_image
    from recognize import HEAD, make_objects_video

    x, y, w, h = HEAD
    face = to_gray(read_image(sample_image()))[y : y + h, x : x + w]
    rng = np.random.default_rng(seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp) / "one.mp4"
        writer = cv2.VideoWriter(str(one), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
        background, look = room(rng), (1.0, 1.0, 0.0, 0.3)
        for t in range(frames):
            image, _ = paste(background, face, np.random.default_rng(1), (300 + t, 240), 0.0)
            writer.write(camera(image, rng, look))
        writer.release()
        objects = Path(tmp) / "objects.mp4"
        has_objects = make_objects_video(objects, frames) is not None
        for label, align, cut in (("aligned (default)", None, 0.4), ("box crop", "box", 0.4),
                                  ("box crop, no cut detection (old)", "box", 0.0)):  # fmt: skip
            rec = Recognizer(model, align=align, tracking=TrackingConfig(scene_cut=cut))
            rec.predict(cv2.VideoCapture(str(one)).read()[1])  # warm-up
            best = wall = 0.0
            for _ in range(3):  # best of three: least disturbed by other load
                start, cpu = time.perf_counter(), time.process_time()
                results = list(rec.stream(one))
                best = max(best, len(results) / (time.process_time() - cpu))
                wall = max(wall, len(results) / (time.perf_counter() - start))
            row = {
                "pipeline": label,
                "frames_per_cpu_s": best,
                "fps_wall": wall,
                "one_face_recall": sum(bool(r.faces) for r in results) / len(results),
            }
            if has_objects:
                false = sum(len(r.faces) for r in rec.stream(objects))
                row["false_faces_per_frame_objects"] = false / frames
            rows.append(row)  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stills", type=int, default=600)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--frames", type=int, default=90, help="frames of the speed clips")
    parser.add_argument("--model", default="default")
    parser.add_argument("--store", type=Path, default=REPO_STORE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detectors", nargs="+", choices=list(DETECTORS),
                        default=list(DETECTORS), help="the rows of the stills (all)")  # fmt: skip
    parser.add_argument("--out", default="wild", help="results/OUT.json")
    args = parser.parse_args()
    chosen = args.detectors
    set_threads(1)
    with open_store(args.store) as store:
        test, labels = store.split_arrays("test")
    pick = np.random.default_rng(args.seed).choice(len(test), args.stills, replace=False)
    faces, labels = test[pick], labels[pick].astype(np.int64)
    recs = {label: Recognizer(args.model, detector=name, detector_options=options, tracking=False)
            for label, (name, options) in DETECTORS.items() if label in chosen}  # fmt: skip
    load = os.getloadavg()[0]
    start = time.perf_counter()
    still_rows = stills(recs, faces, labels, args.seed)
    report(f"{args.out}.partial-stills", still_rows)  # kept if a later part fails
    clip_rows = clips(args.model, faces, args.clips, args.seed + 1) if args.clips else []
    if clip_rows:
        report(f"{args.out}.partial-clips", clip_rows)
    speed_rows = speed_and_false(args.model, args.frames, args.seed + 2) if args.frames else []
    report(args.out, speed_rows or [{"speed": "not measured (--frames 0)"}], model=args.model,
           stills=still_rows, clips=clip_rows, seed=args.seed, detectors=chosen,
           seconds=round(time.perf_counter() - start, 1), load_average_at_start=load)  # fmt: skip
    # The parts' rows live in OUT.json now. (Named `.partial-*`, unlike `OUT_clips`, so that
    # they never collide with another run's results such as `--out wild_clips`.)
    for part in ("stills", "clips"):
        partial = Path(__file__).parent / "results" / f"{args.out}.partial-{part}.json"
        partial.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
