"""Population search: its starting points, the exploit step, its options, and a whole job."""

import json

import pytest
import torch

from processors import Chain, Gain, Limiter
from tuning.population import Population, exploit, starting_values

START = {
    "gain.gain_db": 6.0,
    "compressor.ratio": 1.25,
    "compressor.attack_ms": 10.0,
    "compressor.release_ms": 200.0,
    "limiter.release_ms": 10.0,
    "limiter.lookahead_ms": 5.0,
}
TIMINGS = [
    {"compressor.attack_ms": 3.0, "compressor.release_ms": 60.0},
    {"compressor.attack_ms": 30.0, "compressor.release_ms": 1000.0},
]


def test_starting_values_begin_with_the_single_start_and_spread_the_timings():
    values = starting_values(START, TIMINGS, Population(size=10))
    assert len(values) == 10 and values[0] == START
    releases = [v["limiter.release_ms"] for v in values[1:]]
    assert min(releases) == pytest.approx(1.0) and max(releases) == pytest.approx(1000.0)
    assert len(set(releases)) == 9  # log-spaced, all different
    assert {v["limiter.lookahead_ms"] for v in values[1:]} == {5.0, 10.0, 20.0}
    assert {v["compressor.release_ms"] for v in values[1:]} == {200.0, 60.0, 1000.0}
    assert all(v["gain.gain_db"] == 6.0 for v in values)  # the level is solved afterwards
    # a slow stage is spread too when the processor has one, on its own permutation of the grid
    slow = starting_values({**START, "limiter.slow_release_ms": 1000.0}, [], Population(size=6))
    pairs = [(v["limiter.release_ms"], v["limiter.slow_release_ms"]) for v in slow[1:]]
    assert len({s for _, s in pairs}) == 5 and sorted(pairs) != sorted(pairs, key=lambda p: p[1])


def test_exploit_replaces_the_worst_by_perturbed_copies_of_the_best():
    limiter = Limiter(44100, release_ms=[1.0, 10.0, 100.0, 1000.0], lookahead_ms=[5.0, 5.0, 10.0, 20.0])
    chain = Chain({"gain": Gain(44100, [0.0, 1.0, 2.0, 3.0]), "limiter": limiter})
    optimizer = torch.optim.Adam([p for p in chain.parameters() if p.requires_grad], lr=0.1)
    chain(torch.randn(4, 2, 441)).square().sum().backward()
    optimizer.step()
    before = {name: chain.param(name).detach().clone() for name in ("limiter.release_ms", "limiter.lookahead_ms")}
    scores = [-20.0, None, -30.0, -10.0]  # item 2 best, then 0; item 1 cannot reach the target
    pairs = exploit(
        chain, optimizer, scores, Population(size=4, fraction=0.5, perturb=0.0), torch.Generator().manual_seed(0)
    )
    assert sorted(pairs) == [(1, 2), (3, 0)]  # the unreachable and the worst go, the best two are copied
    after = chain.values()
    assert after["limiter.release_ms"][1] == pytest.approx(float(before["limiter.release_ms"][2]))
    assert after["limiter.release_ms"][3] == pytest.approx(float(before["limiter.release_ms"][0]))
    assert after["limiter.lookahead_ms"][1] == pytest.approx(float(before["limiter.lookahead_ms"][2]))
    assert after["limiter.release_ms"][0] == pytest.approx(float(before["limiter.release_ms"][0]))
    raw = chain["gain"].raw["gain_db"]
    assert float(optimizer.state[raw]["exp_avg"][1]) == 0.0 and float(optimizer.state[raw]["exp_avg"][0]) != 0.0
    # with noise the copies move away from their sources, in the trained parameters only
    pairs = exploit(
        chain, optimizer, [-10.0, -20.0, -30.0, -5.0], Population(size=4, perturb=0.5), torch.Generator().manual_seed(1)
    )
    assert sorted(pairs) == [(0, 1), (3, 2)]
    again = chain.values()
    assert again["limiter.release_ms"][3] != pytest.approx(again["limiter.release_ms"][2])
    assert again["limiter.lookahead_ms"][3] == again["limiter.lookahead_ms"][2]  # frozen: copied exactly


@pytest.mark.parametrize(
    "options, words",
    [
        ({"size": 1}, "search.size"),
        ({"size": 4, "fraction": 0.9}, "search.fraction"),
        ({"size": 4, "every": 0}, "search.every"),
        ({"size": 4, "perturb": -1.0}, "search.perturb"),
        ({"size": 4, "lookahead_ms": (40.0,)}, "search.lookahead_ms"),
    ],
)
def test_bad_options(options, words):
    with pytest.raises(ValueError, match=words):
        Population(**options)


@pytest.mark.slow
def test_a_population_job_is_never_worse_than_its_first_candidate(compose_config, tmp_path):
    import train

    cfg = compose_config(
        [
            "experiment=quick",
            "data.track.duration_s=3.0",
            "data.crop_s=1.0",
            "data.crops_per_batch=1",
            "data.batches_per_epoch=2",
            "trainer.max_steps=4",
            "logger=csv",
            "~callbacks.media",
            "search=population",
            "search.size=4",
            "solve.gain_alone=false",
        ]
    )
    metrics = train.train(cfg)
    population = metrics["population"]
    assert metrics["on_target"] and population["size"] >= 2
    best = population["best_objective_drl_db"]
    assert len(best) == population["size"] and 0 <= population["winner"] < population["size"]
    # candidate 0 is the single-start run's start, and it is always among the finalists
    assert metrics["output"]["objective_drl_db"] <= best[0] + 0.05
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["population"]["winner"] == population["winner"]


def test_population_refuses_per_track(compose_config, tmp_path):
    import soundfile as sf

    import train
    from tuning.audio import demo_track

    sf.write(str(tmp_path / "a.wav"), demo_track(44100, 3.0).audio.T.numpy(), 44100)
    cfg = compose_config(["data=folder", f"data.dir={tmp_path}", "search=population", "search.size=4"])
    with pytest.raises(ValueError, match="per_track"):
        train.train(cfg)
