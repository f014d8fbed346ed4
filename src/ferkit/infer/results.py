"""What recognition returns: `Face` per detected face and `FrameResult` per image or frame.

Small validated dataclasses (the supervision habit): probabilities always name their
emotions and sum to 1, `to_dict()` is JSON-safe and `from_dict()` reads it back, and
`draw()` paints boxes, labels, track ids and probability bars on a copy of the image.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

Box = tuple[int, int, int, int]

# BGR colours per emotion (OpenCV order), used for boxes and bars.
COLORS: dict[str, tuple[int, int, int]] = {
    "angry": (40, 40, 220),
    "disgust": (40, 140, 40),
    "fear": (160, 60, 160),
    "happy": (40, 200, 240),
    "sad": (200, 120, 40),
    "surprise": (40, 160, 255),
    "neutral": (190, 190, 190),
}
_PROB_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Face:
    """One face: where it is (x, y, w, h in pixels), how it feels, and who it is over time.

    `label` is the most probable emotion and `score` its probability; `track_id` is set
    when faces are tracked across frames (None for single images).
    """

    box: Box
    probs: dict[str, float]
    label: str
    score: float
    track_id: int | None = None

    def __post_init__(self) -> None:
        if len(self.box) != 4 or self.box[2] <= 0 or self.box[3] <= 0:
            raise ValueError(f"face box must be (x, y, w, h) with w, h > 0, got {self.box}")
        total = sum(self.probs.values())
        if not self.probs or abs(total - 1.0) > _PROB_TOLERANCE:
            raise ValueError(f"face probabilities must sum to 1, got {total:.4f}")
        if any(p < 0 or not math.isfinite(p) for p in self.probs.values()):
            raise ValueError(f"face probabilities must be finite and >= 0: {self.probs}")
        if self.label not in self.probs:
            raise ValueError(f"label {self.label!r} is not one of {list(self.probs)}")

    @classmethod
    def from_probs(
        cls,
        box: Sequence[float],
        probs: np.ndarray,
        class_names: Sequence[str],
        track_id: int | None = None,
    ) -> Face:
        """Build a face from a probability vector in `class_names` order (renormalised)."""
        p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, None)
        p = p / p.sum() if p.sum() > 0 else np.full(len(p), 1.0 / len(p))
        best = int(np.argmax(p))
        return cls(
            box=tuple(int(round(v)) for v in box),
            probs={name: float(v) for name, v in zip(class_names, p, strict=True)},
            label=class_names[best],
            score=float(p[best]),
            track_id=track_id,
        )

    def to_dict(self) -> dict:
        return {
            "box": list(self.box),
            "label": self.label,
            "score": round(self.score, 6),
            "track_id": self.track_id,
            "probs": {k: round(v, 6) for k, v in self.probs.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> Face:
        probs = {k: float(v) for k, v in data["probs"].items()}
        total = sum(probs.values())
        return cls(
            box=tuple(int(v) for v in data["box"]),
            probs={k: v / total for k, v in probs.items()},
            label=data["label"],
            score=float(data["score"]),
            track_id=data.get("track_id"),
        )


@dataclass
class FrameResult:
    """The faces found in one image or video frame.

    `index` counts frames (or images of a folder) from 0; `time_s` is the frame's time in
    the video (None for still images); `source` names the file a still came from.
    """

    index: int
    time_s: float | None
    faces: list[Face] = field(default_factory=list)
    source: str | None = None

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "time_s": None if self.time_s is None else round(self.time_s, 6),
            "source": self.source,
            "faces": [face.to_dict() for face in self.faces],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict) -> FrameResult:
        return cls(
            index=int(data["index"]),
            time_s=data.get("time_s"),
            faces=[Face.from_dict(f) for f in data.get("faces", [])],
            source=data.get("source"),
        )

    def draw(self, image: np.ndarray, fps: float | None = None) -> np.ndarray:
        """A copy of `image` with this frame's faces (and an FPS counter) painted on it."""
        return draw_faces(image, self.faces, fps=fps)


