"""The `ferkit` command line: a thin layer that parses options, calls the Python API and
prints results. Anything worth doing from Python lives in the package, not here.

Errors caused by input (`FerkitError`) are printed on one line to stderr with exit code 1.
Heavy modules are imported inside the command that needs them so `ferkit --help` is quick.

One module per command group (data, train, recognize, evaluate, ship, serve, studies), over
`ferkit.cli.app` (the Typer app, the entry point `ferkit = "ferkit.cli:app"`) and
`ferkit.cli.options` (the face options several commands share); importing a group's module
registers its commands.
"""

from importlib import import_module

from ferkit.cli.app import app

# Each group's module registers its commands on import; this order is `ferkit --help`'s.
GROUPS = ("data", "train", "recognize", "evaluate", "ship", "serve", "studies")
for _group in GROUPS:
    import_module(f"ferkit.cli.{_group}")

__all__ = ["app"]
