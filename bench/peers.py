"""Established open-source limiters, each driven to exactly the same loudness target and time-aligned.

Peers (bench-only; their set-up runs on first use through bench/bench_deps.py):

- ``lsp``: LSP Limiter (lsp-plugins-lv2, ``limiter_stereo`` / ``limiter_mono``): 12 modes (Herm/Exp/Line x
  Thin/Wide/Tail/Duck), threshold 0 dBFS, 5 ms lookahead and attack, ALR off, "Half x4(3L)" oversampling
  (a 4x oversampled, true-peak sidechain), release 5 or 20 ms.
- ``x42``: x42-dpl digital peak limiter (x42-plugins, ``dpl#stereo`` / ``dpl#mono``), threshold 0 dBFS,
  true-peak mode on, release 3 ms .. 300 ms.
- ``calf``: Calf Limiter (calf-plugins, stereo only), limit 0 dBFS, 5 ms lookahead, oversampling x4, release
  10 .. 300 ms, ASC (auto-release) off and on.
- ``zam``: ZaMaximX2 (zam-plugins, stereo only), threshold and ceiling 0 dB, release 1 .. 100 ms.
- ``hyrax``: matchering 2.0.6's Hyrax limiter (``matchering.limiter.hyrax.limit``, config from
  ``matchering.defaults``): sample-peak threshold -0.016 dBFS, zero-phase attack, two-stage (hold + release)
  release; defaults (3000 ms) and 1000 / 300 / 100 ms.
- ``pb-limiter``: pedalboard's ``Limiter`` (JUCE ``dsp::Limiter``: a 4:1 compressor at -10 dBFS, a limiter at
  ``threshold_db``, automatic make-up ``min(3.75 dB, -threshold_db)`` and a clip at 0 dBFS), thresholds
  -10 / -3.75 dB, release 1 .. 100 ms.
- ``pb-brickwall``: pedalboard's ``BrickwallLimiter`` (ceiling 0 dBFS, 5 ms lookahead), release 3 .. 100 ms,
  sample-peak and 4x oversampled (``true_peak``) detection.
- ``loudnorm``: ffmpeg's ``loudnorm`` filter, two-pass as users run it (pass 1 ``print_format=json``; pass 2
  with ``measured_I/TP/LRA/thresh``, ``offset``, ``linear=true`` and the target I/TP/LRA, then ``-ar`` back
  to the input rate from its internal 192 kHz), LRA target 11 or 50. It targets by itself and is reported as it
  lands, flagged when off target (it falls back to its dynamic mode when the ceiling cannot be met linearly).

The four LV2 plugins run through bench/lv2host.c (compiled here into bench/_build/lv2host against liblilv on
first use) in blocks of 512 frames, with every required host feature and atom ports connected.

Driving to the target (:func:`drive_to_target`), the same for every black-box peer: a drive (input gain, dB)
ahead of the peer, whose own threshold or ceiling stays fixed, is solved so that the output's peak-to-loudness
ratio equals the target's, ``LUFS(out) - TP(out) = lufs - ceiling`` (monotone in the drive for a limiter or a
clipper), by bracketing and an Illinois root finder in dB; a plain output gain then sets the integrated
loudness to ``lufs`` exactly and the true peak lands on the ceiling. LUFS and dBTP come from the project's own
meters (``drl.integrated_loudness``, ``drl.true_peak``, float64). A linear output gain is transparent, so this
is fair to every peer whatever its make-up convention. A peer that cannot reach the ratio (drive range
exhausted, or the ratio saturating or falling as the drive grows: sample-peak limiters whose inter-sample
peaks grow with the drive, ZaMaximX2, a DC offset) is reported off target with its best attempt (the densest
drive it tried), its true peak put on the ceiling. An input already denser than the target only gets the
output gain (the peer idle, the true peak under the ceiling). The search ranks on-target settings by the
score, then off-target ones by how close they came.

Alignment: for every peer and setting, 1 s of noise at -40 dBFS RMS (far below every threshold, where the
peers are linear) is rendered with a flush tail of zeros; the integer lag maximising the cross-correlation
with the probe is the measured latency (its peak must stand out clearly), and every render is trimmed by it to
the input's length. The latency the peer reports (LV2 latency port after the first run) is kept alongside.
``loudnorm`` is aligned on its own output against the input. Measured at 44.1 / 48 kHz: LSP "Half x4(3L)"
227 / 246 (it reports 226 / 246; its "Full" modes report 7-9 samples too few), x42-dpl 56 / 64 (as reported),
Calf 221 / 241 (it reports nothing), ZaMaximX2 480 / 480 (as reported), the others 0. A one-sample error
costs 1 to 2 dB of DRL at -9 LUFS.

Mono input goes through the mono plugin where there is one, else through both channels of the stereo one.

    python bench/peers.py INPUT.wav --lufs -9 --ceiling -1 [--out DIR] [--peers lsp,x42,...]
        [--score drl|nmr] [--haaqi] [--threads N]

For each peer: search its settings, keep the best by the score (plain DRL by default, lower is better;
``nmr`` uses ``drl.nmr_db`` when the package has it), write ``DIR/<peer>.wav`` (float32) and
``DIR/peers.json``, and print a table. ``--haaqi`` also scores each chosen output with bench/haaqi.py.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import importlib.util
import json
import math
import re
import subprocess
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_deps import ensure_debian, ensure_python  # noqa: E402

import drl  # noqa: E402

BENCH = Path(__file__).resolve().parent
BUILD = BENCH / "_build"
HOST_SOURCE = BENCH / "lv2host.c"
HOST_BINARY = BUILD / "lv2host"
DEFAULT_OUT = BENCH / "_study" / "peers"

TOL_LU = 0.05  # LU (and dB on the true peak)
BLOCK = 512  # frames per LV2 run() call
PROBE_SECONDS = 1.0
PROBE_RMS_DBFS = -40.0
MAX_LAG_S = 0.25  # the longest latency searched for (s)
MIN_CLARITY = 2.0  # correlation peak over the largest value away from it
DRIVE_SPAN_DB = 30.0  # drives searched: +- this around the first guess
MAX_RENDERS = 14  # per setting

Setting = dict
Score = Callable[[np.ndarray, np.ndarray], float]


# ---------------------------------------------------------------------------------------------------- measures


def to_tensor(audio: np.ndarray) -> torch.Tensor:
    """(C, T) numpy -> float64 torch tensor."""
    return torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float64))


def measure(audio: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """Integrated loudness (LUFS) and true peak (dBTP, max over channels) of ``audio`` (C, T)."""
    t = to_tensor(audio)
    return float(drl.integrated_loudness(t, sample_rate)), float(drl.true_peak(t, sample_rate).amax())


def plain_drl(reference: np.ndarray, processed: np.ndarray) -> float:
    """Mean over channels of the broadband DRL (dB) of ``processed`` against ``reference``, both (C, T)."""
    return float(drl.drl_db(to_tensor(reference), to_tensor(processed)).mean())


def nmr_score(sample_rate: int) -> Score:
    """Mean over channels of ``drl.nmr_db`` (dB, lower is better) at ``sample_rate``."""

    def score(reference: np.ndarray, processed: np.ndarray) -> float:
        return float(drl.nmr_db(to_tensor(reference), to_tensor(processed), sample_rate).mean())

    return score


# ---------------------------------------------------------------------------------------------------- latency


@dataclass(frozen=True)
class Latency:
    """Measured lag (samples, cross-correlation with a low-level probe), what the peer reports (samples, None
    when it reports nothing) and how clearly the correlation peak stands out (ratio, >= MIN_CLARITY)."""

    measured: int
    reported: int | None
    clarity: float


def cross_lag(reference: np.ndarray, response: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Integer lag in [-max_lag, max_lag] maximising sum_c sum_t ref_c[t] resp_c[t + lag] (both (C, *)),
    and the clarity: the peak over the largest |correlation| more than 3 samples away from it."""
    n = reference.shape[1] + response.shape[1]
    size = 1 << (n - 1).bit_length()
    spectrum = np.conj(np.fft.rfft(reference, size)) * np.fft.rfft(response, size)
    corr = np.fft.irfft(spectrum.sum(axis=0), size)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    values = np.concatenate([corr[: max_lag + 1], corr[size - max_lag :]])
    best = int(np.argmax(values))
    away = np.abs(values[np.abs(lags - lags[best]) > 3])
    clarity = float(values[best] / away.max()) if away.size and away.max() > 0 else math.inf
    return int(lags[best]), clarity


