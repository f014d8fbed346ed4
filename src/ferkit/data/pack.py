"""A compact copy of a store, for a machine that takes only a few tens of megabytes along.

The lent GPU machine (docs/gpu.md) receives 64 MiB of working tree in all, and the 48×48
store is 80 MB of pixels that barely compress without loss (sensor noise: gzip level 9
keeps 95 %, lzma 82 %). A pack encodes the faces of the splits that are only trained on as
WebP (quality 95: ≈ 1.4 kB a face, a mean error of about one grey level, below FER-2013's
own JPEG noise and far below what augmentation does to a face) and every other split as
lossless PNG, so the split that picks the epoch is read exactly. Train + val pack into
≈ 46 MB. `unpack_store` writes an ordinary store with the original's normalisation, so the
trainer and the checkpoints it writes cannot tell the difference.

The file is an uncompressed `.npz` (the blobs are compressed already), read back with
`allow_pickle=False`; every length, offset and decoded size is checked, and an error names
the split and row.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ferkit.errors import DataError, FerkitError
from ferkit.files import atomic_path, check_writable, refuse_existing
from ferkit.images import decode_image

PACK_FORMAT = "ferkit-pack"
PACK_VERSION = 1
# A 48×48 face is ≈ 2 kB as PNG; anything far larger is not a face of this store.
MAX_BLOB_BYTES = 64 * 1024


def _encode(image: np.ndarray, lossy: bool, quality: int) -> bytes:
    import cv2

    if lossy:
        ok, blob = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, quality])
    else:
        ok, blob = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise DataError(f"cannot encode a {image.shape} face")
    return blob.tobytes()


def pack_store(
    store_path: str | Path,
    out: str | Path,
    *,
    splits: tuple[str, ...] = ("train", "val"),
    lossy: tuple[str, ...] = ("train",),
    quality: int = 95,
    force: bool = False,
) -> Path:
    """Write the `splits` of a store to one `.npz`: `lossy` splits as WebP at `quality`,
    the others as PNG. Returns the path."""
    from ferkit import __version__
    from ferkit.data.store import SPLITS, open_store

    out = Path(out)
    if out.suffix != ".npz":
        raise DataError(f"{out}: a pack is an .npz file")
    refuse_existing(out, force)
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown or not splits:
        raise DataError(f"splits must be among {', '.join(SPLITS)}; got {', '.join(splits)}")
    if not 1 <= quality <= 100:
        raise DataError(f"WebP quality must be 1–100, not {quality}")
    check_writable(out)  # a read-only folder fails now, not after a minute of encoding
    arrays: dict[str, np.ndarray] = {}
    with open_store(store_path) as store:
        meta = {
            "format": PACK_FORMAT, "version": PACK_VERSION, "ferkit_version": __version__,
            "class_names": list(store.class_names), "mean": store.mean, "std": store.std,
            "source": f"{store.path} ({store.source})", "splits": {},
        }  # fmt: skip
        for split in splits:
            images, labels = store.split_arrays(split)
            blobs = [_encode(image, split in lossy, quality) for image in images]
            offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
            offsets[1:] = np.cumsum([len(b) for b in blobs])
            arrays[f"{split}_blobs"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
            arrays[f"{split}_offsets"] = offsets
            arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.uint8)
            meta["splits"][split] = {
                "n": len(blobs),
                "codec": f"webp q{quality}" if split in lossy else "png",
                "source_ids": store.source_ids(split),
            }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as handle:  # a file handle: np.savez would append ".npz"
            np.savez(handle, **arrays)
    return out


def _read_meta(pack, path: Path) -> dict:
    try:
        meta = json.loads(pack["meta"].tobytes())
    except (KeyError, ValueError) as error:
        raise DataError(f"{path}: not a ferkit pack (no readable meta)") from error
    if meta.get("format") != PACK_FORMAT or meta.get("version", 0) > PACK_VERSION:
        raise DataError(f"{path}: not a ferkit pack this version reads ({meta.get('format')!r})")
    return meta


def _decode_split(pack, path: Path, split: str, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    blobs, offsets, labels = (pack[f"{split}_{key}"] for key in ("blobs", "offsets", "labels"))
    if offsets.shape != (n + 1,) or labels.shape != (n,) or offsets[0] != 0:
        raise DataError(f"{path}: {split}: {n} faces announced, arrays disagree")
    lengths = np.diff(offsets)
    bad = (lengths <= 0) | (lengths > MAX_BLOB_BYTES)
    if bad.any() or offsets[-1] != len(blobs):
        row = int(np.argmax(bad)) if bad.any() else n - 1  # else: the last face overruns
        raise DataError(f"{path}: {split} row {row}: face data out of bounds")
    images = np.empty((n, size, size), dtype=np.uint8)
    for row in range(n):
        name = f"{path}: {split} row {row}"
        try:
            face = decode_image(
                blobs[offsets[row] : offsets[row + 1]].tobytes(), name, size * size, gray=True
            )
        except FerkitError as error:
            raise DataError(str(error)) from None
        if face.shape != (size, size):
            raise DataError(f"{name}: decoded to {face.shape}, expected ({size}, {size}) gray")
        images[row] = face
    return images, labels


def unpack_store(
    pack_path: str | Path, out: str | Path, *, size: int = 48, force: bool = False
) -> Path:
    """Decode a pack into an HDF5 store (splits it lacks are empty). Returns the path."""
    from ferkit.data.store import SPLITS, write_store

    pack_path = Path(pack_path)
    if not pack_path.is_file():
        raise DataError(f"pack not found: {pack_path}")
    try:
        pack = np.load(pack_path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"{pack_path}: not a readable .npz ({error})") from None
    with pack:
        meta = _read_meta(pack, pack_path)
        parts, ids = [], []
        for index, split in enumerate(SPLITS):
            info = meta["splits"].get(split)
            if info is None:
                continue
            try:
                images, labels = _decode_split(pack, pack_path, split, int(info["n"]), size)
            except KeyError as error:
                raise DataError(f"{pack_path}: {split}: array {error} missing") from None
            parts.append((images, labels, np.full(len(labels), index, dtype=np.uint8)))
            ids.extend(info.get("source_ids") or [f"{split}{i}" for i in range(len(labels))])
    images, labels, splits = (np.concatenate(column) for column in zip(*parts, strict=True))
    return write_store(
        out, images, labels, splits, ids, class_names=tuple(meta["class_names"]),
        source=f"pack {pack_path} of {meta['source']}", normalization=(meta["mean"], meta["std"]),
        force=force,
    )  # fmt: skip
