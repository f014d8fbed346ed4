"""Recognizer end to end with a small untrained model: faces, tracking over a synthetic video,
batching, every output file round-tripping, Ctrl-C, the CLI and the demo."""

import csv
import json

import cv2
import numpy as np
import pytest

from ferkit.errors import ModelError
from ferkit.infer.demo import sample_image
from ferkit.infer.faces import Detection
from ferkit.infer.frames import read_image
from ferkit.infer.recognizer import Recognizer
from ferkit.infer.results import Face, FrameResult
from ferkit.infer.writers import record
from ferkit.labels import EMOTIONS

from conftest import TINY_PREP, save_tiny_checkpoint


@pytest.fixture(scope="module")
def moving_face_video(tmp_path_factory):
    """A 320×240 clip, 24 frames at 12 fps: the astronaut's head moves right and down."""
    path = tmp_path_factory.mktemp("video") / "moving.mp4"
    head = cv2.resize(read_image(sample_image())[20:200, 90:270], (110, 110))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (320, 240))
    for i in range(24):
        frame = np.full((240, 320, 3), (90, 120, 150), np.uint8)
        x, y = 20 + 6 * i, 30 + 2 * i
        frame[y : y + 110, x : x + 110] = head
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory):
    """A 320×240 clip, 20 frames at 10 fps: the astronaut's head before a hard cut at frame
    10 to another shot (another room, the head mirrored) with a face at the same place."""
    path = tmp_path_factory.mktemp("video") / "cut.mp4"
    head = cv2.resize(read_image(sample_image())[20:200, 90:270], (110, 110))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    for i in range(20):
        if i < 10:
            frame = np.full((240, 320, 3), (90, 120, 150), np.uint8)
            frame[:, 200:] = (200, 210, 220)
            face = head
        else:
            frame = np.full((240, 320, 3), (40, 40, 40), np.uint8)
            frame[120:] = (230, 200, 120)
            face = head[:, ::-1]
        frame[60:170, 100:210] = face
        writer.write(frame)
    writer.release()
    return path


def test_predict_photo(tiny_model):
    faces = Recognizer(tiny_model).predict(sample_image())
    assert len(faces) == 1
    face = faces[0]
    assert set(face.probs) == set(EMOTIONS)
    assert sum(face.probs.values()) == pytest.approx(1.0)
    assert face.label == max(face.probs, key=face.probs.get) and face.track_id is None
    again = Face.from_dict(json.loads(json.dumps(face.to_dict())))
    assert again.box == face.box and again.label == face.label


def test_no_face_is_an_empty_result(tiny_model):
    assert Recognizer(tiny_model).predict(np.full((200, 300, 3), 255, np.uint8)) == []


def test_checkpoint_path_and_missing_model(tiny_checkpoint):
    from ferkit.models.checkpoint import load_model

    image = read_image(sample_image())
    from_file = Recognizer(tiny_checkpoint).predict(image)[0].probs
    in_memory = Recognizer(load_model(tiny_checkpoint)).predict(image)[0].probs
    assert from_file == pytest.approx(in_memory, abs=1e-6)
    with pytest.raises(ModelError, match="no-such-model"):
        Recognizer("no-such-model")
    with pytest.raises(ModelError, match="unknown backend 'tensorrt'"):
        Recognizer(tiny_checkpoint, backend="tensorrt")


def test_faces_of_many_images_go_through_the_model_in_one_batch(tiny_model, tmp_path):
    calls = []

    class Counting:
        class_names, preprocessing = EMOTIONS, TINY_PREP

        def predict_proba(self, faces):
            calls.append(len(faces))
            return np.full((len(faces), 7), 1 / 7, np.float32)

    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), read_image(sample_image()))
    results = list(Recognizer(Counting()).stream(tmp_path))
    assert [len(r.faces) for r in results] == [1] * 5
    assert calls == [5]


def test_moving_face_keeps_one_track_id(tiny_model, moving_face_video):
    results = list(Recognizer(tiny_model).stream(moving_face_video))
    assert len(results) == 24
    ids = {face.track_id for r in results for face in r.faces}
    assert len(ids) == 1  # (ids of tentative tracks that never got reported are skipped)
    # Found again by the second look around it: reported from the first frame on.
    assert all(len(r.faces) == 1 for r in results)
    assert results[5].time_s == pytest.approx(5 / 12)


