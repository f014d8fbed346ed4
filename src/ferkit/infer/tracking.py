"""Stable face ids across frames: a greedy IoU tracker with hysteresis.

Why: smoothing needs to know which face is which from frame to frame, detectors fire on
objects for a frame or two and miss real faces for a frame or two, and detecting on every
frame is the most expensive step of the pipeline. So:

- a detection is matched to the track whose predicted box overlaps it most (IoU);
- a new track is reported only after `min_hits` detections (k; one miss in between is
  forgiven, two in a row end it), which hides fleeting false detections, and is then kept
  for up to `max_missed` detection passes without a match (m), which bridges short misses;
  a second look at a new detection in the same frame (`update(recheck=...)`) counts as a
  hit, so a face that passes it is reported on the frame it appears;
- the detector runs on every `detect_every`-th frame (n) — over the whole frame every
  `search_every` frames and while a new track awaits confirmation, otherwise only around
  the tracked faces; in between, each track moves by its estimated velocity;
- a scene cut (`ferkit.infer.scenecut`) ends every track (`end_all`): the face at the same
  place in the next shot is another person, and the next frame searches the whole frame;
- ids are given when a track is confirmed, so the reported ids count 1, 2, 3, ... without
  the gaps that fleeting false detections would leave;
- a track keeps its face's landmarks relative to its box, so a face between detections
  is still aligned by them (`landmarks_at`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ferkit.errors import ConfigError

_VELOCITY_MOMENTUM = 0.5  # weight of the newest velocity estimate
_COAST_DAMPING = 0.5  # velocity shrinks by this factor on each missed detection pass
_TENTATIVE_MISSES = 1  # misses in a row that an unconfirmed track survives


@dataclass(frozen=True)
class TrackingConfig:
    """n = `detect_every`, k = `min_hits`, m = `max_missed` (counted in detection passes).

    `search_every`: how often (in frames) the detector scans the whole frame for new
    faces; on the other detection frames it looks only around the faces already tracked,
    which costs a fraction of a full scan. Defaults measured with benchmarks/recognize.py.
    `scene_cut`: the frame-histogram distance (0–1) above which a frame starts a new shot
    and ends every track (`ferkit.infer.scenecut`); 0 never cuts.
    """

    detect_every: int = 2
    search_every: int = 12
    min_hits: int = 2
    max_missed: int = 2
    iou_threshold: float = 0.3
    scene_cut: float = 0.4

    def __post_init__(self) -> None:
        if min(self.detect_every, self.search_every, self.min_hits) < 1 or self.max_missed < 0:
            raise ConfigError(
                "tracking needs detect_every, search_every, min_hits >= 1 and max_missed >= 0, "
                f"got {self.detect_every}, {self.search_every}, {self.min_hits}, {self.max_missed}"
            )
        if not 0.0 < self.iou_threshold < 1.0:
            raise ConfigError(f"iou_threshold must be in (0, 1), got {self.iou_threshold}")
        if not 0.0 <= self.scene_cut <= 1.0:
            raise ConfigError(f"scene_cut must be in [0, 1], got {self.scene_cut}")


@dataclass
class Track:
    """One face followed over time; `box` is (x, y, w, h) as floats at frame `frame`.

    `id` is None until the track is confirmed; `serial` orders tracks by their start.
    `shape` holds the last detection's landmarks in units of its box (None without).
    """

    serial: int
    box: np.ndarray
    frame: int
    velocity: np.ndarray
    hits: int = 1
    missed: int = 0
    id: int | None = None
    shape: np.ndarray | None = None

    @property
    def confirmed(self) -> bool:
        return self.id is not None

    def predicted(self, frame: int) -> np.ndarray:
        return self.box + self.velocity * (frame - self.frame)

    def landmarks_at(self, box) -> tuple[tuple[float, float], ...] | None:
        """The landmarks placed in `box` as they sat in the last detection's box."""
        if self.shape is None:
            return None
        x, y, w, h = (float(v) for v in box)
        return tuple(map(tuple, (self.shape * [w, h] + [x, y]).tolist()))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every (x, y, w, h) box in `a` with every one in `b`."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax0, ay0, ax1, ay1 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


