"""The effects as pure functions of tensors and physical parameters.

Audio is (T,), (C, T) or (B, C, T) and comes back in the same shape; each parameter is a float, a 0-d tensor
or a (B,) tensor (one setting per batch item). Every function is differentiable in the audio and in every
continuous parameter. The ``*_bct`` variants take (B, C, T) audio and (B,) parameters without checks; the
Processor modules call those.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from drl.checks import check_audio, check_number, check_sample_rate, from_batch_channels_time, to_batch_channels_time
from drl.fft import records_gradient
from drl.filtering import sosfilt
from drl.peak import interpolated_peak, oversampling_factor
from processors import kernels
from processors.oversampling import downsample, upsample

LEVEL_FLOOR = kernels.LEVEL_FLOOR  # amplitude floor of the level detector (-240 dB)
OVERSAMPLE_FACTORS = (1, 2, 4, 8)
DETECTORS = ("peak", "rms")


# --- helpers ----------------------------------------------------------------------------------------------
def db_to_amplitude(db: torch.Tensor) -> torch.Tensor:
    return torch.pow(10.0, db / 20.0)


#: Where the effects' formulas are defined (wider than the modules' tuning ranges, which the modules check):
#: name -> (low, high, low_included). ``knee_db`` <= 0 is the hard knee (the curve's continuous extension at
#: 0) and ``mix`` outside 0..1 extrapolates the wet/dry blend; both are finite, so neither is refused here.
DOMAINS = {
    "ratio": (1.0, float("inf"), True),
    "attack_ms": (0.0, float("inf"), False),
    "release_ms": (0.0, float("inf"), False),
    "slow_release_ms": (0.0, float("inf"), False),
    "lookahead_ms": (0.0, float("inf"), False),
    "rms_ms": (0.0, float("inf"), False),
}


def _check_domain(name: str, v: torch.Tensor) -> None:
    if name not in DOMAINS:
        return
    low, high, low_included = DOMAINS[name]
    inside = (v >= low if low_included else v > low) & (v <= high)
    if not bool(inside.all()):
        bound = "[" if low_included else "("
        raise ValueError(f"{name} must lie in {bound}{low:g}, {high:g}], got {v.tolist()}")


def _item(value, x: torch.Tensor, name: str) -> torch.Tensor:
    """A parameter -> (B,) tensor in x's dtype/device, x of shape (B, C, T), checked against its domain."""
    v = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if v.ndim == 0:
        v = v.reshape(1)
    if v.ndim != 1 or v.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"{name} must be a number or a (B,) tensor with B = {x.shape[0]}, got {tuple(v.shape)}")
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"{name} must be finite, got {v.tolist()}")
    _check_domain(name, v)
    return v.expand(x.shape[0])


def _col(p: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1) for broadcasting against (B, C, T)."""
    return p.reshape(-1, 1, 1)


def _per_signal(p: torch.Tensor, channels: int) -> torch.Tensor:
    """(B,) -> (B * channels,) matching a (B, channels, T) tensor flattened to (B * channels, T)."""
    return p.reshape(-1, 1).expand(-1, channels).reshape(-1)


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def on_audio(x: torch.Tensor, fn) -> torch.Tensor:
    """``fn`` of the (B, C, T) view of ``x`` ((T,), (C, T) or (B, C, T), checked), in ``x``'s layout."""
    x = check_audio(x, "x", allow_half=False)
    return from_batch_channels_time(fn(to_batch_channels_time(x)), x.ndim)


def _wrap(fn, x: torch.Tensor, sample_rate: int | None, params: dict, **options):
    if sample_rate is not None:
        options["sample_rate"] = check_sample_rate(sample_rate)
    return on_audio(x, lambda xb: fn(xb, **{name: _item(value, xb, name) for name, value in params.items()}, **options))


# --- gain -------------------------------------------------------------------------------------------------
def gain_bct(x: torch.Tensor, gain_db: torch.Tensor) -> torch.Tensor:
    return x * _col(db_to_amplitude(gain_db))


