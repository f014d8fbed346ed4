"""Any labelled image folder as evaluation data: `root/<class>/<images>` → faces and labels.

Class folders may use common synonyms (anger, sadness, happiness, surprised, ...; see
`ferkit.labels.SYNONYMS`) or be renamed with a class map (`--class-map contempt=disgust`).
Images may have any size and colour; each goes through exactly the recognition pipeline
that `ferkit predict` runs (a `Recognizer`: the same reader, detector and options, nested-box
suppression, alignment onto the training framing, equalisation), its largest face is
evaluated, and images where the detector finds no face are classified whole, counted and
listed, so nothing is silently dropped. Unreadable files are skipped and listed with their
reason; the rest is evaluated.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ferkit.errors import DataError, FerkitError
from ferkit.labels import canonical_name

log = logging.getLogger(__name__)


@dataclass
class FolderData:
    """Faces of a labelled folder, ready for a classifier.

    faces (N, size, size) uint8, labels (N,) indices into `class_names`, `paths` per face;
    `failures` (path, reason) of files that could not be read; `no_face` paths classified
    whole because the detector found no face; `several` paths where it found more than one
    (the largest was evaluated); `folders` maps each class folder to its class.
    """

    root: Path
    faces: np.ndarray
    labels: np.ndarray
    paths: list[str]
    class_names: tuple[str, ...]
    folders: dict[str, str]
    detector: str
    failures: list[tuple[str, str]] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)
    several: list[str] = field(default_factory=list)
    preprocessing: dict = field(default_factory=dict)

    def describe(self) -> dict:
        """JSON-safe summary for report.json."""
        return {
            "kind": "folder",
            "path": str(self.root),
            "n": int(len(self.labels)),
            "class_folders": self.folders,
            "detector": self.detector,
            "preprocessing": self.preprocessing,
            "failures": {"count": len(self.failures), "files": [list(f) for f in self.failures]},
            "no_face": {"count": len(self.no_face), "files": self.no_face},
            "several_faces": {"count": len(self.several), "files": self.several},
            "face_counts": self.face_counts(),
        }

    def face_counts(self) -> str:
        """One line for the console: faces found, whole-image fallbacks, unreadable files."""
        n = len(self.labels)
        if self.detector == "none":
            line = f"{n:,} images classified whole (no detection)"
        else:
            found = n - len(self.no_face)
            line = (
                f"{self.detector}: a face in {found:,} of {n:,} images; no face in "
                f"{len(self.no_face):,} ({len(self.no_face) / n:.0%}), classified whole"
            )
            if self.several:
                line += f"; several faces in {len(self.several):,} (the largest evaluated)"
        return line + (f"; {len(self.failures):,} unreadable" if self.failures else "")


def map_class_folders(
    root: Path, class_names: Sequence[str], class_map: Mapping[str, str] | None = None
) -> dict[Path, int]:
    """Class index of every class folder under `root`; an unknown folder is a DataError
    that lists the expected names."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (expected one subfolder per class)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root}: no class subfolders (expected e.g. {root}/happy/*.jpg)")
    mapping, unknown = {}, []
    for folder in folders:
        name = canonical_name(folder.name, class_map)
        if name is None or name not in class_names:
            unknown.append(folder.name)
        else:
            mapping[folder] = list(class_names).index(name)
    if unknown:
        raise DataError(
            f"{root}: unknown class folder(s) {', '.join(map(repr, unknown))}; expected "
            f"{', '.join(class_names)} (or a common synonym), or map them with "
            "--class-map old=new"
        )
    return mapping


def load_labelled_folder(
    root: str | Path,
    class_names: Sequence[str],
    recognizer,
    *,
    class_map: Mapping[str, str] | None = None,
) -> FolderData:
    """Read, detect and crop every image under the class folders of `root` with the
    `recognizer`'s own `detect` and `crop` (a `ferkit.infer.recognizer.Recognizer`; its
    detector "none" uses each whole image as the face, for images that are face crops)."""
    from ferkit.infer.frames import read_image

    root = Path(root)
    mapping = map_class_folders(root, class_names, class_map)
    detector_name = getattr(recognizer.detector, "name", type(recognizer.detector).__name__)
    faces, labels, paths = [], [], []
    failures: list[tuple[str, str]] = []
    no_face: list[str] = []
    several: list[str] = []
    for folder, label in mapping.items():
        files = sorted(
            p
            for p in folder.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
        for path in files:
            name = str(path.relative_to(root))
            try:
                image = read_image(path)
                found = recognizer.detect(image)
                largest = max(found, key=lambda d: d.box[2] * d.box[3], default=None)
                faces.append(recognizer.crop(image, largest))
            except (FerkitError, ValueError) as error:
                failures.append((name, str(error)))
                continue
            if largest is None:
                no_face.append(name)
            elif len(found) > 1:
                several.append(name)
            labels.append(label)
            paths.append(name)
    if failures:
        log.warning("%s: %d file(s) could not be read and were skipped", root, len(failures))
    if not faces:
        raise DataError(f"{root}: no readable images in the class folders")
    return FolderData(
        root=root,
        faces=np.stack(faces),
        labels=np.asarray(labels, dtype=np.int64),
        paths=paths,
        class_names=tuple(class_names),
        folders={str(f.relative_to(root)): class_names[i] for f, i in mapping.items()},
        detector=detector_name,
        failures=failures,
        no_face=no_face,
        several=several,
        preprocessing=recognizer.preprocessing.to_dict(),
    )
