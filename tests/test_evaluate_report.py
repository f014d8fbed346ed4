"""`evaluate()` end to end on a tiny synthetic store: report files exist and parse, the
temperature lands in the checkpoint, ensembles, protocol warnings, folders, bad input, and
the evaluate / explain / compare commands."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ferkit.cli import app
from ferkit.data.store import open_store, write_store
from ferkit.errors import DataError, ModelError
from ferkit.evaluate import evaluate, explain_images
from ferkit.evaluate.calibration import store_temperature
from ferkit.evaluate.compare import compare
from ferkit.evaluate.ensemble import ensemble_probs
from ferkit.files import sha256_file
from ferkit.labels import EMOTIONS
from ferkit.models.checkpoint import load_checkpoint, save_checkpoint
from ferkit.models.registry import create_model
from ferkit.train.monitor import EpochStats, write_metrics

from conftest import synthetic_faces

FIGURES = ("confusion.png", "confusion_normalized.png", "reliability.png", "misclassified.png")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """7 classes: 14 train, 35 val and 35 test images."""
    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    splits = np.repeat([0, 1, 2], [14, 35, 35])
    labels = np.concatenate([np.arange(14) % 7, np.arange(35) % 7, np.arange(35) % 7])
    return write_store(path, synthetic_faces(84, seed=11), labels, splits)


def make_run(folder, store, arch="mini_xception", seed=0, class_names=EMOTIONS):
    """A run folder with a randomly initialised best.pt and a two-epoch metrics.csv."""
    torch.manual_seed(seed)
    with open_store(store) as opened:
        prep = opened.preprocessing()
    model = create_model(arch, num_classes=len(class_names)).eval()
    save_checkpoint(
        folder / "best.pt", model, arch=arch, arch_kwargs={}, preprocessing=prep,
        class_names=class_names, config={"data": {"val_split": "val"}}, epoch=2,
        metrics={"val_acc": 0.2}, train_state={},
    )  # fmt: skip
    write_metrics(
        [EpochStats(e, 0.01, 1.9, 0.2, 1.95, 0.2, 100.0, 1.0) for e in (1, 2)],
        folder / "metrics.csv",
    )
    return folder


@pytest.fixture
def run(tmp_path, store):
    return make_run(tmp_path / "runs" / "tiny", store)


def test_run_folder_report_files_exist_and_parse(run, store):
    result = evaluate([run], data=store, explain=2, bootstrap=50)
    assert result.out == run
    for name in (*FIGURES, "gradcam_misclassified.png", "curves.png", "report.md"):
        assert (run / name).stat().st_size > 500, name
    report = json.loads((run / "report.json").read_text())
    metrics = report["headline"]["metrics"]
    assert report["headline"]["name"] == "tiny"
    assert metrics["n"] == 35 and np.sum(metrics["confusion"]) == 35
    assert sum(c["support"] for c in metrics["per_class"].values()) == 35
    assert 0 <= metrics["accuracy_ci95"][0] <= metrics["accuracy"] <= metrics["accuracy_ci95"][1]
    assert report["data"]["split"] == "test" and report["data"]["split_label"] == "PrivateTest"
    assert report["data"]["store_sha256"] == sha256_file(store)
    assert report["data"]["leakage_cleaned"] is False
    assert report["protocol"]["reported_on"] == "test (PrivateTest)"
    assert report["protocol"]["model_selection"] == ["val (PublicTest)"]
    assert report["protocol"]["calibration"] == "val (PublicTest)"
    member = report["members"][0]
    assert member["arch"] == "mini_xception" and member["params"] > 10_000
    assert member["crops_per_s"] > 0
    assert report["explain"]["faces"] == 2
    assert set(report["files"]) >= {"confusion", "reliability", "gradcam", "curves tiny"}
    assert len(report["misclassified"]) == min(32, 35 - round(35 * metrics["accuracy"]))
    markdown = (run / "report.md").read_text()
    assert "| tiny |" in markdown and "(confusion.png)" in markdown and "(curves.png)" in markdown


def test_evaluation_leaves_the_checkpoint_as_it_was_unless_asked(run, store):
    before = sha256_file(run / "best.pt")
    report = evaluate([run], data=store, bootstrap=10).report
    assert report["members"][0]["calibration"]["source"] == "fitted on val (PublicTest)"
    assert "stored_in" not in report["members"][0]["calibration"]
    assert sha256_file(run / "best.pt") == before
    done = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(store)])
    assert done.exit_code == 0, done.output
    assert sha256_file(run / "best.pt") == before
    done = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(store),
                                    "--save-temperature"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "temperature" in load_checkpoint(run / "best.pt").metrics


def test_temperature_is_fitted_on_val_and_stored_in_the_checkpoint(run, store):
    report = evaluate([run], data=store, save_temperature=True, bootstrap=10).report
    calibration = report["members"][0]["calibration"]
    assert calibration["source"] == "fitted on val (PublicTest)"
    assert calibration["stored_in"] == str(run / "best.pt")
    stored = load_checkpoint(run / "best.pt").metrics
    assert stored["temperature"] == pytest.approx(calibration["temperature"])
    assert stored["temperature_fitted_on"]["store_sha256"] == sha256_file(store)
    # TTA probabilities are not what single-view inference sees: nothing is stored then
    flip = evaluate([run], data=store, tta="flip", save_temperature=True, bootstrap=10)
    assert flip.report["members"][0]["calibration"]["stored_in"].startswith("not stored")


def test_ensemble_of_identical_members_equals_its_member(run, store, tmp_path):
    probs = np.random.default_rng(0).dirichlet(np.ones(7), size=5).astype(np.float32)
    np.testing.assert_array_equal(ensemble_probs([probs]), probs)
    report = evaluate(
        [run, run / "best.pt"], data=store, out=tmp_path / "ens", bootstrap=10,
    ).report  # fmt: skip
    names = [m["name"] for m in report["members"]]
    assert names == ["tiny", "tiny/best"]
    member, ensemble = report["members"][0]["metrics"], report["ensemble"]["metrics"]
    assert ensemble["confusion"] == member["confusion"]
    assert ensemble["nll"] == pytest.approx(member["nll"], rel=1e-5)
    assert report["headline"]["name"] == "ensemble"


def test_onnx_export_evaluates_through_the_classifier_seam(run, store, tmp_path):
    pytest.importorskip("onnxruntime")
    from ferkit.export import export_onnx

    onnx_file = export_onnx(run, tmp_path / "tiny.onnx", data=store, check_samples=10).path
    report = evaluate(
        [onnx_file, run], data=store, out=tmp_path / "onnx", save_temperature=True, bootstrap=10
    ).report
    onnx_member, torch_member = report["members"]
    assert onnx_member["backend"] == "OnnxClassifier" and "params" not in onnx_member
    assert onnx_member["calibration"]["stored_in"] == "not stored: not a PyTorch checkpoint"
    assert onnx_member["metrics"]["confusion"] == torch_member["metrics"]["confusion"]
    assert onnx_member["metrics"]["nll"] == pytest.approx(torch_member["metrics"]["nll"], abs=1e-4)


def test_reporting_on_val_warns(run, store, tmp_path):
    report = evaluate([run], data=store, split="val", out=tmp_path / "val", bootstrap=10).report
    assert any("optimistic" in w for w in report["protocol"]["warnings"])


def test_model_and_store_that_disagree_fail_clearly(tmp_path, store, faces):
    three = make_run(tmp_path / "three", store, class_names=("angry", "happy", "sad"))
    with pytest.raises(ModelError, match="predicts classes angry, happy, sad but .*tiny.h5"):
        evaluate([three], data=store)
    small = write_store(tmp_path / "small.h5", faces(4)[:, :40, :40], [0, 1, 2, 3], [0, 1, 2, 2])
    with pytest.raises(ModelError, match="takes 48×48 faces but .*small.h5.* 40×40"):
        evaluate([make_run(tmp_path / "r", store)], data=small)


def test_labelled_folder_with_bad_files(run, tmp_path, faces):
    root = tmp_path / "photos"
    for k, name in enumerate(("anger", "happiness", "surprised")):
        (root / name).mkdir(parents=True)
        cv2.imwrite(str(root / name / f"{k}.png"), cv2.resize(faces(1, seed=k)[0], (96, 96)))
    (root / "happiness" / "bad.jpg").write_bytes(b"garbage")
    store_temperature(run / "best.pt", 1.5, {"split": "val"})  # as an earlier evaluate would
    result = evaluate([run], folder=root, detector=None, out=tmp_path / "out", bootstrap=10)
    data = result.report["data"]
    assert data["kind"] == "folder" and data["n"] == 3
    assert data["failures"]["count"] == 1
    assert data["failures"]["files"][0][0] == "happiness/bad.jpg"
    assert "cannot decode" in data["failures"]["files"][0][1]
    # no val split here: the checkpoint's stored temperature calibrates the probabilities
    calibration = result.report["members"][0]["calibration"]
    assert calibration["source"] == "stored in the checkpoint"
    assert calibration["temperature"] == 1.5
    assert result.report["protocol"]["calibration"].startswith("temperature stored")
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "Unreadable files (1)" in markdown
    # three of seven classes have faces here: the macro averages say they cover those three
    assert "over the 3 classes present in the labels: angry, happy, surprise" in markdown


def test_compare_evaluated_runs(tmp_path, store):
    runs = [make_run(tmp_path / name, store, arch, seed) for name, arch, seed in
            (("a", "mini_xception", 0), ("b", "mini_xception", 1))]  # fmt: skip
    for folder in runs:
        evaluate([folder], data=store, bootstrap=10)
    (tmp_path / "not-evaluated").mkdir()
    result = compare([*runs, tmp_path / "not-evaluated"], out=tmp_path / "cmp")
    assert sorted(r["model"] for r in result.rows) == ["a", "b"]
    assert result.rows[0]["accuracy"] >= result.rows[1]["accuracy"]
    assert result.comparable and result.skipped[0][0].endswith("not-evaluated")
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| a | mini_xception | 56,951 |" in table and "| b | mini_xception |" in table
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 1000
    with pytest.raises(DataError, match="nothing to compare"):
        compare([tmp_path / "not-evaluated"])


def test_explain_images(run, tmp_path, faces):
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), cv2.resize(faces(1)[0], (120, 120)))
    written = explain_images(run, [image], tmp_path / "cam", emotion="all", detector=None)
    assert written == [tmp_path / "cam" / "face_gradcam.png"]
    assert written[0].stat().st_size > 1000
    with pytest.raises(Exception, match="unknown emotion 'joyful'"):
        explain_images(run, [image], tmp_path / "cam", emotion="joyful")


def test_cli_evaluate_explain_and_compare(run, store, tmp_path, faces):
    cli = CliRunner()
    done = cli.invoke(app, ["evaluate", str(run), "--data", str(store), "--tta", "tencrop"])
    assert done.exit_code == 0, done.output
    assert "test (PrivateTest), TTA tencrop" in done.output and "report:" in done.output
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), faces(1)[0])
    shown = cli.invoke(
        app, ["explain", str(run), str(image), "--no-detect", "--out", str(tmp_path)]
    )
    assert shown.exit_code == 0, shown.output
    assert (tmp_path / "face_gradcam.png").is_file()
    compared = cli.invoke(app, ["compare", str(run), "--out", str(tmp_path / "cmp")])
    assert compared.exit_code == 0 and "| tiny |" in compared.output


def test_cli_bad_model_prints_one_line(tmp_path):
    failed = subprocess.run(
        [sys.executable, "-m", "ferkit", "evaluate", str(tmp_path / "nope.pt")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        f"ferkit: error: checkpoint not found: {tmp_path / 'nope.pt'}"
    ]
