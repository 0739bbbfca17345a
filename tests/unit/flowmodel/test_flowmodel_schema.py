"""The schema's sampling rule: a scaled sum multiplies by the rate, an unknown rate (0) counts as 1."""
import numpy as np

from flowmodel.schema import FLOW_COLUMNS, rate_factor


def test_rate_factor_counts_an_unknown_rate_as_one_and_widens():
    rates = np.array([0, 1, 2, 1000, 0xFFFFFFFF], FLOW_COLUMNS["sampling_rate"][0])
    factor = rate_factor(rates)
    assert factor.dtype == np.uint64
    assert factor.tolist() == [1, 1, 2, 1000, 0xFFFFFFFF]
    # widened before the product: a uint32 product would wrap at 4 GiB
    assert int((np.array([1 << 20], np.uint64) * rate_factor(np.array([1 << 20], np.uint32)))[0]) == 1 << 40
