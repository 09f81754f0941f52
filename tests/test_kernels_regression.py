"""Today's kernels against fingerprints of the pre-split kernels' outputs and gradients (tests/data)."""

import json
from pathlib import Path

import numpy as np
import pytest
from kernel_fingerprints import fingerprints

from processors import kernels

SAVED = json.loads((Path(__file__).parent / "data" / "kernel_fingerprints.json").read_text())


@pytest.fixture(scope="module")
def today():
    return fingerprints(kernels)


def test_every_saved_case_is_computed(today):
    assert sorted(today) == sorted(SAVED)


@pytest.mark.parametrize("case", sorted(SAVED))
def test_outputs_and_gradients_equal_the_pre_split_kernels(today, case):
    # float64: numba's fresh and cached builds may differ in the last bits (about 1e-15 relative)
    rtol = 1e-6 if "float32" in case else 1e-12
    saved, now = np.array(SAVED[case]), np.array(today[case])
    scale = np.abs(saved).max(axis=1, keepdims=True)
    np.testing.assert_allclose(now, saved, rtol=rtol, atol=rtol * scale.max())
