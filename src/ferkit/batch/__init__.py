"""Recognition at archive scale: many files, a local process pool or a Ray cluster,
resumable, Parquet out (`ferkit batch`). Needs pyarrow (extra `batch`), and Ray for
`engine="ray"` (extra `ray`).

    plan.py      SOURCES → files (content hash) → tasks (whole files or time ranges)
    settings.py  Recognizer options as JSON: built in each worker, hashed for resuming
    task.py      run_task: one file or range → one Parquet part (streamed), never raises
    engines.py   the same run_task in a local process pool or on Ray
    output.py    the output folder: rows, _done records, joined ranges, summary tables
    driver.py    run_batch: the driver, progress bar, manifest
    progress.py  the one bar: frames counted in the workers as they go, files done/failed
"""

from ferkit.batch.driver import BatchReport, run_batch
from ferkit.batch.settings import recognizer_settings

__all__ = ["BatchReport", "recognizer_settings", "run_batch"]
