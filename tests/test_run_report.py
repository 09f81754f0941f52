"""report.html: its summary against metrics.json, its players' audio decoded and measured (loudness-matched,
the residual at its stated level), opened in headless Chromium (no JavaScript error, the audio plays, A/B
switches at one play position), and written by a tuning job beside its outputs."""

import base64
import io
import json
import os
from html.parser import HTMLParser

import pytest
import soundfile as sf
import torch
from headless_chromium import Browser, find_chromium

import drl
from processors import Chain, Compressor, Gain, Limiter
from tuning.audio import demo_track
from tuning.run_report import REPORT_NAME, write_report

RATE = 44100
HISTORY = [(0, -24.0), (20, -26.5), (40, None), (60, -27.25)]


class Page(HTMLParser):
    """The report's audio elements (id -> attributes) and summary cells ((side, measure) -> text)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.audio, self.cells, self.images, self._cell = {}, {}, [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "audio":
            self.audio[attrs["id"]] = attrs
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "td" and "data-measure" in attrs:
            self._cell = (attrs["data-side"], attrs["data-measure"])

    def handle_data(self, data):
        if self._cell is not None:
            self.cells[self._cell] = data.strip()
            self._cell = None


def decode(uri: str) -> tuple[torch.Tensor, int]:
    """A ``data:audio/wav;base64,`` URI as (C, T) float64 audio and its rate."""
    head, _, payload = uri.partition(",")
    assert head == "data:audio/wav;base64"
    data, rate = sf.read(io.BytesIO(base64.b64decode(payload)), always_2d=True)
    return torch.from_numpy(data.T.copy()), rate


def lufs(audio: torch.Tensor, rate: int) -> float:
    return float(drl.integrated_loudness(audio, rate))


def check_players(sources: dict[str, str], levels: dict[str, str], seconds: float, channels: int = 2) -> None:
    """The A/B clips play at one loudness, the residual at its stated level (0.1 LU), all at RATE."""
    clips = {key: decode(uri) for key, uri in sources.items()}
    for audio, rate in clips.values():
        assert rate == RATE and audio.shape == (channels, round(seconds * RATE))
    a, b, residual = (lufs(*clips[key]) for key in ("clip-a", "clip-b", "clip-residual"))
    assert a == pytest.approx(b, abs=0.1)
    assert a == pytest.approx(float(levels["clip-a"]), abs=0.1) and b == pytest.approx(float(levels["clip-b"]), abs=0.1)
    assert residual == pytest.approx(float(levels["clip-residual"]), abs=0.1)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A report of a 9 s track through a loud chain, with hand-made metrics: (path, metrics, track, output)."""
    track = demo_track(RATE, 9.0).audio.double()
    chain = Chain(
        {
            "gain": Gain(RATE, gain_db=8.0),
            "compressor": Compressor(RATE, threshold_db=-20.0, ratio=2.0),
            "limiter": Limiter(RATE, ceiling_db=-1.0, release_ms=5.0),
        }
    ).double()
    with torch.no_grad():
        output = chain(track)
    side = {"true_peak_dbtp": -2.96, "lra": 4.5, "drl_db": -120.0, "nmr_db": -120.0}
    metrics = {
        "input": {"integrated_lufs": -22.04, **side},
        "output": {"integrated_lufs": -14.0, "true_peak_dbtp": -1.01, "lra": 2.25, "drl_db": -15.5, "nmr_db": -31.0},
        "baseline": {"lufs": -14.0, "true_peak_dbtp": -1.0, "drl_db": -14.75, "nmr_db": -29.5, "release_ms": 10.0},
        "baseline_objective_drl_db": -29.5,
        "target": {"name": "streaming", "lufs": -14.0, "ceiling_dbtp": -1.0},
        "on_target": True,
        "selected": "tuned",
        "best_step": 60,
    }
    metrics["output"]["objective_drl_db"] = metrics["output"]["nmr_db"]
    folder = tmp_path_factory.mktemp("report")
    path = write_report(folder, "demo <mix>", track, output, RATE, metrics, chain, HISTORY, excerpt_s=6.0)
    return path, metrics, track, output


def test_report_holds_the_summary_the_matched_clips_and_the_figures(report):
    path, metrics, _, _ = report
    assert path.name == REPORT_NAME
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    assert "drl-tune: demo &lt;mix&gt;" in text  # names are escaped
    for side in ("input", "output"):
        for measure in ("integrated_lufs", "true_peak_dbtp", "lra", "drl_db", "nmr_db"):
            assert page.cells[(side, measure)] == f"{metrics[side][measure]:.2f}"
    assert page.cells[("baseline", "integrated_lufs")] == "-14.00" and page.cells[("baseline", "nmr_db")] == "-29.50"
    assert page.cells[("baseline", "lra")] == "\u2013"  # the baseline has no LRA: a dash, not a number
    assert set(page.audio) == {"clip-a", "clip-b", "clip-residual"}
    assert page.audio["clip-a"]["data-role"] == "input" and page.audio["clip-b"]["data-role"] == "output"
    assert float(page.audio["clip-residual"]["data-lufs"]) == -23.0
    check_players(
        {key: attrs["src"] for key, attrs in page.audio.items()},
        {key: attrs["data-lufs"] for key, attrs in page.audio.items()},
        6.0,
    )
    assert len(page.images) == 4 and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert "raised" in text and "-23.0 LUFS" in text and "the loudest 6.0 s" in text
    clips = 3 * 6 * RATE * 2 * 2  # bytes of three 6 s 16-bit stereo clips
    assert os.path.getsize(path) < clips * 4 / 3 + 500_000  # base64, and the four figures in under 0.5 MB


