"""Any labelled image folder as evaluation data: `root/<class>/<images>` → faces and labels.

Class folders may use common synonyms (anger, sadness, happiness, surprised, ...; see
`ferkit.labels.SYNONYMS`) or be renamed with a class map (`--class-map contempt=disgust`).
Images may have any size and colour; each is read with the recognition pipeline's reader,
its largest detected face is cut out with the model's own `crop_face` settings, and images
where the detector finds no face are classified whole and listed, so nothing is silently
dropped. Unreadable files are skipped and listed with their reason; the rest is evaluated.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ferkit.errors import DataError, FerkitError
from ferkit.labels import canonical_name
from ferkit.preprocess import Preprocessing, crop_face

log = logging.getLogger(__name__)


@dataclass
class FolderData:
    """Faces of a labelled folder, ready for a classifier.

    faces (N, size, size) uint8, labels (N,) indices into `class_names`, `paths` per face;
    `failures` (path, reason) of files that could not be read; `no_face` paths classified
    whole because the detector found no face; `folders` maps each class folder to its class.
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

    def describe(self) -> dict:
        """JSON-safe summary for report.json."""
        return {
            "kind": "folder",
            "path": str(self.root),
            "n": int(len(self.labels)),
            "class_folders": self.folders,
            "detector": self.detector,
            "failures": {"count": len(self.failures), "files": [list(f) for f in self.failures]},
            "no_face": {"count": len(self.no_face), "files": self.no_face},
        }


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


def _largest(boxes):
    return max(boxes, key=lambda b: b[2] * b[3]) if boxes else None


def load_labelled_folder(
    root: str | Path,
    class_names: Sequence[str],
    prep: Preprocessing,
    *,
    detector: str | object | None = "haar",
    class_map: Mapping[str, str] | None = None,
) -> FolderData:
    """Read, detect and crop every image under the class folders of `root`.

    `detector` is a name for `ferkit.infer.faces.create_detector`, a detector object, or
    None to use each whole image as the face (images that are already face crops).
    """
    from ferkit.infer.faces import create_detector
    from ferkit.infer.sources import read_image

    root = Path(root)
    mapping = map_class_folders(root, class_names, class_map)
    if isinstance(detector, str):
        detector = create_detector(detector)
    detector_name = getattr(detector, "name", type(detector).__name__) if detector else "none"
    faces, labels, paths = [], [], []
    failures: list[tuple[str, str]] = []
    no_face: list[str] = []
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
                box = _largest([d.box for d in detector.detect(image)]) if detector else None
                faces.append(crop_face(image, box, prep))
            except (FerkitError, ValueError) as error:
                failures.append((name, str(error)))
                continue
            if detector is not None and box is None:
                no_face.append(name)
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
    )
