"""DRL as a loss towards an exact match: the docs' example, fitting a compressor's threshold from -10 dB back
to the -24 dB that made the target, lands within 0.5 dB with the linear ratio (and with the dB form floored at
-40 dB), where plain dB lets Adam run past the match and back."""

import pytest
import torch
from drl_test_signals import music

from drl import DRL
from processors import Compressor


def fit_threshold(key: str, floor_db: float = -120.0, steps: int = 100) -> list[float]:
    """The docs' example on half a second of the synthetic mix: the threshold after each step."""
    x = torch.tensor(music(0.5), dtype=torch.float32)
    target = Compressor(44100, threshold_db=-24)(x).detach()
    compressor = Compressor(44100, threshold_db=-10)
    compressor.freeze()
    compressor.unfreeze("threshold_db")
    metric = DRL(44100, frequency_bands=None, floor_db=floor_db)
    optimizer = torch.optim.Adam([p for p in compressor.parameters() if p.requires_grad], lr=0.1)
    thresholds = []
    for _ in range(steps):
        optimizer.zero_grad()
        metric(target, compressor(x))[key].backward()
        optimizer.step()
        thresholds.append(compressor.values()["threshold_db"])
    return thresholds


@pytest.mark.parametrize("key, floor_db", [("total_drl_ratio", -120.0), ("total_drl_db", -40.0)])
def test_threshold_fit_lands_within_half_a_db(key, floor_db):
    thresholds = fit_threshold(key, floor_db)
    assert thresholds[-1] == pytest.approx(-24.0, abs=0.5)
    assert all(abs(value + 24.0) <= 0.5 for value in thresholds[-20:])  # settled, not passing through
