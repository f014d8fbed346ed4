"""The original FER-2013 studies as presets, run and measured side by side.

    from ferkit.studies import load_presets, run_studies
    result = run_studies(["keras_flips"], data="data/fer2013.h5", budget=0.2)
    result.table   # runs/studies/studies.md

Modules: presets (load and validate `configs/studies/*.yaml`), reproduce (tune, train,
evaluate, reuse finished studies), video (study 2: recognition on a clip), table
(studies.md and studies.png).
"""

from ferkit.studies.presets import Study, default_presets_dir, load_preset, load_presets
from ferkit.studies.reproduce import StudiesResult, run_studies, scaled_epochs

__all__ = [
    "StudiesResult",
    "Study",
    "default_presets_dir",
    "load_preset",
    "load_presets",
    "run_studies",
    "scaled_epochs",
]
