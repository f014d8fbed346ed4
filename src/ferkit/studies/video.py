"""Study 2: a trained model driven on video as `ferkit predict` drives it, measured.

A recognition preset has no accuracy of its own to report (the clip has no labelled
emotions); what it changes is how the output behaves over time. So the same clip is run
twice with the same model and detector, without smoothing and with the preset's moving
average, and the table gets, for each: frames in which a face was reported, label changes
per second of the main face track (`ferkit.infer.smoothing.flicker`), its most frequent
label, and frames per second.

The clip is the demo's pan-and-zoom of the bundled portrait (`ferkit.infer.demo.make_clip`)
with per-frame sensor noise and exposure jitter added, as a webcam has: without them every
frame is nearly identical and there is nothing to smooth.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from ferkit.files import atomic_path
from ferkit.studies.presets import RecognizePlan


def make_study_clip(
    path: Path, seconds: float, fps: float, noise: float, exposure: float, seed: int = 0
) -> Path:
    """The demo clip with Gaussian noise (`noise` grey levels) and exposure gain jitter."""
    import cv2

    from ferkit.infer.demo import make_clip

    path.parent.mkdir(parents=True, exist_ok=True)
    clean = make_clip(path.with_name(f"{path.stem}.clean.mp4"), seconds=seconds, fps=fps)
    rng = np.random.default_rng(seed)
    reader = cv2.VideoCapture(str(clean))
    size = (int(reader.get(cv2.CAP_PROP_FRAME_WIDTH)), int(reader.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    with atomic_path(path) as part:
        writer = cv2.VideoWriter(str(part), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        while True:
            ok, frame = reader.read()
            if not ok:
                break
            gain = rng.uniform(1 - exposure, 1 + exposure)
            noisy = frame.astype(np.float32) * gain + rng.normal(0, noise, frame.shape)
            writer.write(np.clip(noisy, 0, 255).astype(np.uint8))
        reader.release()
        writer.release()
    clean.unlink(missing_ok=True)
    return path


def _pass(model: Path, plan: RecognizePlan, clip: Path, smoothing) -> dict:
    """One pass of `Recognizer.stream` over the clip; what the table reports for it."""
    from ferkit.infer.recognizer import Recognizer
    from ferkit.infer.smoothing import flicker

    recognizer = Recognizer(str(model), detector=plan.detector, smoothing=smoothing)
    started = time.perf_counter()
    results = list(recognizer.stream(clip))
    seconds = time.perf_counter() - started
    tracks: dict[int, list[str]] = defaultdict(list)
    for result in results:
        for face in result.faces:
            tracks[face.track_id].append(face.label)
    main = max(tracks.values(), key=len) if tracks else []
    fps = plan.clip.get("fps", 15.0)
    top, count = Counter(main).most_common(1)[0] if main else ("none", 0)
    return {
        "smoothing": smoothing.method
        + (f" (window {smoothing.window})" if smoothing.method == "mean" else ""),
        "frames": len(results),
        "face_frames": sum(1 for r in results if r.faces),
        "tracks": len(tracks),
        "flicker_per_s": flicker(main, fps),
        "top_label": top,
        "top_share": count / len(main) if main else 0.0,
        "frames_per_s": len(results) / max(seconds, 1e-9),
    }


def measure_video(model: Path, plan: RecognizePlan, folder: Path) -> dict:
    """Run the clip without smoothing and with the preset's; returns both measurements."""
    from ferkit.infer.smoothing import SmoothingConfig

    clip_settings = {"seconds": 6.0, "fps": 15.0, "noise": 6.0, "exposure": 0.05, **plan.clip}
    clip = make_study_clip(folder / "clip.mp4", **clip_settings)
    smoothed = SmoothingConfig(**plan.smoothing)
    return {
        "clip": {**clip_settings, "path": str(clip), "source": "bundled portrait, panned"},
        "detector": plan.detector,
        "passes": [
            _pass(model, plan, clip, SmoothingConfig("none")),
            _pass(model, plan, clip, smoothed),
        ],
    }