def test_a_detection_the_second_look_misses_waits_for_a_second_frame(tiny_model, moving_face_video):
    """A detector that fires on the whole frame but never in the window around the box
    (like a false detection on a texture): hysteresis holds it back for one frame."""

    class WholeFrameOnly:
        name = "stub"

        def detect(self, image, face_sizes=None):
            return [] if face_sizes else [Detection((100, 60, 80, 80))]

    results = list(Recognizer(tiny_model, detector=WholeFrameOnly()).stream(moving_face_video))
    assert [len(r.faces) for r in results[:3]] == [0, 1, 1]


def test_a_scene_cut_ends_the_track_and_the_next_shot_starts_a_new_one(tiny_model, cut_video):
    results = list(Recognizer(tiny_model).stream(cut_video))
    ids = [[f.track_id for f in r.faces] for r in results]
    before = {i for frame in ids[:10] for i in frame}
    after = {i for frame in ids[10:] for i in frame}
    assert before == {1} and after == {2}  # counted without gaps, no track across the cut
    assert all(len(frame) == 1 for frame in ids)
    assert all(r.source == str(cut_video) for r in results)  # video rows name their source


def test_a_box_inside_a_larger_face_is_not_a_face_of_its_own(tiny_model):
    """Detectors also fire on a part of a face (mouth and chin): such boxes are dropped,
    two faces side by side are kept."""
    face, mouth, other = (100, 100, 120, 120), (130, 160, 60, 60), (260, 100, 100, 100)

    class Fixed:
        name = "stub"

        def detect(self, image, face_sizes=None):
            return [Detection(mouth, 0.9), Detection(face), Detection(other)]

    faces = Recognizer(tiny_model, detector=Fixed()).predict(np.zeros((300, 400, 3), np.uint8))
    assert sorted(f.box for f in faces) == [face, other]


def test_faces_are_aligned_by_default_and_the_box_crop_stays_available(tiny_model):
    image = read_image(sample_image())
    aligned, boxed = Recognizer(tiny_model), Recognizer(tiny_model, align="box")
    assert aligned.preprocessing.align == "template" and boxed.preprocessing.align == "box"
    (found,) = aligned.detect(image)
    assert not np.array_equal(aligned.crop(image, found), boxed.crop(image, found))


def test_equalize_is_on_by_default_and_can_follow_the_model(tiny_model):
    assert Recognizer(tiny_model).preprocessing.equalize is True
    assert Recognizer(tiny_model, equalize=False).preprocessing.equalize is False
    assert Recognizer(tiny_model, equalize=None).preprocessing == TINY_PREP