def draw_faces(image: np.ndarray, faces: Sequence[Face], fps: float | None = None) -> np.ndarray:
    """Paint box, track id, label, score and one bar per emotion for every face."""
    import cv2

    canvas = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    scale = max(0.45, min(canvas.shape[:2]) / 800)
    thick = max(1, int(round(2 * scale)))
    font = cv2.FONT_HERSHEY_SIMPLEX
    taken = [tuple(face.box) for face in faces]  # panels avoid every face and each other
    for face in faces:
        x, y, w, h = face.box
        color = COLORS.get(face.label, (0, 255, 0))
        cv2.rectangle(canvas, (x, y), (x + w, y + h), color, thick)
        tag = f"#{face.track_id} " if face.track_id is not None else ""
        text = f"{tag}{face.label} {face.score:.2f}"
        (tw, th), base = cv2.getTextSize(text, font, scale, thick)
        ty = y - base - 2 if y - th - base - 2 >= 0 else y + h + th + 2
        cv2.rectangle(canvas, (x, ty - th - 2), (x + tw + 2, ty + base), color, -1)
        cv2.putText(canvas, text, (x + 1, ty), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
        taken.append(_draw_bars(canvas, face, scale, taken))
    if fps is not None:
        cv2.putText(canvas, f"{fps:.1f} fps", (8, int(30 * scale) + 4), font, scale, (0, 255, 0),
                    thick, cv2.LINE_AA)  # fmt: skip
    return canvas


def _draw_bars(canvas: np.ndarray, face: Face, scale: float, taken) -> tuple:
    """Seven probability bars with names on a dark panel beside the box: right of it, else
    left, below or above, whichever place in the image covers the least of the boxes and
    panels in `taken` (faces close together would otherwise hide each other's bars).
    Returns the panel's (x, y, w, h)."""
    import cv2

    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale
    (name_w, name_h), _ = cv2.getTextSize("surprise", font, font_scale, 1)
    row, bar = name_h + 6, int(round(70 * scale))
    width, height = name_w + bar + 10, row * len(face.probs) + 4
    x, y, w, h = face.box
    rows, cols = canvas.shape[:2]
    places = [(x + w + 4, y), (x - width - 4, y), (x, y + h + 4), (x, y - height - 4)]
    places = [(min(max(0, px), max(0, cols - width)), min(max(0, py), max(0, rows - height)))
              for px, py in places]  # fmt: skip
    left, top = min(places, key=lambda p: _covered((*p, width, height), taken))
    panel = canvas[top : top + height, left : left + width]
    panel[:] = (panel * 0.35).astype(canvas.dtype)  # darken behind the bars for contrast
    for i, (name, p) in enumerate(face.probs.items()):
        row_top = top + 2 + i * row
        cv2.putText(canvas, name, (left + 3, row_top + name_h + 2), font, font_scale,
                    (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
        x0 = left + name_w + 7
        cv2.rectangle(canvas, (x0, row_top + 2), (x0 + bar, row_top + row - 2), (80, 80, 80), -1)
        if (fill := int(round(bar * p))) > 0:
            color = COLORS.get(name, (0, 255, 0))
            cv2.rectangle(canvas, (x0, row_top + 2), (x0 + fill, row_top + row - 2), color, -1)
    return (left, top, width, height)


def _covered(rect, others) -> int:
    """Pixels of `rect` (x, y, w, h) that lie under any of the `others` (summed)."""
    x, y, w, h = rect
    total = 0
    for ox, oy, ow, oh in others:
        total += max(0, min(x + w, ox + ow) - max(x, ox)) * max(0, min(y + h, oy + oh) - max(y, oy))
    return total


@dataclass
class RunSummary:
    """What a `record()` run did: counts, per-track rows, failures and files written."""

    source: str
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    tracks: list[dict] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "source": self.source, "frames": self.frames, "faces": self.faces,
            "seconds": round(self.seconds, 3), "fps": round(self.fps, 2),
            "interrupted": self.interrupted, "tracks": self.tracks, "images": self.images,
            "failures": [{"file": f, "error": e} for f, e in self.failures],
            "files": self.files,
        }  # fmt: skip

    def table(self, title: str | None = None):
        """A rich Table: one row per track (videos) or per image (stills)."""
        from rich.table import Table

        caption = f"{self.frames} frames, {self.faces} faces, {self.fps:.1f} frames/s"
        if self.interrupted:
            caption += " (interrupted)"
        table = Table(title=title or self.source, caption=caption)
        if self.tracks:
            for column in ("track", "frames", "from–to (s)", "dominant", "share of time"):
                table.add_column(column)
            for row in self.tracks:
                shares = sorted(row["share"].items(), key=lambda kv: -kv[1])
                text = ", ".join(f"{name} {share:.0%}" for name, share in shares if share > 0)
                span = f"{row['start_s']:.1f}–{row['end_s']:.1f}"
                table.add_row(str(row["track_id"]), str(row["frames"]), span, row["dominant"], text)
        else:
            for column in ("image", "faces", "emotions"):
                table.add_column(column)
            for row in self.images:
                table.add_row(Path(row["file"]).name, str(row["faces"]), ", ".join(row["labels"]))
        return table
