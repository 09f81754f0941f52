"""Population search: P candidate settings of one track tuned side by side as one batch.

The objective is not convex in the timing parameters (release, the slow stage, lookahead, the compressor's
attack and release): gradient descent from one start ends at the minimum nearest it. A population starts P
candidates spread over those parameters, trains them together (one processor call per step for all of them),
projects each onto the target at every validation and, every ``every`` validations, replaces the worst
``fraction`` by perturbed copies of the best (exploit and explore, as in population-based training). The best
candidate seen, by the objective on target on the whole track, is the result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from drl.checks import check_number
from processors import Limiter

#: Limiter timings the starting points spread over (log-spaced between the bounds), when the processor has them:
#: the release over its whole range, the slow stage over the part that sits above the fast releases.
SPREAD_LOG = {
    "limiter.release_ms": (Limiter.spec_of("release_ms").min, Limiter.spec_of("release_ms").max),
    "limiter.slow_release_ms": (100.0, 3000.0),
}


@dataclass(frozen=True)
class Population:
    """``size`` candidates; every ``every`` validations the worst ``fraction`` of them become copies of the best
    with Gaussian noise of standard deviation ``perturb`` added to each trained parameter in its unconstrained
    (optimiser) coordinates; ``lookahead_ms`` are the lookaheads the starting points cycle through."""

    size: int = 16
    every: int = 1
    fraction: float = 0.5
    perturb: float = 0.3
    lookahead_ms: tuple[float, ...] = (5.0, 10.0, 20.0)

    def __post_init__(self) -> None:
        check_number("search.size", self.size, 2, 256, integer=True)
        check_number("search.every", self.every, 1, integer=True)
        check_number("search.fraction", self.fraction, 0.0, 0.5, low_open=True)
        check_number("search.perturb", self.perturb, 0.0, 3.0)
        if not self.lookahead_ms:
            raise ValueError("search.lookahead_ms must list at least one lookahead in ms")
        for value in self.lookahead_ms:
            spec = Limiter.spec_of("lookahead_ms")
            check_number("search.lookahead_ms", value, spec.min, spec.max, unit="ms")


def starting_values(
    start: Mapping[str, float], compressor_starts: Sequence[Mapping[str, float]], population: Population
) -> list[dict[str, float]]:
    """P starting settings: the first is ``start`` itself (the single-start run's, so the population never
    starts worse); the others take ``start`` with the limiter's release (and slow release, when the processor
    has one) log-spaced over :data:`SPREAD_LOG`, the lookahead cycling through ``population.lookahead_ms`` and
    the compressor timing cycling through ``compressor_starts`` (the processor config's ``starts``)."""
    count = population.size - 1
    spread = {name: bounds for name, bounds in SPREAD_LOG.items() if start.get(name) is not None}
    lookaheads = [v for v in population.lookahead_ms] if "limiter.lookahead_ms" in start else [None]
    timings = [{}, *compressor_starts]
    out = [dict(start)]
    for i in range(count):
        values = dict(start)
        for name, (low, high) in spread.items():
            # a different permutation of the log grid per parameter, so release and slow release do not move
            # together
            position = (i * (3 if name.endswith("slow_release_ms") else 1)) % count
            values[name] = low * (high / low) ** (position / max(count - 1, 1))
        if lookaheads[0] is not None:
            values["limiter.lookahead_ms"] = float(lookaheads[i % len(lookaheads)])
        values.update(timings[(i // len(lookaheads)) % len(timings)])
        out.append(values)
    return out


def exploit(
    processor: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scores: Sequence[float | None],
    population: Population,
    generator: torch.Generator,
) -> list[tuple[int, int]]:
    """Replace the worst ``fraction`` of the candidates (those that could not reach the target first) by
    copies of the best, in place: every parameter copied, the trained ones with Gaussian noise (``perturb``,
    unconstrained units); the optimiser's moments of a replaced candidate are reset. Returns (replaced, source)
    pairs."""
    count = len(scores)
    ranked = sorted(range(count), key=lambda i: (scores[i] is None, scores[i] if scores[i] is not None else 0.0))
    replace = math.floor(count * population.fraction)
    sources = [i for i in ranked if scores[i] is not None][:replace]
    if not sources:
        return []
    pairs = [
        (loser, sources[n % len(sources)])
        for n, loser in enumerate(reversed(ranked[-replace:]))
        if loser not in sources
    ]
    states = optimizer.state if optimizer is not None else {}
    with torch.no_grad():
        for raw in processor.parameters():
            if raw.ndim != 1 or raw.shape[0] != count:
                continue
            for loser, source in pairs:
                noise = torch.randn((), generator=generator, dtype=torch.float64) * population.perturb
                raw[loser] = raw[source] + (noise.to(raw) if raw.requires_grad else 0.0)
            for moment in ("exp_avg", "exp_avg_sq"):
                if raw in states and moment in states[raw]:
                    for loser, _ in pairs:
                        states[raw][moment][loser] = 0.0
    return pairs
