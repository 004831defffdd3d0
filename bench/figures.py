"""What a suite measures: :class:`Figure`, one compared quantity with both sides' per-repeat values, and how its
ratio rlkit/reference is read (paired per repeat, or unpaired medians; a goal on the ratio, a target on every value)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Figure:
    """One compared quantity: per-repeat values of both sides, and how to read their ratio."""

    name: str
    unit: str
    rlkit: list[float | None] = field(default_factory=list)
    reference: list[float | None] = field(default_factory=list)
    higher_is_better: bool = True
    goal: str = ""
    """E.g. ">= 2.0" (ratio rlkit/reference); empty when the figure only informs."""
    paired: bool = True
    """Paired: repeat i of both sides ran back to back (throughput), so the ratio is taken per repeat.
    Unpaired: the sides' seeds do not correspond (learning outcomes: rlkit's seed 0 has nothing to do
    with SB3's seed 0), so the ratio is median(rlkit) / median(reference) and the spread is the
    extreme ratios min/max and max/min."""
    target: str = ""
    """An absolute requirement on every repeat's value, e.g. ">= 475" (learning stability); a repeat
    with no value (None) misses it. Reported for both sides."""

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> "Figure":
        """The figure back from :meth:`summary` (a saved JSON, or a worker process's result)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in summary.items() if k in names})

    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.rlkit, self.reference) if a is not None and b not in (None, 0)]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "unit": self.unit, "rlkit": self.rlkit, "reference": self.reference,
                               "higher_is_better": self.higher_is_better, "goal": self.goal, "paired": self.paired,
                               "target": self.target}
        if self.target:
            op, value = self.target.split()
            meets = (lambda v: v >= float(value)) if op == ">=" else (lambda v: v <= float(value))
            for side in ("rlkit", "reference"):
                values = getattr(self, side)
                out[f"target_met_{side}"] = bool(values) and all(v is not None and meets(v) for v in values)
        ours = [v for v in self.rlkit if v is not None]
        theirs = [v for v in self.reference if v not in (None, 0)]
        if self.paired and self.ratios():
            ratios = self.ratios()
            out.update(ratio_median=float(np.median(ratios)), ratio_min=float(np.min(ratios)),
                       ratio_max=float(np.max(ratios)))
        elif not self.paired and ours and theirs:
            # the extreme ratios, ordered: with negative values (returns) min/max is not the smallest
            extremes = [a / b for a in (min(ours), max(ours)) for b in (min(theirs), max(theirs))]
            out.update(ratio_median=float(np.median(ours) / np.median(theirs)),
                       ratio_min=float(min(extremes)), ratio_max=float(max(extremes)))
        if "ratio_median" in out:
            if self.goal:
                op, value = self.goal.split()
                median = out["ratio_median"]
                out["goal_met"] = bool(median >= float(value) if op == ">=" else median <= float(value))
        return out


def median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None
