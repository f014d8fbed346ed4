"""The emotion vocabulary: FER-2013 index order, names, and synonyms.

FER-2013 stores labels as indices 0..6 in the order below; the Kaggle image release uses
folder names in alphabetical order instead. Everything in ferkit speaks names at its edges
and these indices inside, so this module is the one place where the two meet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ferkit.errors import DataError

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(EMOTIONS)
# FER+ (Barsoum et al. 2016) adds contempt. It goes last, so a 7-class model's indices are
# the first seven of an 8-class model's and the two compare on the shared classes directly.
FERPLUS_EMOTIONS: tuple[str, ...] = (*EMOTIONS, "contempt")
CLASS_SETS: dict[str, tuple[str, ...]] = {"fer7": EMOTIONS, "ferplus8": FERPLUS_EMOTIONS}

# Common spellings in other datasets and folder layouts (AffectNet, CK+, RAF-DB, JAFFE, ...).
SYNONYMS: dict[str, str] = {
    "anger": "angry",
    "angry": "angry",
    "mad": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "contempt_disgust": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "sad": "sad",
    "sadness": "sad",
    "surprise": "surprise",
    "surprised": "surprise",
    "neutral": "neutral",
    "calm": "neutral",
}


def index_of(name: str) -> int:
    """Index of an emotion given its name or a common synonym (case-insensitive)."""
    canonical = canonical_name(name)
    if canonical is None:
        raise DataError(f"unknown emotion {name!r}; expected one of {', '.join(EMOTIONS)}")
    return EMOTIONS.index(canonical)


def canonical_name(name: str, class_map: Mapping[str, str] | None = None) -> str | None:
    """The FER-2013 emotion a (folder or class) name stands for, or None if unknown.

    `class_map` renames first (user-given `old=new` pairs), then synonyms apply.
    """
    key = name.strip().lower()
    if class_map:
        key = {k.lower(): v.lower() for k, v in class_map.items()}.get(key, key)
    return SYNONYMS.get(key)


def parse_class_map(pairs: Iterable[str]) -> dict[str, str]:
    """Parse `old=new` strings (CLI `--class-map`) into a dict, validating the targets."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise DataError(f"--class-map expects old=new, got {pair!r}")
        if canonical_name(new) is None:
            raise DataError(
                f"--class-map {pair!r}: {new!r} is not an emotion; expected one of "
                f"{', '.join(EMOTIONS)}"
            )
        mapping[old.strip()] = new.strip()
    return mapping
