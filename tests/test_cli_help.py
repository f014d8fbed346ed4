"""The CLI's help says what the code does: bracketed text survives the help formatter, and
defaults named in the help are the ones used."""

from __future__ import annotations

from typer.testing import CliRunner

from ferkit.cli import app


def _help(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_bracketed_help_text_is_shown_as_written():
    assert "pip install 'ferkit[serve]'" in _help("serve")
    assert "detect on every n-th frame [default: 2]" in _help("predict")


def test_evaluate_out_help_names_both_default_folders(tmp_path):
    from ferkit.evaluate.workflow import output_folder

    shown = _help("evaluate")
    assert "[default: a given run's folder, else runs/evaluate/MODEL]" in shown
    assert "--save-temperature" in shown
    run = tmp_path / "run"

    class Member:  # what output_folder reads of a member
        def __init__(self, name, run_dir):
            self.name, self.run_dir = name, run_dir

    assert output_folder([Member("run", run)], None) == run
    assert output_folder([Member("default", None)], None).parts == ("runs", "evaluate", "default")