def gain(x: torch.Tensor, gain_db) -> torch.Tensor:
    """y = x 10^(gain_db / 20)."""
    return _wrap(gain_bct, x, None, {"gain_db": gain_db})


# --- saturator --------------------------------------------------------------------------------------------
def saturate_bct(x, drive_db, bias, mix, output_db, *, oversample: int = 1, unity_gain: bool = False):
    _check_choice("oversample", oversample, OVERSAMPLE_FACTORS)
    g, b = _col(db_to_amplitude(drive_db)), _col(bias)
    post = _col(db_to_amplitude(output_db))
    if unity_gain:  # the small-signal slope of tanh(g x + b) is g sech^2(b)
        post = post / (g * (1.0 - torch.tanh(b) ** 2))
    m = _col(mix)
    wet = upsample(x, oversample)
    if records_gradient(x, g, b, post, m):
        wet = torch.tanh(g * wet + b) - torch.tanh(b)
        wet = downsample(wet, oversample)
        return m * post * wet + (1.0 - m) * x
    # without a gradient, the same operations in place: two signal-sized buffers instead of four
    wet = downsample((g * wet).add_(b).tanh_().sub_(torch.tanh(b)), oversample)
    return wet.mul_(m * post).add_((1.0 - m) * x)


def saturate(x, drive_db, bias=0.0, mix=1.0, output_db=0.0, *, oversample: int = 1, unity_gain: bool = False):
    """y = mix post (tanh(g x + b) - tanh(b)) + (1 - mix) x, g = 10^(drive_db/20), post = 10^(output_db/20)
    (divided by g sech^2(b) when ``unity_gain``), the tanh stage run at ``oversample`` times the rate."""
    params = {"drive_db": drive_db, "bias": bias, "mix": mix, "output_db": output_db}
    return _wrap(saturate_bct, x, None, params, oversample=oversample, unity_gain=unity_gain)


# --- compressor -------------------------------------------------------------------------------------------
def static_curve_db(level_db, threshold_db, ratio, knee_db):
    """Output level y_G of the soft-knee static curve (Giannoulis et al. 2012); all arguments broadcast.

    knee_db = 0 is the hard knee; the knee branch is never evaluated with a zero width, so no NaN gradient.
    """
    over = level_db - threshold_db
    knee_safe = torch.where(knee_db > 0, knee_db, torch.ones_like(knee_db))
    in_knee = (2.0 * over.abs() <= knee_db) & (knee_db > 0)
    knee = level_db + (1.0 / ratio - 1.0) * (over + knee_db / 2.0) ** 2 / (2.0 * knee_safe)
    above = threshold_db + over / ratio
    return torch.where(2.0 * over < -knee_db, level_db, torch.where(in_knee, knee, above))


def _detector(x, sample_rate, detector, rms_ms, stereo_link):
    """Detector signal (B, C or 1, T) with its dB scale and floor: (|x|, 20, 1e-12) or (mean square, 10, 1e-24).
    Linked: the per-sample maximum over channels (taken before the monotonic log: the same level)."""
    _check_choice("detector", detector, DETECTORS)
    if detector == "peak":
        det, scale, floor = x.abs(), 20.0, LEVEL_FLOOR
    else:
        b, c, t = x.shape
        a = kernels.time_coefficient(_per_signal(rms_ms, c), sample_rate)
        det = kernels.one_pole((x * x).reshape(b * c, t), a).reshape(b, c, t)
        scale, floor = 10.0, LEVEL_FLOOR**2
    return (det.amax(dim=1, keepdim=True) if stereo_link else det), scale, floor