def test_report_is_never_written_over(report):
    path, metrics, track, output = report
    before = path.read_bytes()
    with pytest.raises(ValueError, match="refusing to overwrite"):
        write_report(path.parent, "again", track, output, RATE, metrics, Chain([Gain(RATE)]), [])
    assert path.read_bytes() == before


# Waits for every player to know its duration, then switches A -> B while paused and while playing.
AB_CHECK = """
(async () => {
  const wait = (ms) => new Promise((done) => setTimeout(done, ms));
  const players = [...document.querySelectorAll("audio")];
  await Promise.all(players.map((p) => p.readyState >= 1 ? null
    : new Promise((done, fail) => { p.onloadedmetadata = done; p.onerror = () => fail(new Error(p.id)); })));
  const a = document.getElementById("clip-a"), b = document.getElementById("clip-b");
  const out = { ready: document.getElementById("ab").dataset.ready,
                players: players.map((p) => [p.id, p.duration, p.error ? p.error.code : 0, p.currentSrc]) };
  a.currentTime = 2.5;
  document.getElementById("ab-b").click();
  out.paused = [document.getElementById("ab").dataset.active, b.currentTime, a.paused, b.paused];
  document.getElementById("ab-play").click();
  await wait(400);
  const before = b.currentTime;
  document.getElementById("ab-a").click();
  out.playing = [document.getElementById("ab").dataset.active, before, a.currentTime, a.paused, b.paused];
  await wait(300);
  out.later = [a.currentTime, a.paused];
  return out;
})()
"""


@pytest.fixture(scope="module")
def chromium():
    path = find_chromium()
    if path is None:
        message = "chromium is not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("DRL_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_report_in_a_real_browser(report, chromium):
    path, _, _, _ = report
    with Browser(chromium) as browser:
        browser.open(path)
        result = browser.evaluate(AB_CHECK)
        errors = list(browser.errors)
    assert errors == []
    assert result["ready"] == "true"  # the page's script ran to its end
    sources = {}
    for element, duration, error, source in result["players"]:
        assert error == 0 and duration == pytest.approx(6.0, abs=1e-3)  # Chromium decoded every clip
        sources[element] = source
    page = Page(path.read_text(encoding="utf-8"))
    check_players(sources, {key: attrs["data-lufs"] for key, attrs in page.audio.items()}, 6.0)
    # switching while paused moves the position to B
    active, position, a_paused, b_paused = result["paused"]
    assert active == "b" and position == pytest.approx(2.5, abs=1e-3) and a_paused and b_paused
    # switching while playing: B stops, A goes on from where B was
    active, before, position, a_paused, b_paused = result["playing"]
    assert active == "a" and before > 2.5 and position == pytest.approx(before, abs=0.05)
    assert b_paused and not a_paused
    later, a_paused = result["later"]
    assert later > position and not a_paused


@pytest.mark.slow
def test_a_tuning_run_writes_its_report_beside_its_outputs(compose_config, tmp_path):
    from train import train

    cfg = compose_config(
        [
            "data.track.duration_s=5.0",
            "data.crop_s=1.0",
            "data.crops_per_batch=2",
            "baseline.release_ms=[50.0]",
            "baseline.lookahead_ms=[5.0]",
            "+trainer.fast_dev_run=true",
            "~callbacks",
            "logger=csv",
        ]
    )
    train(cfg)
    run = tmp_path / "run"
    saved = json.loads((run / "metrics.json").read_text())
    page = Page((run / REPORT_NAME).read_text(encoding="utf-8"))
    for side in ("input", "output"):
        assert page.cells[(side, "integrated_lufs")] == f"{saved[side]['integrated_lufs']:.2f}"
        assert page.cells[(side, "nmr_db")] == f"{saved[side]['nmr_db']:.2f}"
    assert page.cells[("baseline", "drl_db")] == f"{saved['baseline']['drl_db']:.2f}"
    sources = {key: decode(attrs["src"]) for key, attrs in page.audio.items()}
    assert sources["clip-a"][0].shape == sources["clip-b"][0].shape == (2, 5 * RATE)
    assert lufs(*sources["clip-a"]) == pytest.approx(lufs(*sources["clip-b"]), abs=0.1)
    # a report.html left in the folder stops a second run before any work (the other outputs removed)
    for name in ("tuned_params.yaml", "metrics.json", "processed/demo.wav"):
        (run / name).unlink()
    with pytest.raises(ValueError, match=f"refusing to overwrite {run / REPORT_NAME}"):
        train(cfg)
