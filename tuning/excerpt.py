"""Where candidates are compared: an excerpt of a long track that stands for it.

Every decision of a run (the baseline grid's ranking, the starting points, each validation's projection onto
the target, the population's exploits) compares candidates at equal loudness. On a long track each of those
is a whole-track render and measurement; an excerpt made of a few blocks of the track makes them cost the
same for a 3-minute song as for a 30 s one. The blocks are the loudest ones (where the limiter and the
compressor work hardest, so where candidates differ) plus blocks from the middle of the track's loudness
distribution (so a setting that harms quieter passages is seen too), joined in time order.

The excerpt's loudness target is the track's target shifted by how much louder the excerpt reads than the
whole: a setting solved onto the shifted target on the excerpt is about on target on the whole track, and
all candidates are compared at the same loudness. Only the final solve and the reported measures use the
whole track. A track no longer than ``excerpt_s`` * 1.5 is its own excerpt (nothing changes for it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import drl
from drl.checks import check_number

#: Share of the excerpt's blocks taken from the loudest; the rest come from around the median block.
LOUDEST_SHARE = 2 / 3


@dataclass(frozen=True)
class Level:
    """A loudness to reach and a true-peak ceiling, as :class:`tuning.objective.Target` has them (no checks:
    a shifted target may read louder than a delivery target may)."""

    lufs: float
    ceiling_dbtp: float


@dataclass
class Excerpt:
    """``audio`` (C, T') cut from a track at ``spans`` ((start, length) in samples, in time order) and the
    ``target`` it is solved onto. ``whole``: the excerpt is the track itself."""

    audio: torch.Tensor
    target: Level
    spans: list[tuple[int, int]]
    whole: bool

    def cut(self, track: torch.Tensor) -> torch.Tensor:
        """The same spans of ``track`` (C, T) or a render of it, joined; the tensor itself when whole."""
        return track if self.whole else join_spans(track, self.spans)

    def retarget(self, output: torch.Tensor, sample_rate: int, target) -> Excerpt:
        """This excerpt with its target shifted by the loudness difference that a whole-track render
        ``output`` (C, T) on ``target`` shows between its excerpt and itself (the processed track's, which is
        what later candidates are compared at)."""
        if self.whole:
            return self
        shift = float(drl.integrated_loudness(self.cut(output), sample_rate)) - float(
            drl.integrated_loudness(output, sample_rate)
        )
        return Excerpt(self.audio, Level(target.lufs + shift, target.ceiling_dbtp), self.spans, False)


def join_spans(track: torch.Tensor, spans: list[tuple[int, int]]) -> torch.Tensor:
    """The ``spans`` ((start, length) in samples) of ``track`` (..., T), joined in their order."""
    return torch.cat([track[..., start : start + length] for start, length in spans], dim=-1)


def whole_track(track: torch.Tensor, target) -> Excerpt:
    return Excerpt(track, Level(float(target.lufs), float(target.ceiling_dbtp)), [(0, track.shape[-1])], True)


def choose_excerpt(
    track: torch.Tensor, sample_rate: int, target, excerpt_s: float | None, block_s: float = 5.0
) -> Excerpt:
    """The excerpt of ``track`` (C, T) candidates are compared on: about ``excerpt_s`` seconds in blocks of
    ``block_s`` (see the module docstring), its target shifted by the input's loudness difference. The whole
    track when ``excerpt_s`` is None or the track is no longer than 1.5 ``excerpt_s``."""
    if excerpt_s is None:
        return whole_track(track, target)
    check_number("solve.excerpt_s", excerpt_s, 3 * block_s, unit="s")
    block = round(block_s * sample_rate)
    n_blocks = track.shape[-1] // block
    count = round(excerpt_s / block_s)
    if track.shape[-1] <= 1.5 * excerpt_s * sample_rate or n_blocks <= count:
        return whole_track(track, target)
    blocks = track[..., : n_blocks * block].reshape(track.shape[0], n_blocks, block).transpose(0, 1)
    # each block's integrated loudness; silent blocks sort last
    loudness = drl.integrated_loudness(blocks, sample_rate).nan_to_num(neginf=-200.0).double()
    order = torch.argsort(loudness, descending=True).tolist()
    loud = order[: round(count * LOUDEST_SHARE)]
    rest = [i for i in order if i not in loud]
    middle = len(rest) // 2
    around = rest[max(0, middle - (count - len(loud)) // 2) :][: count - len(loud)]
    spans = [(i * block, block) for i in sorted(loud + around)]
    audio = join_spans(track, spans)
    shift = float(drl.integrated_loudness(audio, sample_rate)) - float(drl.integrated_loudness(track, sample_rate))
    return Excerpt(audio, Level(float(target.lufs) + shift, float(target.ceiling_dbtp)), spans, False)
