"""Which distortion measure agrees with listeners? Processors at equal loudness, scored by HAAQI and by each
candidate measure, ranked against each other per track and target (Kendall tau).

    python bench/perceptual_study.py [--tracks A,B] [--targets -14 -9] [--ceiling -1] [--stages render,score,report]
        [--skip-peers] [--skip-tuned]

Tracks: 30 s excerpts (the loudest 30 s, 48 kHz) of produced music from Debian's game-music packages, fetched
into the git-ignored bench/_music/ at run time; five with little energy below 20 Hz and one with a large share
(a DC offset and slow drifts). Every output lands on the target's integrated loudness (0.05 LU) with its true
peak at or under the ceiling:

- our processors: hard clip and tanh (drive solved by bench/peers.py's peak-to-loudness-ratio solve, then a
  gain), the project's lookahead brickwall (true peak, 5 ms lookahead) at 1, 10 and 100 ms release, with a
  two-stage release (10 ms fast, 1 s slow), a compressor (2:1 at the 90th percentile of 50 ms RMS, 10/150 ms)
  before it, and the tuning job (`train.py`) with each loss;
- the established limiters of bench/peers.py, each at its best setting: the settings are ranked by the
  selection measure (``--select``) and the best HAAQI_CANDIDATES of them scored by HAAQI, the best kept;
- ffmpeg's loudnorm as users run it (it may land off target, and is then left out of the rankings).

Stages (each resumes where the files exist): ``render`` writes bench/_study/<track>/<target>/<name>.wav and
its manifest.json; ``score`` adds HAAQI (bench/haaqi.py, cached) and every candidate measure to scores.json;
``report`` prints Markdown tables: Kendall tau per measure and case, how often each measure orders the pairs
HAAQI clearly tells apart as HAAQI does, the tuned job against the best peer, and every score.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import haaqi  # noqa: E402
import music  # noqa: E402
import peers  # noqa: E402

import drl  # noqa: E402
from processors import Chain, Compressor, Gain, Limiter  # noqa: E402
from processors.functional import subsonic  # noqa: E402
from tuning.audio import needs_subsonic  # noqa: E402
from tuning.build import level_statistics  # noqa: E402
from tuning.objective import LossWeights, Target, distortion_measures  # noqa: E402
from tuning.solve import solve_target  # noqa: E402

STUDY = Path(__file__).resolve().parent / "_study"
RATE = 48_000
SECONDS = 30.0
#: label -> (Debian package, file inside it). Their loudest 30 s have a peak-to-loudness ratio of 13.5 to 19 dB,
#: so the -14 LUFS / -1 dBTP target needs peak reduction too; the last holds 38 % of its energy below 20 Hz.
TRACKS = {
    "drascula5": ("drascula-music", "usr/share/scummvm/drascula/audio/track5.ogg"),
    "drascula1": ("drascula-music", "usr/share/scummvm/drascula/audio/track1.ogg"),
    "wz-original1": ("warzone2100-music", "usr/share/games/warzone2100/music/albums/original_soundtrack/track1.opus"),
    "wz-aftermath27": (
        "warzone2100-music",
        "usr/share/games/warzone2100/music/albums/aftermath_soundtrack/track27.opus",
    ),
    "hr-desert": ("hyperrogue-music", "usr/share/hyperrogue/music/hr3-desert.ogg"),
    "wz-legacy8": ("warzone2100-music", "usr/share/games/warzone2100/music/albums/legacy_soundtrack/track8.opus"),
}
PEERS = ("lsp", "x42", "calf", "zam", "hyrax", "pb-limiter", "pb-brickwall", "loudnorm")
HAAQI_CANDIDATES = 1  # settings of each peer scored by HAAQI (the best by the selection measure)
TIE = 0.005  # HAAQI differences below this are ties
CLEAR = 0.02  # HAAQI differences from this up are clear
DISCRIMINATES = 0.1  # a case whose outputs' HAAQI spreads this much or more tells them apart


# ------------------------------------------------------------------------------------------------ inputs
def excerpt_path(label: str) -> Path:
    """The study's input for ``label``: its loudest 30 s at 48 kHz (input_raw.wav), conditioned as the tuning job
    conditions inputs that need it (DC and infrasound removed, tuning.audio.needs_subsonic): every processor,
    ours and the peers, gets the same input, and every measure and HAAQI compare against it."""
    path = STUDY / label / "input.wav"
    if not path.exists():
        package, inner = TRACKS[label]
        raw = music.excerpt(music.unpack(package) / inner, SECONDS, RATE, out=STUDY / label / "input_raw.wav")
        audio = torch.from_numpy(read(raw))
        if needs_subsonic(audio, RATE):
            audio = subsonic(audio, RATE)
        write(path, audio.numpy())
    return path


def read(path: Path) -> np.ndarray:
    data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    if rate != RATE:
        raise SystemExit(f"{path}: {rate} Hz, expected {RATE}")
    return np.ascontiguousarray(data.T)


def write(path: Path, audio: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(audio, dtype=np.float64).T, RATE, subtype="FLOAT")


# ------------------------------------------------------------------------------------------------ renders
class Waveshaper(peers.Peer):
    """A memoryless clipper as a black-box peer (no latency, no settings): driven to the target like the rest."""

    def __init__(self, name: str, curve) -> None:
        self.name, self.curve = name, curve

    def render(self, audio, sample_rate, setting, tail):
        return self.curve(peers.padded(audio, tail).astype(np.float64)), None


CLIPPERS = (Waveshaper("hard-clip", lambda x: np.clip(x, -1.0, 1.0)), Waveshaper("tanh", np.tanh))


def _limiter_chain(
    audio: torch.Tensor, target: Target, release_ms: float, slow_release_ms=None, compressor: bool = False
) -> Chain:
    gain_db = Gain.spec_of("gain_db").clamp(target.lufs - float(drl.integrated_loudness(audio, RATE)))
    stages = {"gain": Gain(RATE, gain_db=gain_db)}
    if compressor:
        threshold = level_statistics(audio * 10 ** (stages["gain"].values()["gain_db"] / 20), RATE).rms_p90_dbfs
        stages["compressor"] = Compressor(
            RATE, threshold_db=min(max(threshold, -60.0), 0.0), ratio=2.0, knee_db=6.0, attack_ms=10.0, release_ms=150.0
        )
    stages["limiter"] = Limiter(
        RATE,
        ceiling_db=target.ceiling_dbtp,
        release_ms=release_ms,
        lookahead_ms=5.0,
        true_peak=True,
        slow_release_ms=slow_release_ms,
    )
    return Chain(stages).double()


OURS = {
    "brickwall-1ms": dict(release_ms=1.0),
    "brickwall-10ms": dict(release_ms=10.0),
    "brickwall-100ms": dict(release_ms=100.0),
    "two-stage": dict(release_ms=10.0, slow_release_ms=1000.0),
    "comp+limiter": dict(release_ms=30.0, compressor=True),
}
#: name -> train.py overrides (besides the track and the target); "tuned" is the default job.
TUNED = {"tuned-plain": ["loss=plain"], "tuned-transparent": ["loss=transparent"], "tuned": []}


def render_case(label: str, lufs: float, ceiling: float, skip_peers: bool, skip_tuned: bool, select) -> None:
    folder = STUDY / label / f"{lufs:g}"
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    source = excerpt_path(label)
    audio = read(source)
    target = Target(lufs, ceiling)

    def done(name: str, out: np.ndarray, info: dict) -> None:
        write(folder / f"{name}.wav", out)
        level, peak = peers.measure(out, RATE)
        manifest[name] = {
            **info,
            "lufs": level,
            "true_peak_dbtp": peak,
            "on_target": abs(level - lufs) <= peers.TOL_LU and peak <= ceiling + peers.TOL_LU,
        }
        manifest_path.write_text(json.dumps(manifest, indent=1))
        print(
            f"  {label} {lufs:g}: {name:18s} LUFS {level:7.2f} dBTP {peak:6.2f}  {info.get('seconds', 0):6.1f} s",
            flush=True,
        )

    for peer in CLIPPERS:
        if peer.name not in manifest:
            clock = time.perf_counter()
            result = peers.drive_to_target(peer, audio, RATE, lufs, ceiling, {})
            done(peer.name, result.audio, {"drive_db": result.drive_db, "seconds": time.perf_counter() - clock})
    x = torch.from_numpy(audio)
    for name, options in OURS.items():
        if name not in manifest:
            clock = time.perf_counter()
            chain = _limiter_chain(x, target, **options)
            with torch.no_grad():
                solution = solve_target(chain, x, RATE, target, "gain.gain_db", "limiter.ceiling_db", tol_lu=0.001)
            done(name, solution.output.numpy(), {"values": solution.values, "seconds": time.perf_counter() - clock})
    if not skip_tuned:
        for name, overrides in TUNED.items():
            if name not in manifest:
                clock = time.perf_counter()
                run = folder / "runs" / name
                # the input is conditioned already where the job would condition it (excerpt_path)
                metrics = music.tune(
                    source,
                    run,
                    f"target.lufs={lufs}",
                    f"target.ceiling_dbtp={ceiling}",
                    "subsonic.mode=off",
                    *overrides,
                )
                out = read(run / "processed" / f"{source.stem}.wav")
                done(name, out, {"selected": metrics.get("selected"), "seconds": time.perf_counter() - clock})
    if not skip_peers:
        for name in PEERS:
            if name in manifest:
                continue
            peer = peers.PEERS[name]()
            peer.setup()
            clock = time.perf_counter()
            ranked = peers.search(peer, audio, RATE, lufs, ceiling, select)
            candidates = [r for r in ranked if r.on_target][:HAAQI_CANDIDATES] or ranked[:1]
            best = None
            for result in candidates:
                if result.audio is None:
                    result = peers.drive_to_target(peer, audio, RATE, lufs, ceiling, result.setting)
                value = haaqi.score(audio, result.audio, RATE)
                if best is None or value > best[0]:
                    best = (value, result)
            result = best[1]
            done(
                name,
                result.audio,
                {
                    "setting": result.label,
                    "drive_db": result.drive_db,
                    "searched": len(ranked),
                    "seconds": time.perf_counter() - clock,
                    "peer_on_target": result.on_target,
                },
            )


def frame_score(reference: np.ndarray, output: np.ndarray) -> float:
    """Frame-wise DRL (50 ms), dB: a peer's settings are ranked by it before HAAQI scores the best."""
    return float(drl.frame_drl_db(torch.from_numpy(reference), torch.from_numpy(output), RATE, 50.0).mean())


