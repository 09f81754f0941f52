"""Listening clips (loudness-matched, stereo, the residual raised to a stated level), their TensorBoard
summaries read back from the event file, and the figures: the deepest gain reduction per bin, the compressor's
threshold and knee, the validations' record."""

import io
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

import drl
from processors import Chain, Compressor, Gain, Limiter
from tuning.audio import demo_track, loudest_start
from tuning.callbacks import MediaLogger, ObjectiveHistory
from tuning.clips import PEAK_CEILING, listening_clips, loudest_excerpt, wav_bytes
from tuning.figures import binned_max, compressor_curve_figure, gain_reduction_figure, objective_figure

RATE = 48000


def lufs(audio) -> float:
    return float(drl.integrated_loudness(torch.as_tensor(audio, dtype=torch.float64), RATE))


@pytest.fixture(scope="module")
def tuned():
    """An 8 s stereo track, a loud chain (gain, compressor, 1 ms limiter) and its render: (track, chain, output)."""
    track = demo_track(RATE, 8.0).audio.double()
    chain = Chain(
        {
            "gain": Gain(RATE, gain_db=9.0),
            "compressor": Compressor(RATE, threshold_db=-18.0, ratio=2.0, knee_db=6.0),
            "limiter": Limiter(RATE, ceiling_db=-1.0, release_ms=1.0),
        }
    ).double()
    with torch.no_grad():
        output = chain(track)
    return track, chain, output


def test_loudest_excerpt_goes_by_loudness_not_energy():
    # a 40 Hz burst with 2 dB more energy than a 2 kHz burst: K-weighting hears the 2 kHz one as louder
    t = torch.arange(12 * RATE, dtype=torch.float64) / RATE
    audio = torch.zeros(2, t.numel(), dtype=torch.float64)
    low, high = slice(1 * RATE, 4 * RATE), slice(7 * RATE, 10 * RATE)
    audio[:, low] = 0.3 * 10 ** (2 / 20) * torch.sin(2 * torch.pi * 40 * t[low])
    audio[:, high] = 0.3 * torch.sin(2 * torch.pi * 2000 * t[high])
    assert float(audio[:, low].square().sum()) > float(audio[:, high].square().sum())
    part = loudest_excerpt(audio, RATE, 3.0)
    assert part.stop - part.start == 3 * RATE and abs(part.start - 7 * RATE) <= RATE // 10
    whole = loudest_excerpt(audio, RATE, 20.0)  # longer than the track: all of it
    assert (whole.start, whole.stop) == (0, audio.shape[-1])


def test_the_loudest_passage_from_the_tracks_reading_is_the_measured_one():
    torch.manual_seed(3)
    audio = torch.randn(2, 20 * RATE) * torch.linspace(0.1, 3.0, 20 * RATE).sin()  # loudest near 10 s
    reading = drl.read_levels(audio, RATE)
    for seconds in (2.0, 5.0):  # momentary windows, as the clips use
        part = loudest_excerpt(audio, RATE, seconds)
        assert 0 < part.start and part.stop < 20 * RATE  # inside the track, not at an end
        assert loudest_excerpt(audio, RATE, seconds, reading) == part
    for seconds in (5.0, 12.0):  # short-term windows
        measured = loudest_start(audio, RATE, int(seconds * RATE))
        assert loudest_start(audio, RATE, int(seconds * RATE), reading=reading) == measured


def test_clips_are_loudness_matched_and_the_residual_raised(tuned):
    track, _, output = tuned
    clips = listening_clips(track, output, RATE, 5.0)
    assert clips.input.shape == clips.output.shape == clips.residual.shape == (2, 5 * RATE)
    # the output is louder: it is turned down to the input's loudness, the input plays as it is
    assert clips.input_gain_db == 0.0 and clips.output_gain_db < -2.0
    assert lufs(clips.input) == pytest.approx(lufs(clips.output), abs=1e-6) == pytest.approx(clips.matched_lufs)
    assert lufs(clips.residual) == pytest.approx(-23.0, abs=1e-6) == clips.residual_lufs
    # the residual is DRL's (a whole-track gain per channel), raised by the stated gain
    _, residual = drl.level_match(track, output)
    own = lufs(residual[:, clips.part])
    assert clips.residual_own_lufs == pytest.approx(own) and clips.residual_gain_db == pytest.approx(-23.0 - own)
    assert torch.equal(clips.input, track[:, clips.part])
    assert "-23.0 LUFS" in clips.describe("residual") and f"{own:.1f} LUFS" in clips.describe("residual")
    assert f"{clips.matched_lufs:.1f} LUFS" in clips.describe("output") and "turned down" in clips.describe("output")
    with pytest.raises(ValueError, match="no clip named"):
        clips.describe("baseline")


