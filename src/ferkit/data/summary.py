"""`ferkit data inspect`: what is in a store, as a table a person reads at a glance (a
summary; the module is not named `inspect`, which would shadow the standard library's)."""

from __future__ import annotations

import numpy as np
from rich.console import Group
from rich.table import Table

from ferkit.data.store import SPLITS, Store
from ferkit.data.targets import (
    MAJORITY_NAMES,
    NO_VOTES,
    NOT_A_FACE,
    UNKNOWN,
    agreement,
    majority,
)


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
    if store.has_ferplus:
        return Group(table, *lines, *ferplus_section(store))
    return Group(table, *lines)


def ferplus_agreement(store: Store) -> dict[str, np.ndarray]:
    """FER-2013 label × FER+ majority counts per split (`ferkit.data.targets.agreement`)."""
    tables = {}
    for split in SPLITS:
        labels = store.split_arrays(split)[1]
        tables[split] = agreement(labels, store.ferplus_votes(split)[0], len(store.class_names))
    return tables


def ferplus_section(store: Store) -> list:
    """How often the FER+ majority agrees with the FER-2013 label, per class and split (of
    the images whose majority is an emotion), and the images FER+ calls not-a-face."""
    tables = ferplus_agreement(store)
    table = Table(
        title="FER-2013 label vs FER+ majority: agree / images whose majority is an emotion "
        "(unknown, not-a-face, no votes)"
    )
    table.add_column("FER-2013 label")
    for split in (*SPLITS, "all"):
        table.add_column(split, justify="right")
    total = sum(tables.values())

    def cell(counts: np.ndarray, rows) -> str:
        agree = sum(counts[k, k] for k in rows)
        decided = counts[rows, :UNKNOWN].sum()
        share = f"{100 * agree / decided:4.1f} %" if decided else "–"
        rest = "/".join(f"{counts[rows, c].sum():,}" for c in (UNKNOWN, NOT_A_FACE, NO_VOTES))
        return f"{agree:,}/{decided:,} {share} ({rest})"

    for k, name in enumerate(store.class_names):
        table.add_row(name, *(cell(t, [k]) for t in (*tables.values(), total)))
    table.add_section()
    every = list(range(len(store.class_names)))
    table.add_row("all", *(cell(t, every) for t in (*tables.values(), total)))
    shares = ", ".join(f"{name} {n:,}" for name, n in zip(MAJORITY_NAMES, total.sum(0)) if n)
    info = store.ferplus_info()
    lines = [
        f"FER+ votes: {info.get('file', '?')} (joined by {info.get('join', '?')}); "
        f"FER+ majority over all splits: {shares}",
    ]
    faces = not_a_face(store)
    lines.append(f"FER+ not-a-face images ({sum(len(v) for v in faces.values())}):")
    lines += [f"  {split}: {', '.join(ids)}" for split, ids in faces.items() if ids]
    return [table, *lines]


def not_a_face(store: Store) -> dict[str, list[str]]:
    """Source ids of the images whose FER+ majority is not-a-face, per split."""
    found = {}
    for split in SPLITS:
        codes = majority(store.ferplus_votes(split)[0])
        ids = store.source_ids(split)
        found[split] = [ids[i] for i in np.flatnonzero(codes == NOT_A_FACE)]
    return found
