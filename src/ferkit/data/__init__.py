"""FER-2013 data: read any release, clean it, store it as HDF5, read it back fast.

prepare(source, out)   csv | image folders | .tar.gz/.zip → cleaned HDF5 store
open_store(path)       arrays per split, class counts, normalisation statistics
"""

from ferkit.data.clean import CleanOptions
from ferkit.data.prepare import PrepareResult, prepare
from ferkit.data.readers import locate_fer2013
from ferkit.data.store import SPLITS, Store, open_store, split_index, write_store
from ferkit.data.summary import inspect_table

__all__ = [
    "SPLITS",
    "CleanOptions",
    "PrepareResult",
    "Store",
    "inspect_table",
    "locate_fer2013",
    "open_store",
    "prepare",
    "split_index",
    "write_store",
]
