"""Copy a FER-2013 image-layout archive without its PublicTest files, so that `ferkit data
prepare` carves the val split at random out of the training images, as a notebook's
`validation_split` does.

Why: the original studies report "val" accuracies on a split they do not name. Training on
this store and reading its val tells whether such a split is easier than PublicTest (it
shares near-duplicates and, with `--no-drop-duplicates`, exact copies with training).
PrivateTest stays as the test split. The JPEG members are copied byte for byte.

    python scripts/random_val_archive.py ../shared/data/fer2013/fer2013.tar.gz /tmp/randval.tar.gz
    ferkit data prepare /tmp/randval.tar.gz --out /tmp/randval.h5 \
        --no-drop-duplicates --no-drop-blank
    ferkit studies run keras_flips --data /tmp/randval.h5 --out runs/studies_randval --budget 1
"""

from __future__ import annotations

import argparse
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ferkit.files import atomic_path  # noqa: E402

DROPPED_PREFIX = "PublicTest_"


def copy_without_public_test(source: Path, dest: Path) -> int:
    """Write `dest` (.tar.gz) with every member of `source` but the PublicTest images;
    returns how many files it holds. `dest` appears only once complete (`atomic_path`)."""
    kept = 0
    with atomic_path(dest) as tmp, tarfile.open(source) as archive:
        with tarfile.open(tmp, "w:gz", compresslevel=1) as out:
            for member in archive:
                if member.isfile() and not Path(member.name).name.startswith(DROPPED_PREFIX):
                    out.addfile(member, archive.extractfile(member))
                    kept += 1
    return kept


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="FER-2013 image-layout .tar.gz")
    parser.add_argument("dest", type=Path, help="archive to write (.tar.gz)")
    args = parser.parse_args(argv)
    print(f"{copy_without_public_test(args.source, args.dest):,} files → {args.dest}")


if __name__ == "__main__":
    main()
