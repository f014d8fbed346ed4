"""The real FER-2013 archive (skips where absent): canonical counts and a store round trip."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from ferkit.data import open_store, prepare
from ferkit.data.clean import decode
from ferkit.data.readers import SourceReader

pytestmark = pytest.mark.integration


def test_canonical_counts_before_cleaning(fer2013_archive):
    reader = SourceReader(fer2013_archive)
    counts = Counter(item.split for item in reader.items())
    assert counts == {0: 28_709, 1: 3_589, 2: 3_589}
    assert reader.sha256 == "896e1587da771d8cf1a618ca1cbf5b1485a2979c73125e57317d8abe7430f3d9"


def test_store_round_trip(fer2013_archive, tmp_path):
    result = prepare(fer2013_archive, tmp_path / "fer2013.h5")
    summary = result.report["summary"]
    assert summary["read"] == 35_887
    # evaluation splits stay canonical; cleaning only removes train rows by default
    assert result.counts["val"] == 3_589 and result.counts["test"] == 3_589
    assert result.counts["train"] == 28_709 - sum(summary["removed"].values())
    assert summary["removed"]["blank"] > 0 and summary["removed"]["duplicate"] > 0
    with open_store(result.store) as store:
        images, labels = store.split_arrays("test")
        ids = store.source_ids("test")
        assert images.shape == (3_589, 48, 48) and images.dtype == np.uint8
        assert all(i.startswith("test/") and "PrivateTest_" in i for i in ids)
        # spot-check pixels and labels against the archive itself
        wanted = {ids[k]: k for k in (0, 1000, 3588)}
        for item in SourceReader(fer2013_archive).items():
            if item.source_id in wanted:
                k = wanted.pop(item.source_id)
                np.testing.assert_array_equal(decode(item), images[k])
                assert labels[k] == item.label
        assert not wanted