def shift(audio: np.ndarray, lag: int, length: int) -> np.ndarray:
    """``audio`` (C, *) advanced by ``lag`` samples (delayed when negative), cut or zero-padded to ``length``."""
    if lag < 0:
        audio = np.pad(audio, ((0, 0), (-lag, 0)))
        lag = 0
    out = audio[:, lag : lag + length]
    return np.pad(out, ((0, 0), (0, length - out.shape[1]))) if out.shape[1] < length else out


def probe(channels: int, sample_rate: int) -> np.ndarray:
    """Seeded white noise (channels, 1 s) at PROBE_RMS_DBFS RMS, float32."""
    noise = np.random.default_rng(0).standard_normal((channels, int(PROBE_SECONDS * sample_rate)))
    return (noise * 10 ** (PROBE_RMS_DBFS / 20)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------- peers


class Peer:
    """A black-box peak processor: ``render`` is the raw processor; ``process`` adds the drive and alignment."""

    name = "peer"
    self_targeting = False

    def setup(self) -> None:
        """Install what the peer needs (bench-only), or raise SystemExit naming it."""

    def settings(self) -> list[Setting]:
        """The grid searched by :func:`search`."""
        return [{}]

    def label(self, setting: Setting) -> str:
        """A short human-readable name of ``setting``."""
        return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in setting.items())

    def threshold_db(self, setting: Setting) -> float:
        """Input level (dBFS peak) where the peer starts limiting: the drive solver's first guess uses it."""
        return 0.0

    def render(self, audio: np.ndarray, sample_rate: int, setting: Setting, tail: int) -> tuple[np.ndarray, int | None]:
        """Raw output (C, T + tail) of ``audio`` (C, T) float32 followed by ``tail`` zeros, and the latency
        the peer reports (samples, None if it reports none)."""
        raise NotImplementedError

    def latency(self, sample_rate: int, channels: int, setting: Setting) -> Latency:
        """The measured and reported latency of ``setting`` (cached)."""
        cache = self.__dict__.setdefault("_latency", {})
        key = (sample_rate, channels, json.dumps(setting, sort_keys=True))
        if key not in cache:
            max_lag = int(MAX_LAG_S * sample_rate)
            x = probe(channels, sample_rate)
            y, reported = self.render(x, sample_rate, setting, max_lag)
            lag, clarity = cross_lag(x.astype(np.float64), y.astype(np.float64), max_lag)
            if clarity < MIN_CLARITY:
                raise RuntimeError(f"{self.name} {self.label(setting)}: no clear latency peak (clarity {clarity:.2f})")
            cache[key] = Latency(lag, reported, clarity)
        return cache[key]

    def process(self, audio: np.ndarray, sample_rate: int, drive_db: float, setting: Setting) -> np.ndarray:
        """``audio`` (C, T) through ``drive_db`` of input gain and the peer: (C, T) float64, time-aligned."""
        lag = self.latency(sample_rate, audio.shape[0], setting).measured
        driven = (np.asarray(audio, dtype=np.float64) * 10 ** (drive_db / 20)).astype(np.float32)
        out, _ = self.render(driven, sample_rate, setting, max(lag, 0))
        return shift(np.asarray(out, dtype=np.float64), lag, audio.shape[1])