class IoUTracker:
    """Assigns ids to detections frame after frame; see the module docstring."""

    def __init__(self, config: TrackingConfig | None = None) -> None:
        from ferkit.infer.scenecut import SceneCuts

        self.config = config or TrackingConfig()
        self.tracks: list[Track] = []
        self.cuts = SceneCuts(self.config.scene_cut)
        self._next_id = 1
        self._next_serial = 1
        self._search_now = False

    def is_detection_frame(self, frame: int) -> bool:
        """Every n-th frame, and every search frame."""
        return frame % self.config.detect_every == 0 or self.is_search_frame(frame)

    def is_search_frame(self, frame: int) -> bool:
        """Whole-frame detection: every `search_every` frames, on detection frames while no
        face is tracked, and on every frame while a new face awaits confirmation (so it
        appears after k frames, not k·n)."""
        config = self.config
        if self._search_now or frame % config.search_every == 0:
            return True
        if any(not t.confirmed for t in self.tracks):
            return True
        return frame % config.detect_every == 0 and not self.tracks

    def end_all(self) -> None:
        """A new shot: forget every track (their ids are not reused) and search the next
        frame whole."""
        self.tracks = []
        self._search_now = True

    def update(
        self,
        boxes: Sequence[Sequence[float]],
        frame: int,
        recheck: Callable[[np.ndarray], bool] | None = None,
        landmarks: Sequence | None = None,
    ) -> list[Track]:
        """Match this frame's detections to tracks; return the tracks to report.

        `recheck(box)` is asked about each detection that starts a new track; True (the
        face was found again by a second look at this frame) counts as one more hit.
        `landmarks[i]` (five (x, y) points or None) belong to `boxes[i]`.
        """
        self._search_now = False
        detections = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        shapes = [_shape(box, marks) for box, marks in zip(detections, landmarks or [])]
        shapes += [None] * (len(detections) - len(shapes))
        predicted = np.array([t.predicted(frame) for t in self.tracks]).reshape(-1, 4)
        pairs = _greedy_match(iou_matrix(predicted, detections), self.config.iou_threshold)
        matched_tracks = {ti for ti, _ in pairs}
        matched_dets = {di for _, di in pairs}
        for ti, di in pairs:
            self._hit(self.tracks[ti], detections[di], frame, shapes[di])
        survivors = [self.tracks[ti] for ti, _ in pairs]
        for ti, track in enumerate(self.tracks):
            if ti in matched_tracks:
                continue
            track.box, track.frame = track.predicted(frame), frame
            track.velocity = track.velocity * _COAST_DAMPING
            track.missed += 1
            # Confirmed tracks coast for m passes; tentative ones forgive a single miss
            # (detectors flicker on real faces too) and die on the second in a row.
            limit = self.config.max_missed if track.confirmed else _TENTATIVE_MISSES
            if track.missed <= limit:
                survivors.append(track)
        for di, box in enumerate(detections):
            if di not in matched_dets:
                rechecked = recheck is not None and recheck(box)
                survivors.append(self._new_track(box, frame, rechecked, shapes[di]))
        self.tracks = sorted(survivors, key=lambda t: t.serial)
        for track in self.tracks:  # ids in the order the tracks started
            if track.id is None and track.hits >= self.config.min_hits:
                track.id, self._next_id = self._next_id, self._next_id + 1
        return self.visible()

    def predict(self, frame: int) -> list[Track]:
        """Advance every track to `frame` without a detection; return the tracks to report."""
        for track in self.tracks:
            track.box, track.frame = track.predicted(frame), frame
        return self.visible()

    def visible(self) -> list[Track]:
        return [t for t in self.tracks if t.confirmed]

    def _hit(self, track: Track, box: np.ndarray, frame: int, shape) -> None:
        elapsed = max(frame - track.frame, 1)
        measured = (box - track.box) / elapsed if track.missed == 0 else track.velocity
        track.velocity = _VELOCITY_MOMENTUM * measured + (1 - _VELOCITY_MOMENTUM) * track.velocity
        track.box, track.frame = box.copy(), frame
        track.hits, track.missed = track.hits + 1, 0
        track.shape = shape if shape is not None else track.shape

    def _new_track(self, box: np.ndarray, frame: int, rechecked: bool, shape) -> Track:
        track = Track(self._next_serial, box.copy(), frame, np.zeros(4), hits=1 + rechecked)
        track.shape = shape
        self._next_serial += 1
        return track


def _shape(box: np.ndarray, landmarks) -> np.ndarray | None:
    """Landmarks in units of their box: (0, 0) its top-left corner, (1, 1) its bottom-right."""
    if landmarks is None:
        return None
    x, y, w, h = box
    return (np.asarray(landmarks, dtype=np.float64) - [x, y]) / [max(w, 1e-9), max(h, 1e-9)]


def _greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (track, detection) taken in order of decreasing IoU, each used once."""
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    order = np.dstack(np.unravel_index(np.argsort(-iou, axis=None), iou.shape))[0]
    used_t, used_d = set(), set()
    for ti, di in order:
        if iou[ti, di] < threshold:
            break
        if ti in used_t or di in used_d:
            continue
        pairs.append((int(ti), int(di)))
        used_t.add(ti)
        used_d.add(di)
    return pairs
