"""Study 2: a trained model driven on video as `ferkit predict` drives it, measured.

A recognition preset has no accuracy of its own to report (the clip has no labelled
emotions); what it changes is how the output behaves over time. So the same clip is run
twice with the same model and detector, without smoothing and with the preset's moving
average, and the table gets, for each: frames in which a face was reported, label changes
per second of the main face track (`ferkit.infer.smoothing.flicker`), its most frequent
label, and frames per second.

The preset's clip is the demo's pan-and-zoom of the bundled portrait
(`ferkit.infer.demo.make_clip`) with per-frame sensor noise and exposure jitter added, as a
webcam has: without them every frame is nearly identical and there is nothing to smooth.
Real footage cannot ship with ferkit, so clips of the user's own (`ferkit studies run
--clip FILE`) are measured the same way beside it, as recorded.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from ferkit.errors import SourceError
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


def check_clip(path: Path) -> None:
    """Fail now, not after hours of training, where a given clip is no readable video."""
    from ferkit.infer.frames import load_source

    source = load_source(path)  # no such file, cannot open, no frame: SourceError naming it
    iter(source).close()  # the unread frames go, and with them the opened capture
    if not source.is_video:
        raise SourceError(f"--clip {path}: not a video (an image or a folder)")


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
    span = results[-1].time_s - results[0].time_s if len(results) > 1 else 0.0
    fps = (len(results) - 1) / span if span > 0 else 1.0  # the clip's own frame rate
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


def measure_video(
    model: Path, plan: RecognizePlan, folder: Path, clips: tuple[Path, ...] = ()
) -> dict:
    """The preset's generated clip, then each given clip, each without smoothing and with
    the preset's; returns the measurements, clip by clip."""
    from ferkit.infer.smoothing import SmoothingConfig

    clip_settings = {"seconds": 6.0, "fps": 15.0, "noise": 6.0, "exposure": 0.05, **plan.clip}
    generated = make_study_clip(folder / "clip.mp4", **clip_settings)
    described = [({**clip_settings, "path": str(generated), "source": "bundled portrait, panned"},
                  generated)]  # fmt: skip
    described += [({"path": str(clip), "source": "given clip"}, clip) for clip in clips]
    smoothed = SmoothingConfig(**plan.smoothing)
    return {
        "detector": plan.detector,
        "clips": [
            {
                "clip": clip,
                "passes": [
                    _pass(model, plan, path, SmoothingConfig("none")),
                    _pass(model, plan, path, smoothed),
                ],
            }
            for clip, path in described
        ],
    }