def padded(audio: np.ndarray, tail: int) -> np.ndarray:
    """``audio`` (C, T) followed by ``tail`` zeros, float32 and contiguous."""
    return np.ascontiguousarray(np.pad(audio, ((0, 0), (0, tail))), dtype=np.float32)


# ---- LV2 plugins through bench/lv2host.c


def ensure_host() -> Path:
    """Compile bench/lv2host.c into bench/_build/lv2host when missing or older than the source."""
    if HOST_BINARY.exists() and HOST_BINARY.stat().st_mtime >= HOST_SOURCE.stat().st_mtime:
        return HOST_BINARY
    ensure_debian("gcc", "pkg-config", "liblilv-dev", "lv2-dev")
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "lilv-0"], capture_output=True, text=True, check=True
    ).stdout.split()
    BUILD.mkdir(parents=True, exist_ok=True)
    command = ["cc", "-O2", "-o", str(HOST_BINARY), str(HOST_SOURCE), *flags, "-lm"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"compiling {HOST_SOURCE.name} failed: {done.stderr.strip()[-1000:]}")
    return HOST_BINARY


def lv2_render(
    uri: str, audio: np.ndarray, sample_rate: int, controls: dict, tail: int
) -> tuple[np.ndarray, int | None]:
    """Run ``audio`` (C, T) float32 through the plugin ``uri`` with ``controls`` (symbol -> value) and
    ``tail`` frames of silence; the output (C, T + tail) and the reported latency (None if none)."""
    host = ensure_host()
    channels = audio.shape[0]
    with tempfile.TemporaryDirectory(prefix="lv2host") as tmp:
        src, dst = Path(tmp) / "in.raw", Path(tmp) / "out.raw"
        np.ascontiguousarray(audio.T, dtype=np.float32).tofile(src)
        args = [
            str(host),
            uri,
            str(src),
            str(dst),
            str(channels),
            str(int(sample_rate)),
            "--tail",
            str(tail),
            "--block",
            str(BLOCK),
            *(f"{k}={v:g}" for k, v in controls.items()),
        ]
        done = subprocess.run(args, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip() or f"lv2host exited with {done.returncode}")
        out = np.fromfile(dst, dtype=np.float32).reshape(-1, channels).T
    match = re.search(r"latency=(-?[\d.]+)", done.stdout)
    reported = float(match.group(1)) if match else -1.0
    return out, (None if reported < 0 else int(round(reported)))


class LV2Peer(Peer):
    """An LV2 plugin: ``uris`` by channel count, ``fixed`` controls, and a grid of varied controls."""

    def __init__(
        self,
        name: str,
        package: str,
        uris: dict[int, str],
        fixed: dict,
        grid: list[Setting],
        names: dict[str, list[str]] | None = None,
    ):
        self.name, self.package, self.uris, self.fixed, self.grid = name, package, uris, fixed, grid
        self.names = names or {}

    def setup(self) -> None:
        ensure_debian(self.package)
        ensure_host()

    def settings(self) -> list[Setting]:
        return [dict(s) for s in self.grid]

    def label(self, setting: Setting) -> str:
        parts = []
        for key, value in setting.items():
            names = self.names.get(key)
            parts.append(names[int(value)] if names else f"{key}={value:g}")
        return " ".join(parts)

    def render(self, audio, sample_rate, setting, tail):
        channels = audio.shape[0]
        if channels not in self.uris and not (channels == 1 and 2 in self.uris):
            raise ValueError(f"{self.name} takes {' or '.join(map(str, self.uris))} channels, not {channels}")
        uri = self.uris.get(channels, self.uris.get(2))
        source = audio if channels in self.uris else np.repeat(audio, 2, axis=0)  # mono through a stereo plugin
        out, reported = lv2_render(uri, source, sample_rate, {**self.fixed, **setting}, tail)
        return out[:channels], reported


LSP_MODES = [
    "Herm Thin",
    "Herm Wide",
    "Herm Tail",
    "Herm Duck",
    "Exp Thin",
    "Exp Wide",
    "Exp Tail",
    "Exp Duck",
    "Line Thin",
    "Line Wide",
    "Line Tail",
    "Line Duck",
]
LSP_HALF_X4_3L = 6  # the "ovs" scale point "Half x4(3L)"