def _compressor_bct(
    x, threshold_db, ratio, knee_db, attack_ms, release_ms, makeup_db, *, sample_rate, detector, rms_ms, stereo_link
):
    """(y, gain reduction s in dB (B, C or 1, T)); steps 1-5 compiled, with the curve of static_curve_db."""
    b, c, t = x.shape
    n = 1 if stereo_link else c  # signals per batch item
    a_att = kernels.time_coefficient(_per_signal(attack_ms, n), sample_rate)
    a_rel = kernels.time_coefficient(_per_signal(release_ms, n), sample_rate)
    params = [_per_signal(p, n) for p in (threshold_db, ratio, knee_db, makeup_db)]
    if detector == "peak":  # detector, curve, ballistics and gain application in one pass
        y, s = kernels.peak_compressor(x.reshape(b * n, c // n, t), *params, a_att, a_rel)
        return y.reshape(b, c, t), s.reshape(b, n, t)
    det, scale, floor = _detector(x, sample_rate, detector, rms_ms, stereo_link)
    gain, s = kernels.compressor(det.reshape(b * n, t), scale, floor, *params, a_att, a_rel)
    return x * gain.reshape(b, n, t), s.reshape(b, n, t)


def compressor_gain_reduction_db_bct(
    x,
    threshold_db,
    ratio,
    knee_db,
    attack_ms,
    release_ms,
    *,
    sample_rate,
    detector="peak",
    rms_ms=None,
    stereo_link=True,
):
    """Steps 1-4: the smoothed gain reduction s >= 0 in dB, (B, C, T) or (B, 1, T) when linked."""
    zero = torch.zeros_like(threshold_db)
    return _compressor_bct(
        x,
        threshold_db,
        ratio,
        knee_db,
        attack_ms,
        release_ms,
        zero,
        sample_rate=sample_rate,
        detector=detector,
        rms_ms=rms_ms,
        stereo_link=stereo_link,
    )[1]


def compress_bct(
    x,
    threshold_db,
    ratio,
    knee_db,
    attack_ms,
    release_ms,
    makeup_db,
    *,
    sample_rate,
    detector="peak",
    rms_ms=None,
    stereo_link=True,
):
    return _compressor_bct(
        x,
        threshold_db,
        ratio,
        knee_db,
        attack_ms,
        release_ms,
        makeup_db,
        sample_rate=sample_rate,
        detector=detector,
        rms_ms=rms_ms,
        stereo_link=stereo_link,
    )[0]


def compress(
    x,
    sample_rate,
    threshold_db,
    ratio,
    knee_db=0.0,
    attack_ms=5.0,
    release_ms=100.0,
    makeup_db=0.0,
    *,
    detector="peak",
    rms_ms=10.0,
    stereo_link=True,
):
    """Feed-forward log-domain compressor: level, soft-knee static curve, attack/release ballistics on the
    gain reduction in dB, y = x 10^((makeup_db - s) / 20)."""
    params = {
        "threshold_db": threshold_db,
        "ratio": ratio,
        "knee_db": knee_db,
        "attack_ms": attack_ms,
        "release_ms": release_ms,
        "makeup_db": makeup_db,
        "rms_ms": rms_ms,
    }
    return _wrap(compress_bct, x, sample_rate, params, detector=detector, stereo_link=stereo_link)


# --- limiter ----------------------------------------------------------------------------------------------
def peak_envelope(x, sample_rate, true_peak=False, stereo_link=True):
    """What the limiter holds under its ceiling: per-sample peak |x| of (B, C, T) audio, in true-peak mode the
    maximum over the oversampled points of [n-1, n+1); the maximum over channels when linked (B, 1, T).
    Proportional to any gain of ``x``, so the envelope of ``g * x`` is ``|g|`` times that of ``x``. Without a
    gradient to record it holds two copies of ``x`` at most (the oversampled points are taken block by block)."""
    if true_peak and oversampling_factor(sample_rate) > 1:
        inter = interpolated_peak(x, sample_rate)  # the points of [n, n+1), at least |x|
        if records_gradient(x):
            previous = torch.nn.functional.pad(inter[..., :-1], (1, 0))
            peak = torch.maximum(x.abs(), torch.maximum(inter, previous))
        else:  # the same maxima in place: inter >= |x| already
            peak = inter
            torch.maximum(peak[..., 1:], inter[..., :-1].clone(), out=peak[..., 1:])
    else:
        peak = x.abs()
    return peak.amax(dim=1, keepdim=True) if stereo_link else peak


def limiter_gain_of_envelope(peak, ceiling_db, release_ms, lookahead_ms, slow_release_ms=None, *, sample_rate):
    """The limiter's gain (B, C or 1, T) for a :func:`peak_envelope` ``peak``: <= min(1, ceiling / peak)."""
    ceiling = _col(db_to_amplitude(ceiling_db))
    over = peak > ceiling
    g_req = torch.where(over, ceiling / torch.where(over, peak, torch.ones_like(peak)), torch.ones_like(peak))
    b, c, t = g_req.shape
    lookahead_samples = kernels.window_samples(_per_signal(lookahead_ms, c), sample_rate)
    release_coefficient = kernels.time_coefficient(_per_signal(release_ms, c), sample_rate)
    g = kernels.limiter_gain(g_req.reshape(b * c, t), lookahead_samples, release_coefficient)
    if slow_release_ms is not None:
        # Program-dependent release: a slow one-pole average of the reduction (dB) holds the gain down after
        # sustained overs, while a short transient barely charges it and recovers at release_ms.
        reduction = -20.0 * torch.log10(g)
        beta = kernels.time_coefficient(_per_signal(slow_release_ms, c), sample_rate)
        slow = kernels.one_pole(reduction, beta)
        g = db_to_amplitude(-torch.maximum(reduction, slow))
    return g.reshape(b, c, t)


def limiter_gain_bct(
    x, ceiling_db, release_ms, lookahead_ms, slow_release_ms=None, *, sample_rate, true_peak=False, stereo_link=True
):
    """The limiter's gain (B, C or 1, T), <= min(1, ceiling / peak) at every sample."""
    peak = peak_envelope(x, sample_rate, true_peak, stereo_link)
    return limiter_gain_of_envelope(
        peak, ceiling_db, release_ms, lookahead_ms, slow_release_ms, sample_rate=sample_rate
    )


def limit_bct(
    x, ceiling_db, release_ms, lookahead_ms, slow_release_ms=None, *, sample_rate, true_peak=False, stereo_link=True
):
    if not (true_peak or slow_release_ms is not None or x.is_cuda):
        # the sample-peak limiter without the slow stage, fused on the CPU: the same y as the composition below
        b, c, t = x.shape
        n = 1 if stereo_link else c  # signals per batch item
        y = kernels.peak_limiter(
            x.reshape(b * n, c // n, t),
            _per_signal(db_to_amplitude(ceiling_db), n),
            kernels.window_samples(_per_signal(lookahead_ms, n), sample_rate),
            kernels.time_coefficient(_per_signal(release_ms, n), sample_rate),
        )
        return y.reshape(b, c, t)
    return x * limiter_gain_bct(
        x,
        ceiling_db,
        release_ms,
        lookahead_ms,
        slow_release_ms,
        sample_rate=sample_rate,
        true_peak=true_peak,
        stereo_link=stereo_link,
    )


def limit(
    x,
    sample_rate,
    ceiling_db=-1.0,
    release_ms=50.0,
    lookahead_ms=5.0,
    slow_release_ms=None,
    *,
    true_peak=False,
    stereo_link=True,
):
    """Lookahead brickwall limiter, no latency: |y| <= 10^(ceiling_db/20) at every sample (and, with
    ``true_peak``, between samples to within the meter's interpolation)."""
    params = {"ceiling_db": ceiling_db, "release_ms": release_ms, "lookahead_ms": lookahead_ms}
    if slow_release_ms is not None:
        params["slow_release_ms"] = slow_release_ms
    return _wrap(limit_bct, x, sample_rate, params, true_peak=true_peak, stereo_link=stereo_link)


# --- subsonic (DC and infrasound) filter ----------------------------------------------------------------
def highpass_sos(sample_rate: int, cutoff_hz: float) -> np.ndarray:
    """A fourth-order Butterworth high-pass as two biquads ``(2, 6)`` (bilinear transform, pre-warped to
    ``cutoff_hz``): the analog prototype's pole pairs have quality factors 1 / (2 cos(pi/8)) and
    1 / (2 cos(3 pi/8))."""
    k = math.tan(math.pi * cutoff_hz / sample_rate)
    sections = []
    for q in (0.5 / math.cos(math.pi / 8), 0.5 / math.cos(3 * math.pi / 8)):
        d = 1.0 + k / q + k * k
        sections.append([1.0 / d, -2.0 / d, 1.0 / d, 1.0, 2.0 * (k * k - 1.0) / d, (1.0 - k / q + k * k) / d])
    return np.array(sections)


def _steady_sosfilt(x: torch.Tensor, sos: np.ndarray) -> torch.Tensor:
    """A high-pass run from the steady state of its first input sample: filtering ``x - x[0]`` from rest is
    the same (a high-pass's steady response to a constant is zero), so a DC offset starts no transient."""
    return sosfilt(x - x[..., :1], sos)


def subsonic_bct(x: torch.Tensor, *, sample_rate: int, cutoff_hz: float) -> torch.Tensor:
    """Zero-phase high-pass of (B, C, T) audio: the Butterworth filter forwards then backwards (magnitude
    response squared, no phase shift, so the output stays time-aligned), with ``6 fs / cutoff_hz`` samples of
    even reflection at both ends and steady-state starts, as ``scipy.signal.sosfiltfilt(padtype="even")``.
    Even reflection continues the local level of the signal: an odd one (scipy's default) mirrors about the end
    sample, which puts a step of twice its distance from the local mean into the padding."""
    sos = highpass_sos(sample_rate, cutoff_hz)
    t = x.shape[-1]
    pad = min(t - 1, int(round(6.0 * sample_rate / cutoff_hz)))
    if pad > 0:
        x = torch.cat([x[..., 1 : pad + 1].flip(-1), x, x[..., -pad - 1 : -1].flip(-1)], dim=-1)
    y = _steady_sosfilt(_steady_sosfilt(x, sos).flip(-1), sos).flip(-1)
    return y[..., pad : pad + t]


def subsonic(x: torch.Tensor, sample_rate: int, cutoff_hz: float = 20.0) -> torch.Tensor:
    """Remove a DC offset and infrasound: a zero-phase high-pass at ``cutoff_hz`` (amplitude response
    ``r^8 / (1 + r^8)``, ``r = f / cutoff_hz``: -6 dB at the cutoff, -0.33 dB at 1.5 times it, -0.02 dB at twice
    it, -21 dB at 0.75 times it, -48 dB at half of it), time-aligned; linear, so differentiable in ``x``."""
    cutoff_hz = check_cutoff_hz(cutoff_hz, sample_rate)
    return on_audio(x, lambda xb: subsonic_bct(xb, sample_rate=check_sample_rate(sample_rate), cutoff_hz=cutoff_hz))


#: The range of the subsonic filter's cutoff, in Hz: below the audible band, above the slowest drifts.
SUBSONIC_CUTOFF_RANGE_HZ = (1.0, 40.0)


def check_cutoff_hz(cutoff_hz, sample_rate: int) -> float:
    """``cutoff_hz`` as a float after checking it lies in :data:`SUBSONIC_CUTOFF_RANGE_HZ`."""
    cutoff_hz = check_number("cutoff_hz", cutoff_hz, *SUBSONIC_CUTOFF_RANGE_HZ, unit="Hz")
    check_sample_rate(sample_rate)
    return cutoff_hz