def test_video_outputs_round_trip(tiny_model, moving_face_video, tmp_path):
    summary = record(Recognizer(tiny_model), moving_face_video, tmp_path, gif=True)
    assert summary.frames == 24 and not summary.interrupted
    video = cv2.VideoCapture(str(tmp_path / "moving_annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
    with open(tmp_path / "faces.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == summary.faces
    assert len({r["track_id"] for r in rows}) == 1
    assert sum(float(rows[0][f"p_{e}"]) for e in EMOTIONS) == pytest.approx(1.0, abs=1e-4)
    lines = (tmp_path / "frames.jsonl").read_text().splitlines()
    results = [FrameResult.from_dict(json.loads(line)) for line in lines]
    assert [r.index for r in results] == list(range(24))
    assert sum(len(r.faces) for r in results) == summary.faces
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert len(saved["tracks"]) == 1 and saved["frames"] == 24
    assert sum(saved["tracks"][0]["share"].values()) == pytest.approx(1.0, abs=1e-3)
    from PIL import Image

    with Image.open(tmp_path / "moving.gif") as gif:
        assert gif.n_frames == 24  # 12 fps rounds to a step of 1 under the 10 fps cap
    assert (tmp_path / "timeline.png").stat().st_size > 0
    assert not list(tmp_path.glob("*.part*"))


def test_ctrl_c_keeps_what_was_written(tiny_model, moving_face_video, tmp_path):
    recognizer = Recognizer(tiny_model)
    frames = recognizer.frames

    def interrupted(source):
        for i, item in enumerate(frames(source)):
            if i == 5:
                raise KeyboardInterrupt
            yield item

    recognizer.frames = interrupted
    summary = record(recognizer, moving_face_video, tmp_path)
    assert summary.interrupted and summary.frames == 5
    assert len((tmp_path / "frames.jsonl").read_text().splitlines()) == 5
    video = cv2.VideoCapture(str(tmp_path / "moving_annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert json.loads((tmp_path / "summary.json").read_text())["interrupted"] is True


def _cli(capsys, *args):
    """Run the CLI in-process as `python -m ferkit` would; (exit code, stdout, stderr)."""
    from ferkit.cli import app

    with pytest.raises(SystemExit) as exit_info:
        app(args=[str(a) for a in args], prog_name="ferkit")
    captured = capsys.readouterr()
    return exit_info.value.code or 0, captured.out, captured.err


def test_cli_predict_folder_lists_failures(tiny_checkpoint, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "astronaut.jpg"), read_image(sample_image()))
    (images / "broken.png").write_bytes(b"junk")
    out = tmp_path / "out"
    code, stdout, stderr = _cli(capsys, "predict", images, "--out", out, "--model", tiny_checkpoint)
    assert code == 0, stderr
    assert "broken.png" in stdout and "astronaut.jpg" in stdout
    assert (out / "annotated" / "0000_astronaut.jpg").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"][0]["faces"] == 1 and summary["failures"][0]["file"].endswith("png")


def test_cli_predict_bad_input_is_one_line_error(tmp_path, tiny_checkpoint, capsys):
    missing = tmp_path / "nope.mp4"
    code, _, stderr = _cli(capsys, "predict", missing, "--model", tiny_checkpoint)
    assert code == 1
    assert stderr.strip().splitlines() == [
        f"ferkit: error: no such file or folder: {tmp_path / 'nope.mp4'}"
    ]


def test_demo_model_choice_says_what_it_uses(tmp_path, monkeypatch):
    from ferkit.infer.loading import choose_model
    from ferkit.models import checkpoint as checkpoint_module

    monkeypatch.delenv("FERKIT_MODEL", raising=False)
    monkeypatch.setattr(checkpoint_module, "shipped_models", lambda: [])
    monkeypatch.setattr(checkpoint_module, "shipped_aliases", lambda: {})
    untrained = choose_model(runs=tmp_path)
    assert not untrained.trained and "UNTRAINED" in untrained.description
    for name, accuracy in (("worse", 0.30), ("better", 0.55)):
        save_tiny_checkpoint(tmp_path / name / "best.pt", metrics={"val_acc": accuracy})
    chosen = choose_model(runs=tmp_path)
    assert chosen.trained and "better" in chosen.description and "55.0%" in chosen.description
    assert "NO SHIPPED WEIGHTS" in chosen.description


def test_probability_panels_of_close_faces_do_not_cover_each_other_or_faces():
    from ferkit.infer.results import _covered, _draw_bars

    canvas = np.zeros((480, 640, 3), np.uint8)
    faces = [Face.from_probs(box, np.full(7, 1 / 7), EMOTIONS) for box in
             ((200, 150, 90, 90), (300, 150, 90, 90))]  # fmt: skip
    taken = [f.box for f in faces]
    for face in faces:
        panel = _draw_bars(canvas, face, 0.6, taken)
        assert _covered(panel, taken) == 0
        taken.append(panel)


def test_timeline_of_a_one_frame_track_and_a_long_one(tmp_path):
    from ferkit.infer.writers import TrackStats, plot_timeline

    stats = TrackStats(EMOTIONS)
    for i in range(20):
        faces = [Face.from_probs((0, 0, 50, 50), np.full(7, 1 / 7), EMOTIONS, 1)]
        if i == 7:
            faces.append(Face.from_probs((100, 0, 50, 50), np.eye(7)[3], EMOTIONS, 2))
        stats.add(FrameResult(i, i / 10, faces))
    assert plot_timeline(stats, tmp_path / "timeline.png").stat().st_size > 0
