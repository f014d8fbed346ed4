"""`python -m ferkit ...` (also what `torchrun -m ferkit train ...` runs)."""

from ferkit.cli import app

app()
