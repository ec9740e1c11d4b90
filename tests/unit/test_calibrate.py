"""Calibrated estimates: the per-model input correction (minimum samples, cap, rounding up),
the learned output per source and model, and the error ratio."""

from __future__ import annotations

from fractions import Fraction

from planner.core.calibrate import (
    MAX_FACTOR,
    MIN_SAMPLES,
    NO_CALIBRATION,
    calibrate,
    error_ratio,
    learned_output,
)


def test_no_correction_until_enough_samples() -> None:
    few = calibrate([(1213, 2041)] * (MIN_SAMPLES - 1))
    assert not few.active and few.factor == 1 and few.correct(1213) == 1213
    assert NO_CALIBRATION.correct(7) == 7


def test_the_issue_13_model_is_corrected_by_billed_over_estimated() -> None:
    # 206 requests estimated at 1,213 input tokens, billed 2,041: factor 2041/1213
    calibration = calibrate([(1213, 2041)] * 206)
    assert calibration.active and calibration.samples == 206
    assert calibration.factor == Fraction(2041, 1213)
    assert calibration.correct(1213) == 2041  # the next request of the same shape
    assert calibration.correct(1000) == 1683  # ceil(1000 * 2041 / 1213) = ceil(1682.6)


def test_the_correction_is_capped_both_ways() -> None:
    assert calibrate([(100, 1000)] * 20).factor == MAX_FACTOR  # 10x capped at 4x
    assert calibrate([(1000, 10)] * 20).factor == Fraction(1, MAX_FACTOR)
    assert not calibrate([(0, 5)] * 20).active  # nothing estimated: nothing to correct


def test_learned_output_is_the_p95_once_there_are_enough() -> None:
    assert learned_output([30] * (MIN_SAMPLES - 1)) is None
    outputs = list(range(1, 101))  # 1..100 billed output tokens
    assert learned_output(outputs) == 95


def test_error_ratio() -> None:
    assert error_ratio(1213, 2041) == Fraction(1213, 2041) - 1  # about -40.6%
    assert error_ratio(110, 100) == Fraction(1, 10)
    assert error_ratio(5, 0) is None