def lsp() -> LV2Peer:
    """LSP Limiter: 12 modes x release 5 / 20 ms, 4x true-peak sidechain, ALR off, threshold 0 dBFS."""
    base = "http://lsp-plug.in/plugins/lv2/limiter_"
    fixed = {
        "enabled": 1,
        "g_in": 1,
        "g_out": 1,
        "th": 1,
        "alr": 0,
        "boost": 0,
        "knee": 1,
        "lk": 5,
        "at": 5,
        "ovs": LSP_HALF_X4_3L,
        "dith": 0,
    }  # stereo link: its default, 100 %
    grid = [{"mode": m, "rt": rt} for rt in (5.0, 20.0) for m in range(12)]
    return LV2Peer("lsp", "lsp-plugins-lv2", {1: base + "mono", 2: base + "stereo"}, fixed, grid, {"mode": LSP_MODES})


def x42() -> LV2Peer:
    """x42-dpl: threshold 0 dBFS, true-peak mode, release 3 .. 300 ms (the port is in seconds)."""
    uri = "http://gareus.org/oss/lv2/dpl#"
    fixed = {"enable": 1, "gain": 0, "threshold": 0, "truepeak": 1}
    grid = [{"release": r} for r in (0.003, 0.01, 0.03, 0.1, 0.3)]
    return LV2Peer("x42", "x42-plugins", {1: uri + "mono", 2: uri + "stereo"}, fixed, grid)


def calf() -> LV2Peer:
    """Calf Limiter: limit 0 dBFS, 5 ms lookahead, oversampling x4, release 10 .. 300 ms x ASC off/on."""
    fixed = {
        "bypass": 0,
        "level_in": 1,
        "level_out": 1,
        "limit": 1,
        "attack": 5,
        "oversampling": 4,
        "auto_level": 1,
        "asc_coeff": 0.5,
    }
    grid = [{"release": r, "asc": a} for a in (0, 1) for r in (10.0, 30.0, 100.0, 300.0)]
    return LV2Peer("calf", "calf-plugins", {2: "http://calf.sourceforge.net/plugins/Limiter"}, fixed, grid)


def zam() -> LV2Peer:
    """ZaMaximX2: threshold and ceiling 0 dB, release 1 .. 100 ms."""
    grid = [{"rel": r} for r in (1.0, 3.0, 10.0, 30.0, 100.0)]
    return LV2Peer("zam", "zam-plugins", {2: "urn:zamaudio:ZaMaximX2"}, {"ceil": 0, "thresh": 0}, grid)


# ---- matchering's Hyrax


