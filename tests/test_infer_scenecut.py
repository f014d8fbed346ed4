"""Scene cuts: a new shot is found; noise, exposure drift and a moving face are not cuts."""

import cv2
import numpy as np

from ferkit.infer.scenecut import SceneCuts


def scene(seed: int, shift: int = 0) -> np.ndarray:
    """A 640×480 'room': smooth random shapes of a seed's own brightness layout."""
    rng = np.random.default_rng(seed)
    frame = np.full((480, 640, 3), rng.integers(30, 220), np.uint8)
    for _ in range(12):
        x, y = rng.integers(0, 640), rng.integers(0, 480)
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(frame, (x, y), (x + rng.integers(40, 250), y + rng.integers(40, 200)),
                      colour, -1)  # fmt: skip
    cv2.circle(frame, (200 + shift, 240), 70, (150, 170, 200), -1)  # a "face" that moves
    return frame


def jitter(frame: np.ndarray, rng) -> np.ndarray:
    noisy = frame * rng.uniform(0.92, 1.08) + rng.normal(0, 6, frame.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def test_a_hard_cut_is_found_and_camera_changes_are_not():
    rng = np.random.default_rng(0)
    cuts = SceneCuts()
    first = [cuts.is_cut(jitter(scene(1, 8 * t), rng)) for t in range(10)]
    second = [cuts.is_cut(jitter(scene(2, 8 * t), rng)) for t in range(10)]
    assert not any(first)
    assert second[0] and not any(second[1:])


def test_a_cut_between_shots_of_the_same_brightness_is_found():
    """Two shots whose overall histograms match: the gray levels moved, so cells differ."""
    left = np.zeros((480, 640, 3), np.uint8)
    left[:, :320] = 220
    cuts = SceneCuts()
    assert not cuts.is_cut(left)
    assert cuts.is_cut(left[:, ::-1].copy())


def test_threshold_zero_never_cuts():
    cuts = SceneCuts(0.0)
    assert not any(cuts.is_cut(scene(s)) for s in range(5))
