"""The `ferkit` Typer app: input errors (`FerkitError`) become one line on stderr and
exit code 1; help text is Markdown."""

from __future__ import annotations

import sys

import typer

from ferkit.errors import FerkitError


class _App(typer.Typer):
    """Typer app that turns ferkit's input errors into one line and a non-zero exit."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except FerkitError as error:
            print(f"ferkit: error: {error}", file=sys.stderr)
            sys.exit(1)


# Help text is Markdown, not Rich markup, which takes any [word] for a style and drops it
# (`ferkit[serve]`, `[default: 2]`).
HELP_MARKUP = "markdown"

app = _App(
    name="ferkit",
    help="Facial expression recognition: data, training, tuning, evaluation, export, recognition.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=HELP_MARKUP,
)
