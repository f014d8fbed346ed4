"""IoU tracker: stable ids, hysteresis (k hits to appear, m misses to vanish), detect-every-n."""

import numpy as np
import pytest

from ferkit.errors import ConfigError
from ferkit.infer.tracking import IoUTracker, TrackingConfig, iou_matrix


def test_iou_matrix_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]])
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0]])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)


def test_moving_face_keeps_one_id_and_new_face_gets_another():
    tracker = IoUTracker(TrackingConfig(detect_every=1, min_hits=2, max_missed=2))
    ids = set()
    for frame in range(30):
        boxes = [(10 + 4 * frame, 50, 80, 80)]
        if frame >= 10:
            boxes.append((400, 300 - 2 * frame, 60, 60))
        visible = tracker.update(boxes, frame)
        if frame >= 12:
            assert len(visible) == 2
        ids.update(t.id for t in visible)
    assert ids == {1, 2}


def test_hysteresis_hides_fleeting_detections_and_bridges_short_misses():
    tracker = IoUTracker(TrackingConfig(detect_every=1, min_hits=3, max_missed=2))
    face = (100, 100, 50, 50)
    assert tracker.update([face], 0) == []  # 1 hit: not yet
    assert tracker.update([face], 1) == []  # 2 hits: not yet
    assert [t.id for t in tracker.update([face], 2)] == [1]  # k = 3 hits: reported
    # A detection on an object for one frame never shows up.
    assert [t.id for t in tracker.update([face, (300, 10, 40, 40)], 3)] == [1]
    assert [t.id for t in tracker.update([face], 4)] == [1]
    # Two missed detections are bridged (m = 2), the third ends the track.
    assert [t.id for t in tracker.update([], 5)] == [1]
    assert [t.id for t in tracker.update([], 6)] == [1]
    assert tracker.update([], 7) == []
    assert tracker.tracks == []


def test_a_new_face_is_checked_every_frame_and_survives_one_miss():
    tracker = IoUTracker(TrackingConfig(detect_every=3, min_hits=2))
    face = (100, 100, 50, 50)
    assert tracker.update([face], 0) == []
    assert tracker.is_detection_frame(1)  # a tentative track is confirmed without waiting n
    assert tracker.update([], 1) == []  # the detector flickered: forgiven once
    assert [t.id for t in tracker.update([face], 2)] == [1]
    assert not tracker.is_detection_frame(4) and tracker.is_detection_frame(6)


def test_detect_every_n_predicts_boxes_in_between():
    config = TrackingConfig(detect_every=3, min_hits=1, max_missed=1)
    tracker = IoUTracker(config)
    positions = {}
    for frame in range(12):
        x = 10.0 * frame
        if tracker.is_detection_frame(frame):
            visible = tracker.update([(x, 0, 60, 60)], frame)
        else:
            visible = tracker.predict(frame)
        assert [t.id for t in visible] == [1]
        positions[frame] = visible[0].box[0]
    # After two detection passes the velocity estimate follows the motion.
    assert abs(positions[10] - 100.0) < 10.0
    assert abs(positions[11] - 110.0) < 10.0


def test_tracking_config_validates():
    with pytest.raises(ConfigError):
        TrackingConfig(detect_every=0)
    with pytest.raises(ConfigError):
        TrackingConfig(iou_threshold=1.5)


def test_whole_frame_search_schedule():
    tracker = IoUTracker(TrackingConfig(detect_every=2, search_every=6, min_hits=1))
    assert tracker.is_search_frame(0) and not tracker.is_detection_frame(1)
    assert tracker.is_search_frame(2)  # nothing tracked yet: every detection frame searches
    tracker.update([(10, 10, 40, 40)], 2)
    assert tracker.is_detection_frame(4) and not tracker.is_search_frame(4)  # around faces
    assert tracker.is_search_frame(6)


def test_a_new_face_found_again_by_a_second_look_is_reported_at_once():
    asked = []

    def recheck(box):
        asked.append(tuple(box))
        return box[0] < 200  # found again: the face on the left, not the object on the right

    tracker = IoUTracker(TrackingConfig(detect_every=1, min_hits=2))
    face, thing = (100, 100, 50, 50), (300, 10, 40, 40)
    assert [t.id for t in tracker.update([face, thing], 0, recheck)] == [1]
    assert [t.id for t in tracker.update([face, thing], 1, recheck)] == [1, 2]  # 2nd hit
    assert asked == [face, thing]  # only detections that start a track are rechecked
    # With k = 3 a passed second look still leaves one frame to wait.
    tracker = IoUTracker(TrackingConfig(detect_every=1, min_hits=3))
    assert tracker.update([face], 0, recheck) == []
    assert [t.id for t in tracker.update([face], 1, recheck)] == [1]


def test_ids_count_up_without_gaps_left_by_fleeting_false_faces():
    tracker = IoUTracker(TrackingConfig(detect_every=1, min_hits=2, max_missed=1))
    face, second = (100, 100, 50, 50), (300, 100, 50, 50)
    seen = []
    for frame in range(12):
        boxes = [face]
        if frame in (1, 4, 7):  # a false face flickers for one frame at a time
            boxes.append((10 + 30 * frame, 300, 20, 20))
        if frame >= 9:
            boxes.append(second)
        seen += [t.id for t in tracker.update(boxes, frame)]
    assert sorted(set(seen)) == [1, 2]


def test_a_scene_cut_ends_every_track_and_the_next_face_gets_a_new_id():
    tracker = IoUTracker(TrackingConfig(detect_every=1, min_hits=2))
    face = (100, 100, 50, 50)
    for frame in range(3):
        assert [t.id for t in tracker.update([face], frame)] == ([1] if frame else [])
    tracker.end_all()
    assert tracker.tracks == [] and tracker.is_search_frame(3)
    assert tracker.update([face], 3) == []  # the same place, another person: a new track
    assert [t.id for t in tracker.update([face], 4)] == [2]


def test_tracks_carry_landmarks_relative_to_their_box():
    tracker = IoUTracker(TrackingConfig(detect_every=1, min_hits=1))
    marks = ((110, 120), (130, 120), (120, 130), (112, 140), (128, 140))
    (track,) = tracker.update([(100, 100, 40, 50)], 0, landmarks=[marks])
    np.testing.assert_allclose(track.landmarks_at((100, 100, 40, 50)), marks)
    # the box moved and doubled: the landmarks move and scale with it
    moved = np.asarray(track.landmarks_at((0, 0, 80, 100)))
    np.testing.assert_allclose(moved, (np.asarray(marks) - 100) * 2)
    (track,) = tracker.update([(102, 100, 40, 50)], 1)  # a detection without landmarks
    assert track.landmarks_at(track.box) is not None  # keeps the last ones