# ------------------------------------------------------------------------------------------------ scores
def measures(reference: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """Every candidate measure of ``output`` against ``reference``, dB (lower is cleaner)."""
    x, y = torch.from_numpy(reference), torch.from_numpy(output)
    out = {}
    bands = LossWeights(bands={"20_200": 0.25, "200_2000": 0.5, "2000_20000": 0.25})
    for key, value in distortion_measures(x, y, RATE, bands).items():
        out[key] = float(value)
    out["bands_objective_db"] = out.pop("objective_drl_db")
    transparent = LossWeights(drl=0.25, bands={"200_2000": 0.25}, frame=0.5)
    out["transparent_objective_db"] = float(transparent.objective_drl_db(distortion_measures(x, y, RATE, transparent)))
    for name, fn in candidate_measures().items():
        out[name] = float(fn(x, y))
    return out


def candidate_measures() -> dict:
    """The auditory measures under study: name -> fn(reference, processed) -> dB (mean over channels)."""
    out = {}
    if hasattr(drl, "nmr_db"):
        out["nmr_db"] = lambda x, y: drl.nmr_db(x, y, RATE).mean()
    return out


def score_all(labels, targets) -> dict:
    path = STUDY / "scores.json"
    scores = json.loads(path.read_text()) if path.exists() else {}
    for label, lufs in itertools.product(labels, targets):
        folder = STUDY / label / f"{lufs:g}"
        manifest = json.loads((folder / "manifest.json").read_text())
        reference = read(STUDY / label / "input.wav")
        case = scores.setdefault(f"{label} {lufs:g}", {})
        for name, info in manifest.items():
            output = read(folder / f"{name}.wav")
            entry = case.setdefault(name, {})
            if "haaqi" not in entry:
                entry["haaqi"] = haaqi.score(reference, output, RATE)
            entry.update(measures(reference, output))
            entry["on_target"] = info["on_target"]
            print(f"  {label} {lufs:g} {name:18s} HAAQI {entry['haaqi']:.3f}  DRL {entry['drl_db']:7.2f}", flush=True)
        path.write_text(json.dumps(scores, indent=1))
    return scores


# ------------------------------------------------------------------------------------------------ report
def kendall_tau(referee: list[float], measure: list[float], tie: float = TIE) -> float:
    """Kendall's tau-b between the referee (higher is better) and minus the measure (lower is better); referee
    values closer than ``tie`` count as tied."""
    concordant = discordant = tied_referee = tied_measure = 0
    for i, j in itertools.combinations(range(len(referee)), 2):
        a = referee[i] - referee[j]
        b = measure[j] - measure[i]
        if abs(a) < tie or a == 0:
            tied_referee += 1
            if b == 0:
                tied_measure += 1
            continue
        if b == 0:
            tied_measure += 1
        elif a * b > 0:
            concordant += 1
        else:
            discordant += 1
    pairs = len(referee) * (len(referee) - 1) // 2
    denominator = math.sqrt((pairs - tied_referee) * (pairs - tied_measure))
    return (concordant - discordant) / denominator if denominator else math.nan


#: The measures the report shows (scores.json holds more: every band of the default bands).
MEASURES = (
    "drl_db",
    "band_drl_db/200_2000",
    "frame_drl_db",
    "bands_objective_db",
    "transparent_objective_db",
    "nmr_db",
)


def agreement(scores: dict, names=MEASURES) -> str:
    """Kendall tau-b of each measure with HAAQI per case (outputs on target; nan where HAAQI ties every pair),
    with HAAQI's spread (best minus worst output); summaries over every case HAAQI does not tie and over the
    cases where it spreads by DISCRIMINATES or more, Markdown."""
    lines = ["| case | outputs | HAAQI spread | " + " | ".join(names) + " |", "|---" * (len(names) + 3) + "|"]
    taus = {name: [] for name in names}
    spreads = []
    for case, entries in scores.items():
        kept = [v for v in entries.values() if v.get("on_target")]
        referee = [v["haaqi"] for v in kept]
        spreads.append(max(referee) - min(referee))
        row = []
        for name in names:
            taus[name].append(kendall_tau(referee, [v[name] for v in kept]))
            row.append(f"{taus[name][-1]:.2f}")
        lines.append(f"| {case} | {len(kept)} | {spreads[-1]:.3f} | " + " | ".join(row) + " |")
    wide = [spread >= DISCRIMINATES for spread in spreads]
    for label, summary, chosen in (
        ("mean", statistics.fmean, None),
        ("lowest", min, None),
        (f"mean, spread >= {DISCRIMINATES:g}", statistics.fmean, wide),
        (f"lowest, spread >= {DISCRIMINATES:g}", min, wide),
    ):

        def kept_taus(name):
            return [t for i, t in enumerate(taus[name]) if not math.isnan(t) and (chosen is None or chosen[i])]

        lines.append(f"| {label} | | | " + " | ".join(f"{summary(kept_taus(n)):.2f}" for n in names) + " |")
    return "\n".join(lines)


def clear_pairs(scores: dict, names=MEASURES) -> str:
    """For the pairs of outputs (on target, same case) whose HAAQI differs by CLEAR or more: how often each
    measure orders them as HAAQI does, per target and overall, Markdown."""
    targets = sorted({case.split()[1] for case in scores}, key=float)
    counts = {(name, group): [0, 0] for name in names for group in [*targets, "all"]}
    for case, entries in scores.items():
        kept = [v for v in entries.values() if v.get("on_target")]
        for a, b in itertools.combinations(kept, 2):
            if abs(a["haaqi"] - b["haaqi"]) < CLEAR:
                continue
            better, worse = (a, b) if a["haaqi"] > b["haaqi"] else (b, a)
            for name in names:
                for group in (case.split()[1], "all"):
                    counts[name, group][0] += better[name] < worse[name]
                    counts[name, group][1] += 1
    lines = ["| pairs | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for group in [*targets, "all"]:
        total = counts[names[0], group][1]
        label = f"{group} LUFS ({total})" if group != "all" else f"all ({total})"
        lines.append(
            f"| {label} | " + " | ".join(f"{100 * counts[n, group][0] / max(total, 1):.0f} %" for n in names) + " |"
        )
    return "\n".join(lines)


def details(scores: dict, names=MEASURES) -> str:
    """Every output of every case, best HAAQI first, with each measure, Markdown."""
    lines = []
    for case, entries in scores.items():
        lines += [f"**{case}**", "", "| output | HAAQI | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
        for name, v in sorted(entries.items(), key=lambda kv: -kv[1]["haaqi"]):
            mark = "" if v.get("on_target") else " (off target)"
            lines.append(f"| {name}{mark} | {v['haaqi']:.3f} | " + " | ".join(f"{v[m]:.2f}" for m in names) + " |")
        lines.append("")
    return "\n".join(lines)


def against_peers(scores: dict) -> str:
    """The tuned job (default loss) against the best established limiter on target, per case, Markdown."""
    lines = [
        "| track | target | tuned: HAAQI | plain DRL | NMR | best peer on target | HAAQI | plain DRL | NMR | "
        "margin | `loss=plain`: HAAQI |",
        "|---" * 11 + "|",
    ]
    for case, entries in scores.items():
        label, lufs = case.split()
        tuned = entries["tuned"]
        on_target = {k: v for k, v in entries.items() if k in PEERS and v.get("on_target")}
        name, best = max(on_target.items(), key=lambda kv: kv[1]["haaqi"])
        lines.append(
            f"| {label} | {lufs} | **{tuned['haaqi']:.3f}** | {tuned['drl_db']:.2f} | {tuned['nmr_db']:.2f} "
            f"| {name} | {best['haaqi']:.3f} | {best['drl_db']:.2f} | {best['nmr_db']:.2f} | "
            f"{tuned['haaqi'] - best['haaqi']:+.3f} | {entries['tuned-plain']['haaqi']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", default=",".join(TRACKS))
    parser.add_argument("--targets", type=float, nargs="+", default=[-14.0, -9.0])
    parser.add_argument("--ceiling", type=float, default=-1.0)
    parser.add_argument("--stages", default="render,score,report")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--skip-tuned", action="store_true")
    parser.add_argument(
        "--select",
        choices=("drl", "frame", "nmr"),
        default="frame",
        help="the measure that ranks each peer's settings before HAAQI scores the best "
        f"{HAAQI_CANDIDATES}: plain, frame-wise (50 ms) DRL or the NMR",
    )
    args = parser.parse_args()
    labels = [t for t in args.tracks.split(",") if t]
    unknown = [t for t in labels if t not in TRACKS]
    if unknown:
        parser.exit(2, f"unknown track(s) {', '.join(unknown)}; choose from {', '.join(TRACKS)}\n")
    stages = args.stages.split(",")
    select = {"drl": peers.plain_drl, "frame": frame_score}.get(args.select) or peers.nmr_score(RATE)
    if "render" in stages:
        for label, lufs in itertools.product(labels, args.targets):
            render_case(label, lufs, args.ceiling, args.skip_peers, args.skip_tuned, select)
    if "score" in stages:
        score_all(labels, args.targets)
    if "report" in stages:
        scores = json.loads((STUDY / "scores.json").read_text())
        scores = {k: v for k, v in scores.items() if k.split()[0] in labels}
        print(agreement(scores), clear_pairs(scores), against_peers(scores), details(scores), sep="\n\n")


if __name__ == "__main__":
    main()