def test_clips_stay_below_full_scale_and_a_silent_residual_says_so(tuned):
    track, _, _ = tuned
    hot = 3.0 * track  # a float file with peaks far above 0 dBFS, passed through unchanged
    clips = listening_clips(hot, hot.clone(), RATE, 4.0)
    assert max(float(clips.input.abs().max()), float(clips.output.abs().max())) <= PEAK_CEILING + 1e-12
    assert lufs(clips.input) == pytest.approx(lufs(clips.output), abs=1e-6)
    assert lufs(clips.input) < lufs(hot[:, clips.part]) - 5  # turned down together, by the excess peak
    assert clips.residual_lufs is None and float(clips.residual.abs().max()) == 0.0
    assert "silent" in clips.describe("residual")
    clicks = track.clone()
    clicks[:, ::4800] += 0.5  # a residual of sparse clicks: at -23 LUFS its peaks would clip
    clips = listening_clips(track, clicks, RATE, 4.0)
    assert clips.residual_peak_limited and float(clips.residual.abs().max()) == pytest.approx(PEAK_CEILING)
    assert lufs(clips.residual) == pytest.approx(clips.residual_lufs, abs=1e-6) and clips.residual_lufs < -23.5
    assert "its peak allows no more" in clips.describe("residual")
    noisy = track + 0.2 * torch.randn(track.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    clips = listening_clips(track, noisy, RATE, 4.0)  # a residual louder than -23 LUFS is turned down
    assert clips.residual_gain_db < 0 and lufs(clips.residual) == pytest.approx(-23.0, abs=1e-6)
    assert "turned down" in clips.describe("residual") and not clips.residual_peak_limited
    with pytest.raises(ValueError, match="excerpt length"):
        listening_clips(track, track, RATE, 0.1)
    with pytest.raises(ValueError, match="one shape"):
        listening_clips(track, track[:1], RATE, 4.0)


def test_wav_bytes_keep_every_channel_and_the_rate(tuned):
    track, _, _ = tuned
    data, rate = sf.read(io.BytesIO(wav_bytes(track[:, :RATE], RATE, "PCM_24")), always_2d=True)
    assert rate == RATE and data.shape == (RATE, 2)
    assert np.abs(data.T - track[:, :RATE].numpy()).max() < 2**-22


@pytest.mark.slow
def test_tensorboard_clips_are_stereo_matched_and_state_their_level(tuned, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    track, chain, output = tuned
    metrics = {
        "input": {"integrated_lufs": lufs(track), "true_peak_dbtp": -3.0, "drl_db": -120.0},
        "output": {"integrated_lufs": lufs(output), "true_peak_dbtp": -1.0, "drl_db": -15.0},
        "target": {"lufs": -14.0, "ceiling_dbtp": -1.0},
    }
    final = SimpleNamespace(output=output, values=chain.values())
    writer = SummaryWriter(str(tmp_path))
    MediaLogger(excerpt_s=4.0).log_setting(writer, 7, "", track, final, metrics, chain, RATE)
    writer.close()

    events = EventAccumulator(str(tmp_path), size_guidance={"audio": 0, "images": 0})
    events.Reload()
    assert {"figures/gain_reduction", "figures/residual_spectrum", "figures/compressor_curve"} <= set(
        events.Tags()["images"]
    )
    clips = {}
    for tag in ("input", "output", "residual"):
        (event,) = events.Audio(f"audio/{tag}")
        data, rate = sf.read(io.BytesIO(event.encoded_audio_string), always_2d=True)
        assert event.step == 7 and event.sample_rate == rate == RATE and event.content_type == "audio/wav"
        assert data.shape == (4 * RATE, 2) == (event.length_frames, 2)
        assert sf.info(io.BytesIO(event.encoded_audio_string)).subtype == "PCM_24"
        clips[tag] = data.T
        description = events.SummaryMetadata(f"audio/{tag}").summary_description
        assert "LUFS" in description
    assert not np.allclose(clips["input"][0], clips["input"][1])  # two channels, not a downmix
    assert lufs(clips["input"]) == pytest.approx(lufs(clips["output"]), abs=0.1)
    assert lufs(clips["residual"]) == pytest.approx(-23.0, abs=0.1)
    assert "-23.0 LUFS" in events.SummaryMetadata("audio/residual").summary_description
    matched = f"{lufs(clips['input']):.1f} LUFS"
    assert matched in events.SummaryMetadata("audio/output").summary_description


def test_gain_reduction_plot_keeps_the_deepest_dip_of_every_bin():
    # narrow dips (a few samples deep, as a 1 ms release leaves them) between the bins' first samples
    generator = torch.Generator().manual_seed(0)
    curve = torch.zeros(RATE, dtype=torch.float64)
    hop = round(0.005 * RATE)
    for position in torch.randint(0, RATE - 3, (40,), generator=generator).tolist():
        if position % hop:
            curve[position : position + 3] += 0.5 + 2.5 * torch.rand(1, generator=generator, dtype=torch.float64)
    assert float(curve[::hop].max()) < float(curve.max())  # one sample per bin misses the deepest dip

    binned = binned_max(curve, hop)
    assert binned.numel() == -(-RATE // hop) and torch.equal(binned, curve.view(-1, hop).amax(dim=-1))
    assert torch.equal(binned_max(curve[:-7], hop)[-1], curve[(RATE // hop - 1) * hop : -7].max())

    class Stage(torch.nn.Module):
        def gain_reduction_db(self, audio):
            return curve[None].expand(audio.shape[0], -1)

        def forward(self, audio):
            return audio

    figure = gain_reduction_figure([("dips", Stage())], torch.zeros(2, RATE), RATE, offset_s=3.0)
    (line,) = figure.axes[0].lines
    assert float(-np.min(line.get_ydata())) == float(curve.max())
    assert line.get_xdata()[0] == 3.0 and line.get_xdata()[1] == pytest.approx(3.0 + hop / RATE)
    with pytest.raises(ValueError, match="bin_samples"):
        binned_max(curve, 0)


def test_gain_reduction_plot_of_a_real_limiter_reaches_its_full_depth(tuned):
    track, chain, _ = tuned
    part = slice(4 * RATE, 7 * RATE)  # the loud section, where the limiter works
    figure = gain_reduction_figure(chain, track[:, part], RATE, 4.0)
    plotted = {line.get_label(): -float(np.min(line.get_ydata())) for line in figure.axes[0].lines}
    with torch.no_grad():
        gained = chain.stages["gain"](track[:, part])
        limiter_input = chain.stages["compressor"](gained)
        limiter = chain.stages["limiter"].gain_reduction_db(limiter_input).amax(dim=0)
        full = float(limiter.max())
        compressor = float(chain.stages["compressor"].gain_reduction_db(gained).max())
    assert plotted["limiter"] == pytest.approx(full, rel=1e-9) and full > 1.0
    assert float(limiter[:: round(0.005 * RATE)].max()) < full - 0.1  # what one sample per 5 ms showed
    assert plotted["compressor"] == pytest.approx(compressor, rel=1e-9)


def test_compressor_curve_marks_threshold_and_knee():
    compressor = Compressor(RATE, threshold_db=-30.0, ratio=3.0, knee_db=8.0).double()
    figure = compressor_curve_figure(compressor)
    axis = figure.axes[0]
    labels = axis.get_legend_handles_labels()[1]
    assert "threshold -30.0 dB" in labels and "knee 8.0 dB" in labels and "tuned, ratio 3:1" in labels
    threshold = next(line for line in axis.lines if line.get_label() == "threshold -30.0 dB")
    assert list(threshold.get_xdata()) == [-30.0, -30.0]
    (knee,) = axis.patches
    assert (knee.get_x(), knee.get_x() + knee.get_width()) == pytest.approx((-34.0, -26.0))  # data coordinates
    hard = compressor_curve_figure(Compressor(RATE, threshold_db=-20.0, knee_db=0.0))
    assert not hard.axes[0].patches  # a hard knee has no span to shade


def test_objective_figure_draws_the_validations_the_result_and_the_baseline():
    figure = objective_figure([(0, -24.0), (20, None), (40, -26.0), (60, -25.5)], -26.25, -25.0, "NMR", 40)
    lines = {line.get_label(): line for line in figure.axes[0].lines}
    validations = lines["validation (whole track, on target)"]
    assert list(validations.get_xdata()) == [0, 40, 60] and list(validations.get_ydata()) == [-24.0, -26.0, -25.5]
    assert list(lines["result"].get_xdata()) == [40] and list(lines["result"].get_ydata()) == [-26.25]
    assert list(lines["gain + limiter baseline"].get_ydata()) == [-25.0, -25.0]
    assert figure.axes[0].get_ylabel().startswith("NMR")
    empty = objective_figure([], None, None)
    assert [text.get_text() for text in empty.axes[0].texts] == ["no validation ran"]


def test_objective_history_records_each_validation_and_survives_a_checkpoint():
    history = ObjectiveHistory()
    module = SimpleNamespace(scores=[-20.5, None])
    history.on_validation_end(SimpleNamespace(sanity_checking=True, global_step=0), module)
    assert history.records == []  # Lightning's sanity check is no validation of the run
    history.on_validation_end(SimpleNamespace(sanity_checking=False, global_step=20), module)
    module.scores = [-21.0, -18.0]
    history.on_validation_end(SimpleNamespace(sanity_checking=False, global_step=40), module)
    assert history.of(0) == [(20, -20.5), (40, -21.0)] and history.of(1) == [(20, None), (40, -18.0)]
    resumed = ObjectiveHistory()
    resumed.load_state_dict(history.state_dict())
    assert resumed.of(1) == history.of(1)
