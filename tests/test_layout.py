"""Audio laid out (samples, channels), as soundfile reads it, is refused wherever audio enters, with the
transpose named; (C, T) audio near the rule's edges still passes."""

import pytest
import torch
from drl_test_signals import music

import drl
from drl.checks import check_audio
from drl.nmr import MaskedReference
from processors import Chain, Compressor, Gain, Limiter, Saturator, Subsonic, functional

SR = 44100
STEREO = torch.tensor(music(0.5, channels=2), dtype=torch.float32)  # (2, T)
SOUNDFILE = STEREO.T.contiguous()  # (T, 2), as soundfile.read returns it
TRANSPOSE = r"looks like \(samples, channels\).*pass \w+\.T, of shape \(2, 22050\) \(channels, samples\)"


PAIR_MEASURES = {
    "DRL": lambda x, y: drl.DRL(SR)(x, y),
    "DRL linear": lambda x, y: drl.DRL(SR, None, linear_taps=64)(x, y),
    "DRL frames": lambda x, y: drl.DRL(SR, None, frame_ms=50)(x, y),
    "DRL aligned": lambda x, y: drl.DRL(SR, None, align=True)(x, y),
    "drl_db": drl.drl_db,
    "drl_ratio": drl.drl_ratio,
    "band_drl_db": lambda x, y: drl.band_drl_db(x, y, SR, [(20, 2000)]),
    "frame_drl_db": lambda x, y: drl.frame_drl_db(x, y, SR, 50),
    "nmr_db": lambda x, y: drl.nmr_db(x, y, SR),
    "MaskedReference": lambda x, y: MaskedReference(x, SR).nmr_db(y),
    "align": lambda x, y: drl.align(x, y, SR),
    "estimate_delay": lambda x, y: drl.estimate_delay(x, y, SR),
}


@pytest.mark.parametrize("name", PAIR_MEASURES)
def test_measures_of_two_signals_refuse_the_soundfile_layout(name):
    with pytest.raises(ValueError, match=r"reference of shape \(22050, 2\) " + TRANSPOSE):
        PAIR_MEASURES[name](SOUNDFILE, torch.tanh(3 * SOUNDFILE))
    PAIR_MEASURES[name](STEREO, torch.tanh(3 * STEREO))  # the right layout passes


def test_the_processed_signal_is_checked_as_well():
    with pytest.raises(ValueError, match=r"processed of shape \(22050, 2\) " + TRANSPOSE):
        drl.drl_db(STEREO, torch.tanh(3 * SOUNDFILE))
    with pytest.raises(ValueError, match="processed of shape"):
        MaskedReference(STEREO, SR).nmr_db(SOUNDFILE)


SINGLE_MEASURES = {
    "integrated_loudness": lambda x: drl.integrated_loudness(x, SR),
    "momentary_loudness": lambda x: drl.momentary_loudness(x, SR),
    "short_term_loudness": lambda x: drl.short_term_loudness(x, SR),
    "loudness_range": lambda x: drl.loudness_range(x, SR),
    "loudness_summary": lambda x: drl.loudness_summary(x, SR),
    "Loudness": lambda x: drl.Loudness(SR)(x),
    "true_peak": lambda x: drl.true_peak(x, SR),
    "TruePeak": lambda x: drl.TruePeak(SR)(x),
    "sample_peak": drl.sample_peak,
    "dc_offset": drl.dc_offset,
    "infrasound_share": lambda x: drl.infrasound_share(x, SR),
}


@pytest.mark.parametrize("name", SINGLE_MEASURES)
def test_meters_refuse_the_soundfile_layout(name):
    with pytest.raises(ValueError, match=r"audio of shape \(22050, 2\) " + TRANSPOSE):
        SINGLE_MEASURES[name](SOUNDFILE)
    SINGLE_MEASURES[name](STEREO.repeat(1, 7))  # 3.5 s: the loudness range needs a 3 s window


EFFECTS = {
    "Gain": lambda: Gain(SR, gain_db=3),
    "Saturator": lambda: Saturator(SR),
    "Compressor": lambda: Compressor(SR),
    "Compressor rms": lambda: Compressor(SR, detector="rms"),
    "Limiter": lambda: Limiter(SR, true_peak=True),
    "Subsonic": lambda: Subsonic(SR),
    "Chain": lambda: Chain([Gain(SR), Compressor(SR), Limiter(SR)]),
}


@pytest.mark.parametrize("name", EFFECTS)
def test_every_effect_refuses_the_soundfile_layout(name):
    effect = EFFECTS[name]()
    with pytest.raises(ValueError, match=r"x of shape \(22050, 2\) " + TRANSPOSE):
        effect(SOUNDFILE)
    with pytest.raises(ValueError, match=r"x of shape \(3, 22050, 2\) looks like \(batch, samples, channels\).*"):
        effect(SOUNDFILE.expand(3, -1, -1))
    assert effect(STEREO).shape == STEREO.shape


FUNCTIONS = {
    "gain": lambda x: functional.gain(x, 3.0),
    "saturate": lambda x: functional.saturate(x, 6.0),
    "compress": lambda x: functional.compress(x, SR, -20.0, 4.0, 6.0, 5.0, 100.0, 0.0),
    "limit": lambda x: functional.limit(x, SR, -1.0, 50.0, 5.0),
    "subsonic": lambda x: functional.subsonic(x, SR),
    "Compressor.gain_reduction_db": lambda x: Compressor(SR).gain_reduction_db(x),
    "Limiter.gain_reduction_db": lambda x: Limiter(SR).gain_reduction_db(x),
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functional_forms_refuse_the_soundfile_layout(name):
    with pytest.raises(ValueError, match=r"x of shape \(22050, 2\) " + TRANSPOSE):
        FUNCTIONS[name](SOUNDFILE)
    FUNCTIONS[name](STEREO)


def test_batched_layout_names_the_transpose_of_the_last_two_axes():
    with pytest.raises(ValueError, match=r"pass x.transpose\(1, 2\), of shape \(4, 2, 1000\)"):
        check_audio(torch.zeros(4, 1000, 2), "x")


@pytest.mark.parametrize("shape", [(15, 8), (16, 9), (100, 16), (1, 100, 9), (2, 5), (8,), (64, 1, 4)])
def test_shapes_outside_the_rule_pass(shape):
    # fewer than 16 channels, or more than 8 samples, or a (T,) signal: read as given
    assert check_audio(torch.ones(shape)).shape == shape


@pytest.mark.parametrize("shape", [(16, 8), (44100, 1), (2, 16, 1), (48000, 8)])
def test_shapes_inside_the_rule_are_refused(shape):
    with pytest.raises(ValueError, match="looks like"):
        check_audio(torch.ones(shape))
