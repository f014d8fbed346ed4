"""Hyperparameter search with Optuna (the `tune` extra), imported only when used.

`space` holds the search space and `search_space(trial)`, `study` runs the study
(`tune(...)`), `outputs` writes what it leaves behind (best.yaml, tables, plots).
"""

from ferkit.errors import ConfigError

try:
    import optuna  # noqa: F401
except ImportError:
    raise ConfigError("ferkit tune needs Optuna: pip install 'ferkit[tune]'") from None

from ferkit.tune.outputs import TuneResult  # noqa: E402
from ferkit.tune.space import DEFAULT_SPACE, load_space, search_space, validate_space  # noqa: E402
from ferkit.tune.study import PRUNERS, SAMPLERS, tune  # noqa: E402

__all__ = [
    "DEFAULT_SPACE",
    "PRUNERS",
    "SAMPLERS",
    "TuneResult",
    "load_space",
    "search_space",
    "tune",
    "validate_space",
]
