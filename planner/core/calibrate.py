"""Calibrated estimates: what our token estimates miss, learned from billed usage.

Our estimators are rules (tiktoken and the cookbook's chat rule for OpenAI, ceil(bytes / 4) for
Gemini); the provider's count differs, sometimes by a lot (issue 13: Gemini requests estimated
at 1,213 input tokens were billed 2,041). Per model, once ``MIN_SAMPLES`` requests have been
billed, the raw input estimate is multiplied by ``billed / estimated`` summed over the latest
requests, capped to ``[1 / MAX_FACTOR, MAX_FACTOR]`` so that one odd month cannot make
estimates absurd. Integer arithmetic, rounded up: estimates feed budget reservations, which
must not come out low.

Output: a request that names its maximum output keeps it (it is an upper bound, and budgets need
one). For requests that name none, the policy's ``default_output_tokens`` is replaced, once
``MIN_SAMPLES`` such requests of the same source and model were billed, by the p95 of what they
were billed (learned per source × model: one source's prompts ask for essays, another's for
labels).

Pure: samples are parameters; the store gathers them (``store/calibration.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

MIN_SAMPLES = 20  # billed requests before a model's correction (or a learned output) applies
MAX_FACTOR = 4  # the correction stays within [1/4, 4]


@dataclass(frozen=True, slots=True)
class InputCalibration:
    """The sums behind one model's correction: raw estimates and billed input tokens."""

    estimated: int
    billed: int
    samples: int

    @property
    def active(self) -> bool:
        return self.samples >= MIN_SAMPLES and self.estimated > 0

    @property
    def factor(self) -> Fraction:
        """``billed / estimated``, capped; 1 while not active."""
        if not self.active:
            return Fraction(1)
        found = Fraction(self.billed, self.estimated)
        return min(Fraction(MAX_FACTOR), max(Fraction(1, MAX_FACTOR), found))

    def correct(self, raw: int) -> int:
        """The corrected estimate of ``raw`` input tokens (rounded up)."""
        return math.ceil(raw * self.factor)


NO_CALIBRATION = InputCalibration(0, 0, 0)


def calibrate(samples: Iterable[tuple[int, int]]) -> InputCalibration:
    """Sum ``(raw estimate, billed)`` input-token pairs into a model's calibration."""
    estimated = billed = count = 0
    for raw, actual in samples:
        estimated += raw
        billed += actual
        count += 1
    return InputCalibration(estimated, billed, count)


def learned_output(billed_outputs: Sequence[int]) -> int | None:
    """The p95 (nearest rank) of billed output tokens, once there are ``MIN_SAMPLES``."""
    if len(billed_outputs) < MIN_SAMPLES:
        return None
    ordered = sorted(billed_outputs)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def error_ratio(estimated: int, billed: int) -> Fraction | None:
    """``estimated / billed - 1``: +0.1 means 10% too high; ``None`` when nothing was billed."""
    return None if billed == 0 else Fraction(estimated, billed) - 1