def _stub(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def _unavailable(*args, **kwargs):
    raise RuntimeError("not installed: only matchering's limiter is used by this bench")


def import_hyrax() -> tuple[types.ModuleType, types.ModuleType]:
    """``matchering.limiter.hyrax`` and ``matchering.defaults`` (matchering 2.0.6 installed with --no-deps).

    matchering's package ``__init__`` imports its whole pipeline, which needs resampy and statsmodels; the
    limiter never calls them, so when they are missing they are stubbed for the import only."""
    stubs = {}
    if importlib.util.find_spec("resampy") is None:
        stubs["resampy"] = _stub("resampy", resample=_unavailable)
    if importlib.util.find_spec("statsmodels") is None:
        api = _stub("statsmodels.api", nonparametric=None)
        stubs.update({"statsmodels": _stub("statsmodels", api=api), "statsmodels.api": api})
    sys.modules.update({k: v for k, v in stubs.items() if k not in sys.modules})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # scipy.ndimage.filters
            hyrax = ensure_python("matchering.limiter.hyrax", "matchering==2.0.6", no_deps=True)
        return hyrax, importlib.import_module("matchering.defaults")
    finally:
        for name, module in stubs.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


class HyraxPeer(Peer):
    """matchering 2.0.6's Hyrax brickwall limiter (offline, zero-phase attack: no latency)."""

    name = "hyrax"

    def setup(self) -> None:
        self.hyrax, self.defaults = import_hyrax()

    def settings(self) -> list[Setting]:
        return [{"release": r} for r in (3000.0, 1000.0, 300.0, 100.0)]

    def render(self, audio, sample_rate, setting, tail):
        if not hasattr(self, "hyrax"):
            self.setup()
        limiter = self.defaults.LimiterConfig(release=setting["release"])
        config = self.defaults.Config(internal_sample_rate=int(sample_rate), limiter=limiter)
        out = self.hyrax.limit(padded(audio, tail).T.astype(np.float64), config)
        return np.ascontiguousarray(out.T), None


# ---- pedalboard


class PedalboardLimiter(Peer):
    """pedalboard.Limiter (JUCE dsp::Limiter): compressor + limiter + automatic make-up into a 0 dBFS clip."""

    name = "pb-limiter"

    def setup(self) -> None:
        self.pedalboard = ensure_python("pedalboard", "pedalboard==0.9.26")

    def settings(self) -> list[Setting]:
        return [{"threshold_db": t, "release_ms": r} for t in (-10.0, -3.75) for r in (1.0, 3.0, 10.0, 30.0, 100.0)]

    def threshold_db(self, setting: Setting) -> float:
        return setting["threshold_db"]

    def render(self, audio, sample_rate, setting, tail):
        if not hasattr(self, "pedalboard"):
            self.setup()
        plugin = self.pedalboard.Limiter(**setting)
        return plugin.process(padded(audio, tail), float(sample_rate)), None


class PedalboardBrickwall(Peer):
    """pedalboard.BrickwallLimiter: ceiling 0 dBFS, 5 ms lookahead, sample-peak or 4x true-peak detection."""

    name = "pb-brickwall"

    def setup(self) -> None:
        self.pedalboard = ensure_python("pedalboard", "pedalboard==0.9.26")

    def settings(self) -> list[Setting]:
        return [{"release_ms": r, "true_peak": tp} for tp in (True, False) for r in (3.0, 10.0, 30.0, 100.0)]

    def render(self, audio, sample_rate, setting, tail):
        if not hasattr(self, "pedalboard"):
            self.setup()
        plugin = self.pedalboard.BrickwallLimiter(ceiling_db=0.0, lookahead_ms=5.0, **setting)
        return plugin.process(padded(audio, tail), float(sample_rate)), None


# ---- ffmpeg loudnorm


def _ffmpeg_json(stderr: str) -> dict:
    """The last JSON object loudnorm printed on stderr."""
    start = stderr.rfind("{")
    end = stderr.rfind("}")
    if start < 0 or end < start:
        raise RuntimeError(f"ffmpeg printed no loudnorm statistics: {stderr.strip()[-300:]}")
    return json.loads(stderr[start : end + 1])


class Loudnorm(Peer):
    """ffmpeg's loudnorm, two-pass with linear=true; it targets by itself (no drive)."""

    name = "loudnorm"
    self_targeting = True

    def setup(self) -> None:
        ensure_debian("ffmpeg")

    def settings(self) -> list[Setting]:
        return [{"LRA": 11.0}, {"LRA": 50.0}]

    def run(
        self, audio: np.ndarray, sample_rate: int, lufs: float, ceiling: float, setting: Setting
    ) -> tuple[np.ndarray, str]:
        """Two passes over ``audio`` (C, T): the output (C, T') at ``sample_rate`` and the mode it used."""
        target = f"I={lufs:g}:TP={ceiling:g}:LRA={setting['LRA']:g}"
        with tempfile.TemporaryDirectory(prefix="loudnorm") as tmp:
            src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
            sf.write(src, np.asarray(audio, dtype=np.float32).T, sample_rate, subtype="FLOAT")
            base = ["ffmpeg", "-hide_banner", "-nostats", "-nostdin", "-y", "-i", str(src)]
            first = subprocess.run(
                [*base, "-af", f"loudnorm={target}:print_format=json", "-f", "null", "-"],
                capture_output=True,
                text=True,
            )
            m = _ffmpeg_json(first.stderr)
            measured = (
                f"measured_I={m['input_i']}:measured_TP={m['input_tp']}:measured_LRA={m['input_lra']}:"
                f"measured_thresh={m['input_thresh']}:offset={m['target_offset']}"
            )
            second = subprocess.run(
                [
                    *base,
                    "-af",
                    f"loudnorm={target}:{measured}:linear=true:print_format=json",
                    "-ar",
                    str(sample_rate),
                    "-c:a",
                    "pcm_f32le",
                    str(dst),
                ],
                capture_output=True,
                text=True,
            )
            if second.returncode != 0:
                raise RuntimeError(f"ffmpeg loudnorm failed: {second.stderr.strip()[-300:]}")
            mode = _ffmpeg_json(second.stderr).get("normalization_type", "?")
            out, _ = sf.read(dst, dtype="float64", always_2d=True)
        return out.T, mode

    def render(self, audio, sample_rate, setting, tail):
        raise NotImplementedError("loudnorm is driven by its own targets: see drive_to_target")


PEERS: dict[str, Callable[[], Peer]] = {
    "lsp": lsp,
    "x42": x42,
    "calf": calf,
    "zam": zam,
    "hyrax": HyraxPeer,
    "pb-limiter": PedalboardLimiter,
    "pb-brickwall": PedalboardBrickwall,
    "loudnorm": Loudnorm,
}


# ---------------------------------------------------------------------------------------------------- targeting


@dataclass
class TargetResult:
    """A peer's output at the target: ``audio`` (C, T) float64 (None when dropped to save memory), its LUFS
    and dBTP, the setting and drive (dB) used, renders and wall seconds spent, whether it is on target
    (|LUFS - target| <= tol and TP <= ceiling + tol), the latency, a note, and the search's score."""

    audio: np.ndarray | None
    lufs: float
    true_peak_dbtp: float
    setting: Setting
    drive_db: float
    renders: int
    seconds: float
    on_target: bool
    latency_samples: Latency | None
    note: str = ""
    score: float = math.nan
    label: str = ""


@dataclass
class _Point:
    drive_db: float
    excess: float  # (LUFS - TP) - (lufs - ceiling): > 0 denser than the target
    lufs: float
    true_peak: float
    audio: np.ndarray = field(repr=False)


def _rank(point: _Point, tol: float) -> tuple:
    """Best first: within tolerance (smallest |excess|), then too dense (ceiling not reached: still legal),
    then too sparse (largest excess)."""
    if abs(point.excess) <= tol:
        return 0, abs(point.excess)
    return (1, point.excess) if point.excess > 0 else (2, -point.excess)


def _bracket(evaluate, d0: float, f0: float, tol: float, lo: float, hi: float, idle: float):
    """Step the drive from ``d0`` (doubling steps) until the excess changes sign: ((a, fa), (b, fb)), or None
    when the tolerance is met, the drive range is exhausted, the peer has gone idle (going down, the excess is
    back at ``idle``, the input's own) or has stopped densifying (going up, two steps in a row without the
    excess passing its largest so far: saturated, or past a maximum)."""
    a, fa = d0, f0
    direction = 1.0 if f0 < 0 else -1.0
    step, stalls, densest = max(abs(f0), 0.5), 0, f0
    while True:
        b = min(max(a + direction * step, lo), hi)
        if b == a:
            return None
        fb = evaluate(b)
        if abs(fb) <= tol:
            return None
        if (fb > 0) != (fa > 0):
            return (a, fa), (b, fb)
        stalls = stalls + 1 if direction > 0 and fb < densest + 0.01 and fb > idle + 0.1 else 0
        if (direction < 0 and abs(fb - idle) < 0.02) or stalls == 2:
            return None
        a, fa, step, densest = b, fb, step * 2, max(densest, fb)


def _illinois(evaluate, a: float, fa: float, b: float, fb: float, tol: float, budget: Callable[[], bool]):
    """Illinois (modified regula falsi) search for excess = 0 between drives a and b of opposite signs."""
    side = 0
    while budget() and abs(b - a) > 1e-3:
        c = b - fb * (b - a) / (fb - fa)
        fc = evaluate(c)
        if abs(fc) <= tol:
            return
        if (fc > 0) == (fb > 0):
            b, fb = c, fc
            fa = fa / 2 if side == -1 else fa
            side = -1
        else:
            a, fa = c, fc
            fb = fb / 2 if side == 1 else fb
            side = 1


def _check_target(lufs: float, ceiling: float) -> None:
    if not (math.isfinite(lufs) and math.isfinite(ceiling) and ceiling <= 0 and lufs < ceiling):
        raise ValueError(f"target {lufs} LUFS / {ceiling} dBTP: need a finite ceiling <= 0 and lufs < ceiling")


def _finish(
    point: _Point, lufs: float, ceiling: float, tol: float, sample_rate: int, verify: bool
) -> tuple[np.ndarray, float, float]:
    """Output gain: the loudness on ``lufs``, or the true peak on the ceiling when that would exceed it."""
    gain = lufs - point.lufs if point.excess >= -tol else ceiling - point.true_peak
    audio = point.audio * 10 ** (gain / 20)
    if verify:
        return (audio, *measure(audio, sample_rate))
    return audio, point.lufs + gain, point.true_peak + gain


def drive_to_target(
    peer: Peer,
    audio: np.ndarray,
    sample_rate: int,
    lufs: float,
    ceiling_dbtp: float,
    setting: Setting,
    tol_lu: float = TOL_LU,
    *,
    start_db: float | None = None,
    verify: bool = True,
    input_level: tuple[float, float] | None = None,
) -> TargetResult:
    """``peer`` at ``setting`` driven so that its output (C, T) has ``lufs`` LUFS with its true peak on
    ``ceiling_dbtp`` (see the module docstring). ``start_db``: a first guess of the drive (dB), e.g. another
    setting's; ``verify``: re-measure the final output rather than predict it from the gain; ``input_level``:
    the input's (LUFS, dBTP) when already measured."""
    _check_target(lufs, ceiling_dbtp)
    start = time.perf_counter()
    if peer.self_targeting:
        return _self_targeted(peer, audio, sample_rate, lufs, ceiling_dbtp, setting, tol_lu, start)
    latency = peer.latency(sample_rate, audio.shape[0], setting)
    want = lufs - ceiling_dbtp
    points: list[_Point] = []
    best: list[_Point] = []

    def evaluate(drive: float) -> float:
        out = peer.process(audio, sample_rate, drive, setting)
        level, peak = measure(out, sample_rate)
        if not (math.isfinite(level) and math.isfinite(peak)):
            raise RuntimeError(f"{peer.name} {peer.label(setting)}: silent or non-finite output at {drive:+.2f} dB")
        point = _Point(drive, (level - peak) - want, level, peak, out)
        points.append(point)
        if not best or _rank(point, tol_lu) < _rank(best[0], tol_lu):
            if best:
                best[0].audio = None  # one (C, T) float64 kept at a time
            best[:] = [point]
        else:
            point.audio = None
        return point.excess

    input_lufs, input_peak = input_level or measure(audio, sample_rate)
    guess = want - input_lufs + peer.threshold_db(setting) + 1.0
    d0 = guess if start_db is None else start_db
    lo, hi = min(guess, d0) - DRIVE_SPAN_DB, max(guess, d0) + DRIVE_SPAN_DB
    f0 = evaluate(d0)
    if abs(f0) > tol_lu:
        bracket = _bracket(evaluate, d0, f0, tol_lu, lo, hi, idle=(input_lufs - input_peak) - want)
        if bracket:
            (a, fa), (b, fb) = bracket
            _illinois(evaluate, a, fa, b, fb, tol_lu, lambda: len(points) < MAX_RENDERS)
    point = best[0]
    out, level, peak = _finish(point, lufs, ceiling_dbtp, tol_lu, sample_rate, verify)
    on_target = abs(level - lufs) <= tol_lu and peak <= ceiling_dbtp + tol_lu
    note = (
        ""
        if on_target
        else (
            f"off target: peak-to-loudness {point.excess + want:.2f} dB at best "
            f"(target {want:.2f}) within drives {lo:+.1f}..{hi:+.1f} dB"
        )
    )
    return TargetResult(
        out,
        level,
        peak,
        dict(setting),
        point.drive_db,
        len(points),
        time.perf_counter() - start,
        on_target,
        latency,
        note,
        label=peer.label(setting),
    )


def _self_targeted(
    peer: Peer,
    audio: np.ndarray,
    sample_rate: int,
    lufs: float,
    ceiling: float,
    setting: Setting,
    tol: float,
    start: float,
) -> TargetResult:
    """A peer that takes the target itself (loudnorm): aligned on its own output, reported as it lands."""
    out, mode = peer.run(audio, sample_rate, lufs, ceiling, setting)
    if out.shape[0] != audio.shape[0]:
        raise RuntimeError(f"{peer.name} returned {out.shape[0]} channels for {audio.shape[0]}")
    lag, clarity = cross_lag(np.asarray(audio, dtype=np.float64), out, int(MAX_LAG_S * sample_rate))
    out = shift(out, lag, audio.shape[1])
    level, peak = measure(out, sample_rate)
    on_target = abs(level - lufs) <= tol and peak <= ceiling + tol
    note = f"{mode} mode" + ("" if on_target else f"; off target by {level - lufs:+.2f} LU, TP {peak:+.2f}")
    return TargetResult(
        out,
        level,
        peak,
        dict(setting),
        0.0,
        2,
        time.perf_counter() - start,
        on_target,
        Latency(lag, None, clarity),
        note,
        label=peer.label(setting),
    )


def _failed(peer: Peer, setting: Setting, error: Exception, start: float) -> TargetResult:
    return TargetResult(
        None,
        math.nan,
        math.nan,
        dict(setting),
        math.nan,
        0,
        time.perf_counter() - start,
        False,
        None,
        f"failed: {error}",
        math.inf,
        peer.label(setting),
    )


def search(
    peer: Peer,
    audio: np.ndarray,
    sample_rate: int,
    lufs: float,
    ceiling_dbtp: float,
    score: Score = plain_drl,
    *,
    tol_lu: float = TOL_LU,
    log: Callable[[str], None] | None = None,
) -> list[TargetResult]:
    """Every setting of ``peer`` driven to the target and scored by ``score(reference, output)`` (lower is
    better), best first (on-target results before the others). Only the best keeps its audio, re-measured."""
    input_level = measure(audio, sample_rate)
    results: list[TargetResult] = []
    above = None  # the last on-target drive over the peer's threshold (dB): the next setting's first guess
    for setting in peer.settings():
        start = time.perf_counter()
        try:
            guess = None if above is None else above + peer.threshold_db(setting)
            result = drive_to_target(
                peer,
                audio,
                sample_rate,
                lufs,
                ceiling_dbtp,
                setting,
                tol_lu,
                start_db=guess,
                verify=False,
                input_level=input_level,
            )
            result.score = score(audio, result.audio)
            result.seconds = time.perf_counter() - start
            if result.on_target and not peer.self_targeting:
                above = result.drive_db - peer.threshold_db(setting)
        except (RuntimeError, ValueError) as error:
            result = _failed(peer, setting, error, start)
        if log:
            log(
                f"  {peer.name:12s} {result.label:24s} drive {result.drive_db:+7.2f} dB  LUFS {result.lufs:7.2f}  "
                f"dBTP {result.true_peak_dbtp:+6.2f}  score {result.score:8.3f}  renders {result.renders:2d}  "
                f"{result.seconds:5.1f} s {result.note}"
            )
        results.append(result)
        _keep_best_audio(results, lufs)
    results.sort(key=lambda r: _order(r, lufs))
    best = results[0]
    if best.audio is not None and not peer.self_targeting:
        best.lufs, best.true_peak_dbtp = measure(best.audio, sample_rate)
        best.on_target = abs(best.lufs - lufs) <= tol_lu and best.true_peak_dbtp <= ceiling_dbtp + tol_lu
    return results


def _order(result: TargetResult, lufs: float) -> tuple:
    """Sort key, best first: on target by score; then off target, closest to ``lufs`` first, then by score."""
    score = result.score if math.isfinite(result.score) else math.inf
    if result.on_target:
        return 0, 0.0, score
    miss = abs(result.lufs - lufs) if math.isfinite(result.lufs) else math.inf
    return 1, round(miss / TOL_LU), score


def _keep_best_audio(results: list[TargetResult], lufs: float) -> None:
    """Drop the audio of every result but the best so far (memory: one (C, T) float64 per peer)."""
    ranked = sorted(results, key=lambda r: _order(r, lufs))
    for result in ranked[1:]:
        result.audio = None


# ---------------------------------------------------------------------------------------------------- CLI


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line on stderr, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def read_input(path: str) -> tuple[np.ndarray, int]:
    """A wav as (C, T) float64 and its rate; ValueError with a one-line reason when unusable."""
    try:
        data, rate = sf.read(path, dtype="float64", always_2d=True)
    except Exception as error:  # soundfile raises several types for unreadable files
        raise ValueError(f"cannot read {path}: {str(error).splitlines()[0]}") from None
    audio = data.T
    if audio.shape[0] not in (1, 2):
        raise ValueError(f"{path}: {audio.shape[0]} channels (mono or stereo only)")
    if audio.shape[1] < rate:
        raise ValueError(f"{path}: shorter than 1 s")
    if not np.isfinite(audio).all():
        raise ValueError(f"{path}: contains NaN or Inf")
    if not math.isfinite(measure(audio, rate)[0]):
        raise ValueError(f"{path}: silent (no block passes the loudness gates)")
    return audio, rate


def _haaqi_scorer(enabled: bool):
    """bench/haaqi.py's ``score`` when asked for and importable, else None (with a one-line note)."""
    if not enabled:
        return None
    try:
        return importlib.import_module("haaqi").score
    except Exception as error:
        print(f"note: --haaqi skipped: bench/haaqi.py not importable ({error})", file=sys.stderr)
        return None


def _entry(
    result: TargetResult, results: list[TargetResult], plain: float, score_name: str, haaqi: float | None
) -> dict:
    latency = result.latency_samples
    return {
        "setting": result.setting,
        "label": result.label,
        "drive_db": result.drive_db,
        "lufs": result.lufs,
        "true_peak_dbtp": result.true_peak_dbtp,
        "drl_db": plain,
        "score": result.score,
        "score_name": score_name,
        "haaqi": haaqi,
        "on_target": result.on_target,
        "note": result.note,
        "latency_measured": latency.measured if latency else None,
        "latency_reported": latency.reported if latency else None,
        "seconds": sum(r.seconds for r in results),
        "renders": sum(r.renders for r in results),
        "grid": [
            {
                "label": r.label,
                "drive_db": r.drive_db,
                "lufs": r.lufs,
                "true_peak_dbtp": r.true_peak_dbtp,
                "score": r.score,
                "on_target": r.on_target,
                "renders": r.renders,
                "seconds": r.seconds,
                "latency_measured": r.latency_samples.measured if r.latency_samples else None,
                "latency_reported": r.latency_samples.reported if r.latency_samples else None,
                "note": r.note,
            }
            for r in results
        ],
    }


def keep_freed_memory() -> None:
    """Ask glibc to keep freed blocks up to 1 GiB instead of unmapping them: the meters allocate and free
    hundreds of MB per render, and the page faults of re-mapping them cost more than the metering (Linux only;
    a no-op elsewhere)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def _json_ready(value):
    """``value`` with non-finite floats as None and numpy scalars as Python numbers (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value.item() if isinstance(value, np.generic) else value


def _fmt(value, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def _table(report: dict) -> str:
    """The printed summary: one line per peer."""
    lines = [
        f"{'peer':13s} {'best setting':32s} {'LUFS':>7s} {'dBTP':>6s} {'DRL':>7s} {'score':>7s} "
        f"{'HAAQI':>6s} {'s':>6s}  on target"
    ]
    for name, e in report.items():
        cells = [
            _fmt(e["lufs"], "7.2f"),
            _fmt(e["true_peak_dbtp"], "+6.2f"),
            _fmt(e["drl_db"], "7.2f"),
            _fmt(e["score"], "7.2f"),
            _fmt(e["haaqi"], "6.3f").rjust(6),
            f"{e['seconds']:6.1f}",
        ]
        verdict = "yes" if e["on_target"] else "NO: " + e["note"]
        lines.append(f"{name:13s} {e['label'][:32]:32s} {' '.join(cells)}  {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="a mono or stereo wav")
    parser.add_argument("--lufs", type=float, default=-9.0, help="integrated loudness target (LUFS)")
    parser.add_argument("--ceiling", type=float, default=-1.0, help="true-peak ceiling (dBTP)")
    parser.add_argument("--out", type=Path, help="output folder (default bench/_study/peers/<input>_<target>)")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, from {','.join(PEERS)}")
    parser.add_argument("--score", choices=("drl", "nmr"), default="drl", help="the search's score (lower wins)")
    parser.add_argument("--haaqi", action="store_true", help="also score each chosen output with bench/haaqi.py")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for the meters")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.peers.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown or not names:
        parser.error(f"unknown peer(s) {','.join(unknown) or '(none)'}; choose from {','.join(PEERS)}")
    if args.score == "nmr" and not hasattr(drl, "nmr_db"):
        parser.error("--score nmr needs drl.nmr_db, which this drl does not have")
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    try:
        _check_target(args.lufs, args.ceiling)
        audio, rate = read_input(args.input)
    except ValueError as error:
        parser.error(str(error))
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    out = args.out or DEFAULT_OUT / f"{Path(args.input).stem}_{args.lufs:g}LUFS_{args.ceiling:g}dBTP"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"cannot create the output folder {out}: {error.strerror}")
    score = plain_drl if args.score == "drl" else nmr_score(rate)
    haaqi = _haaqi_scorer(args.haaqi)
    report = {}
    for name in names:
        peer = PEERS[name]()
        peer.setup()
        print(f"{name}: {len(peer.settings())} settings", file=sys.stderr)
        results = search(
            peer, audio, rate, args.lufs, args.ceiling, score, log=lambda line: print(line, file=sys.stderr)
        )
        best = results[0]
        plain = plain_drl(audio, best.audio) if best.audio is not None else math.nan
        quality = haaqi(audio, best.audio, rate) if haaqi and best.audio is not None else None
        if best.audio is not None:
            sf.write(out / f"{name}.wav", best.audio.T.astype(np.float32), rate, subtype="FLOAT")
        report[name] = _entry(best, results, plain, args.score, quality)
        (out / "peers.json").write_text(json.dumps(_json_ready(report), indent=1, allow_nan=False) + "\n")
    print(f"{Path(args.input).name}: {args.lufs:g} LUFS, {args.ceiling:g} dBTP -> {out}")
    print(_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
