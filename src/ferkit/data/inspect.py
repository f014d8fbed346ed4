"""`ferkit data inspect`: what is in a store, as a table a person reads at a glance."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table

from ferkit.data.store import SPLITS, Store


def inspect_table(store: Store) -> Group:
    """Class distribution per split (count and share), normalisation stats, cleaning summary."""
    counts = store.counts()
    table = Table(title=f"{store.path}  (source sha256 {store.source_sha256[:12] or 'n/a'})")
    table.add_column("class")
    for split in SPLITS:
        table.add_column(split, justify="right")
    totals = {split: sum(counts[split].values()) for split in SPLITS}
    for name in store.class_names:
        cells = []
        for split in SPLITS:
            n = counts[split].get(name, 0)
            share = 100.0 * n / totals[split] if totals[split] else 0.0
            cells.append(f"{n:,} ({share:4.1f} %)")
        table.add_row(name, *cells)
    table.add_section()
    table.add_row("total", *(f"{totals[s]:,}" for s in SPLITS))

    s = store.clean_summary
    lines = [f"train mean {store.mean:.4f}, std {store.std:.4f} (pixels in [0, 1])"]
    if s:
        removed = ", ".join(f"{k} {v}" for k, v in s.get("removed", {}).items())
        lines.append(
            f"cleaning: read {s.get('read', 0):,}, kept {s.get('kept', 0):,}; removed: {removed}"
        )
        lines.append(
            f"leaks found {s.get('leaks_found', 0)}, near-duplicate pairs "
            f"{s.get('near_duplicate_pairs', 0)}, val carved from train "
            f"{s.get('val_carved_from_train', 0)}"
        )
    return Group(table, *lines)
