"""`--turned-search DEG[,DEG...]|none`: one shared face flag that reaches the detector
(`TurnedSearch`) of every command that cuts faces out of images; a head rolled 35° that the
frontal Haar cascade misses is found with it. Without the flag the default angles apply,
`none` searches upright only."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from ferkit.cli import app
from ferkit.infer.defaults import TURNED_SEARCH
from ferkit.infer.demo import sample_image
from ferkit.infer.faces import TurnedSearch

ROLL = 35.0  # Haar's frontal cascade finds the astronaut's head upright, not rolled this far


@pytest.fixture(scope="module")
def rolled(tmp_path_factory) -> Path:
    """The astronaut's head on a gray canvas, rolled by `ROLL` degrees."""
    image = cv2.imread(str(sample_image()))
    canvas = np.full((400, 400, 3), 128, np.uint8)
    canvas[70:330, 60:340] = image[0:260, 40:320]
    turn = cv2.getRotationMatrix2D((200, 200), ROLL, 1.0)
    rolled = cv2.warpAffine(canvas, turn, (400, 400), borderMode=cv2.BORDER_REPLICATE)
    path = tmp_path_factory.mktemp("rolled") / "rolled.png"
    cv2.imwrite(str(path), rolled)
    return path


@pytest.fixture
def angles(monkeypatch) -> list[tuple[float, ...]]:
    """The angles of every `TurnedSearch` built while the test runs."""
    built: list[tuple[float, ...]] = []
    init = TurnedSearch.__init__

    def spy(self, detector, angles, *rest):
        init(self, detector, angles, *rest)
        built.append(self.angles)

    monkeypatch.setattr(TurnedSearch, "__init__", spy)
    monkeypatch.setattr("ferkit.infer.recognizer.set_threads", lambda n: None)
    return built


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def faces_found(out: Path) -> int:
    with open(out / "faces.csv", newline="") as handle:
        return len(list(csv.DictReader(handle)))


def test_predict_finds_a_rolled_head_only_turned(tiny_checkpoint, rolled, tmp_path, angles):
    common = ["predict", rolled, "--model", tiny_checkpoint, "--no-video", "--detector", "haar"]
    result = invoke(*common, "--out", tmp_path / "plain", "--turned-search", "none")
    assert result.exit_code == 0, result.output
    assert faces_found(tmp_path / "plain") == 0 and angles == []
    result = invoke(*common, "--out", tmp_path / "turned", "--turned-search", f"-{ROLL},{ROLL}")
    assert result.exit_code == 0, result.output
    assert faces_found(tmp_path / "turned") == 1
    assert angles == [(-ROLL, ROLL)]
    result = invoke(*common, "--out", tmp_path / "haar-default")
    assert result.exit_code == 0, result.output
    assert angles[1:] == []  # Haar searches upright only unless asked
    result = invoke(*common[:-2], "--out", tmp_path / "default")
    assert result.exit_code == 0, result.output
    assert angles[1:] == [TURNED_SEARCH["mtcnn"]]  # the default detector turns by default


def test_explain_and_evaluate_folder_use_the_turned_search(
    tiny_checkpoint, rolled, tmp_path, angles
):
    haar = ("--detector", "haar")  # the flag reaching the command is tested, not MTCNN
    result = invoke("explain", tiny_checkpoint, rolled, "--out", tmp_path / "x", *haar,
                    "--turned-search", "30")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert angles == [(30.0,)]
    folder = tmp_path / "labelled" / "happy"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(rolled.read_bytes())
    result = invoke("evaluate", tiny_checkpoint, "--folder", folder.parent, "--out", tmp_path / "e",
                    "--no-calibrate", "--turned-search", f"{-ROLL},{ROLL}", *haar)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert angles[1:] == [(-ROLL, ROLL)]
    assert "a face in 1 of 1" in " ".join(result.output.split())


def test_serve_and_batch_pass_the_angles_on(tiny_checkpoint, rolled, tmp_path, angles, monkeypatch):
    pytest.importorskip("fastapi")
    import ferkit.batch
    import ferkit.serve.app as serve_app
    from ferkit.batch.settings import build_recognizer

    served = []
    monkeypatch.setattr(serve_app, "run", lambda app, **kw: served.append(app))
    result = invoke("serve", "--model", tiny_checkpoint, "--turned-search", "-20,25")
    assert result.exit_code == 0, result.output
    assert served[0].state.engine.recognizer.detector.angles == (-20.0, 25.0)
    runs = []

    def run_batch(sources, out, settings, **options):
        runs.append(settings)
        return ferkit.batch.BatchReport(Path(out), "r", processed=list(sources))

    monkeypatch.setattr(ferkit.batch, "run_batch", run_batch)
    result = invoke("batch", rolled, "--out", tmp_path / "b", "--model", tiny_checkpoint,
                    "--turned-search", "-15,15")  # fmt: skip
    assert result.exit_code == 0, result.output
    detector = build_recognizer(runs[0]).detector  # what each worker builds
    assert isinstance(detector, TurnedSearch) and detector.angles == (-15.0, 15.0)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--turned-search", "left"], "--turned-search takes angles"),
        (["--turned-search", "0"], "--turned-search takes angles"),
        (["--turned-search", "-20,200"], "--turned-search takes angles"),
        (["--turned-search", "20", "--detector", "none"], "needs a detector"),
    ],
)
def test_bad_angles_are_one_line_errors(tiny_checkpoint, rolled, tmp_path, flags, message):
    result = invoke("predict", rolled, "--model", tiny_checkpoint, "--out", tmp_path, *flags)
    assert result.exit_code == 1
    assert message in str(result.exception or result.output)
