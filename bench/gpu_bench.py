"""Everything the CPU benches time, once on a CUDA GPU, plus the whole 3-minute job: run by bench/gpu_bench.sh.

    python bench/gpu_bench.py [--sections drl,loudness,processors,job,population] [--keep DIR] [--budget-s 420]
    python bench/gpu_bench.py --dry-run        # every section on the CPU with tiny sizes (no GPU needed)

Sections, each with its own heading, its peak CUDA memory (``torch.cuda.max_memory_allocated``) and its seconds;
one that fails prints its traceback and the next one runs:

- drl: DRL (broadband and the three default bands), ``drl.nmr_db``, and the NMR of one more candidate against
  a cached ``drl.nmr.MaskedReference``, forward and forward+backward, 16 x 2 x 10 s and 60 s at 44.1 kHz
  (the signals and closures of bench/drl_bench.py);
- loudness: ``drl.integrated_loudness`` (forward, forward+backward) and ``drl.true_peak`` on 3 minutes of
  stereo, one track and a batch of 16;
- processors: compressor and limiter forward+backward against torchcomp (bench/processors_bench.py), 64 x 2 x
  10 s and 16 x 2 x 60 s; ours alone, with a note, when torchcomp does not import;
- job: ``train.py data=file data.path=<3-minute demo track> trainer=gpu`` as a child process, twice (the
  first fills numba's disk cache): wall clock, metrics.json's timing (the job after start-up; goal 5 s), peak
  CUDA and resident memory;
- population: the same job with ``search=population search.size=32``, wall clock against the single start's
  second run.

Times are medians of --repeats calls after one warm-up call (the first, which compiles the CUDA kernels, is
printed apart). The audio is synthesised here (no network on the GPU machine). Child jobs stop at what is left
of --budget-s, so the whole run ends within it plus the section running when it runs out.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import platform
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import drl_bench  # noqa: E402
import processors_bench  # noqa: E402
import train_run  # noqa: E402

from drl import DEFAULT_BANDS, DRL, integrated_loudness, true_peak  # noqa: E402

SR = drl_bench.SR
SECTIONS = ("drl", "loudness", "processors", "job", "population")
JOB_GOAL_S = 5.0
#: The imports whose versions the header prints: {module: distribution}.
MODULES = {
    "numba": "numba",
    "numba.cuda": "numba-cuda",
    "torchcomp": "torchcomp",
    "torchlpc": "torchlpc",
    "hydra": "hydra-core",
    "soundfile": "soundfile",
    "matplotlib": "matplotlib",
}


@dataclass
class Sizes:
    """The run's sizes: the GPU run's, or tiny ones for --dry-run on the CPU."""

    device: str = "cuda"
    drl_seconds: tuple = (10.0, 60.0)
    batch: int = 16
    loudness_s: float = 180.0
    processor_cases: tuple = ((64, 10.0), (16, 60.0))
    track_s: float = 180.0
    population: int = 32
    job_overrides: list = field(default_factory=lambda: ["trainer=gpu"])


DRY_RUN = Sizes(
    device="cpu",
    drl_seconds=(0.5,),
    batch=2,
    loudness_s=2.0,
    processor_cases=((2, 0.5),),
    track_s=8.0,
    population=2,
    job_overrides=[
        "trainer=cpu",
        "trainer.max_steps=2",
        "data.batches_per_epoch=2",
        "baseline.release_ms=[10.0]",
        "baseline.lookahead_ms=[5.0]",
        "baseline.slow_release_ms=[null]",
    ],
)


class Run:
    """What the sections share: sizes, options, the clock of the whole run, the track, results for the summary."""

    def __init__(self, sizes: Sizes, args: argparse.Namespace, workdir: Path) -> None:
        self.sizes, self.args, self.workdir = sizes, args, workdir
        self.device = torch.device(sizes.device)
        self.began = time.perf_counter()
        self.track: Path | None = None
        self.single: train_run.TrainRun | None = None
        self.summary: list[str] = []
        self.section_peak = 0  # bytes: the largest peak read by reset_peak within the running section

    def left_s(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.began)

    def reset_peak(self) -> None:
        """Start a new peak of CUDA memory (the section's peak keeps the largest one)."""
        if self.device.type == "cuda":
            self.section_peak = max(self.section_peak, torch.cuda.max_memory_allocated(self.device))
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self, whole_section: bool = False) -> str:
        """The peak CUDA memory since :meth:`reset_peak` (or over the section), or n/a on the CPU."""
        if self.device.type != "cuda":
            return "n/a (CPU)"
        peak = torch.cuda.max_memory_allocated(self.device)
        return gib(max(peak, self.section_peak) if whole_section else peak)


def gib(count: int | None) -> str:
    return "n/a" if count is None else f"{count / 2**30:.2f} GiB"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:10.1f}"


def header(run: Run) -> None:
    print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda})")
    if run.device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(run.device)}, {gib(torch.cuda.get_device_properties(0).total_memory)}")
    else:
        print(f"dry run on the CPU ({torch.get_num_threads()} threads), tiny sizes: no figure here means anything")
    for module, distribution in MODULES.items():
        try:
            importlib.import_module(module)
            version = importlib.metadata.version(distribution)
        except Exception as error:  # any import failure is worth a line, not an abort
            version = f"not importable ({type(error).__name__}: {error})"
        print(f"  {distribution}: {version}")
    print(f"budget {run.args.budget_s:.0f} s; sections: {' '.join(run.args.sections)}", flush=True)


def drl_section(run: Run) -> None:
    """DRL, band DRL, NMR and cached NMR, forward and forward+backward, B x 2 x T."""
    sizes, device = run.sizes, run.device
    measures = {
        "DRL": lambda r, p, b: drl_bench.job(DRL(SR, None), r, p, b),
        "DRL, 3 bands": lambda r, p, b: drl_bench.job(DRL(SR, DEFAULT_BANDS), r, p, b),
        "nmr_db": lambda r, p, b: drl_bench.job(drl_bench.nmr_metric, r, p, b, "nmr_db"),
        "nmr_db, cached": drl_bench.masked_reference_job,
    }
    print(f"{'measure':<16}{'audio':>16}{'pass':>18}{'first (ms)':>12}{'median (ms)':>12}{'peak':>12}")
    for seconds in sizes.drl_seconds:
        reference, processed = drl_bench.signals(seconds, device)
        reference = reference.repeat(sizes.batch, 1, 1)
        processed = processed.repeat(sizes.batch, 1, 1)
        for name, make in measures.items():
            for backward in (False, True):
                label = f"{name:<16}{f'{sizes.batch}x2x{seconds:g} s':>16}"
                label += f"{'forward+backward' if backward else 'forward':>18}"

                def row():
                    run.reset_peak()
                    function = make(reference, processed, backward)
                    first = drl_bench.timed(function, device, 1, warm=False)
                    median = drl_bench.timed(function, device, run.args.repeats, warm=False)
                    print(f"{label}{ms(first):>12}{ms(median):>12}{run.peak():>12}", flush=True)

                guarded(label, row)
        reference = processed = None  # freed before the next length is made


def loudness_section(run: Run) -> None:
    """Integrated loudness forward and forward+backward, true peak forward, on 1 and B tracks."""
    sizes, device = run.sizes, run.device
    print(f"{'measure':<28}{'audio':>16}{'first (ms)':>12}{'median (ms)':>12}{'peak':>12}")
    mono_pair, _ = drl_bench.signals(sizes.loudness_s, device)
    for batch in (1, sizes.batch):
        audio = mono_pair if batch == 1 else mono_pair.repeat(batch, 1, 1)

        def forward_backward():
            leaf = audio.clone().requires_grad_()
            integrated_loudness(leaf, SR).sum().backward()

        for name, function in (
            ("integrated_loudness", lambda: integrated_loudness(audio, SR)),
            ("integrated_loudness fwd+bwd", forward_backward),
            ("true_peak", lambda: true_peak(audio, SR)),
        ):
            label = f"{name:<28}{f'{batch}x2x{sizes.loudness_s:g} s':>16}"

            def row():
                run.reset_peak()
                first = drl_bench.timed(function, device, 1, warm=False)
                median = drl_bench.timed(function, device, run.args.repeats, warm=False)
                print(f"{label}{ms(first):>12}{ms(median):>12}{run.peak():>12}", flush=True)

            guarded(label, row)


def processors_section(run: Run) -> None:
    """Compressor and limiter forward+backward, ours against torchcomp (bench/processors_bench.py)."""
    device = run.sizes.device
    try:
        import torchcomp  # noqa: F401
        import torchlpc

        print(f"torchcomp with torchlpc {importlib.metadata.version('torchlpc')}, its compiled extension loaded: "
              f"{getattr(torchlpc, 'EXTENSION_LOADED', False)}")  # fmt: skip
        compare = True
    except Exception as error:
        print(f"torchcomp does not import ({type(error).__name__}: {error}): ours alone")
        compare = False
    print(
        f"{'processor':<12}{'case':<22}{'first (ms)':>11}{'ours (ms)':>11}{'torchcomp (ms)':>16}{'speed-up':>10}"
        f"{'median':>8}{'peak ours':>12}{'peak theirs':>13}"
    )
    for batch, seconds in run.sizes.processor_cases:
        x = processors_bench.music_like(batch, seconds, device)
        case = f"{device} {batch}x2x{seconds:g} s"
        for name, ours, theirs in (
            ("compressor", processors_bench.ours_compressor, processors_bench.torchcomp_compressor),
            ("limiter", processors_bench.ours_limiter, processors_bench.torchcomp_limiter),
        ):
            label = f"{name:<12}{case:<22}"
            guarded(label, lambda: processor_row(run, label, ours(x), theirs if compare else None, x))
        x = None  # freed before the next case is made


def processor_row(run: Run, label: str, ours_run, theirs, x: torch.Tensor) -> None:
    """One row: ours (first call, best of --repeats, peak) beside torchcomp's ``theirs(x)`` when it runs."""
    device = run.sizes.device
    first = processors_bench.once(ours_run, device)  # the CUDA kernels compile here
    run.reset_peak()
    processors_bench.once(ours_run, device)
    peak_ours = run.peak()
    if theirs is not None:
        try:
            theirs_run = theirs(x)
            processors_bench.once(theirs_run, device)
            run.reset_peak()
            processors_bench.once(theirs_run, device)
            peak_theirs = run.peak()
            t_ours, t_theirs, median = processors_bench.timed_pair(ours_run, theirs_run, device, run.args.repeats)
            print(
                f"{label}{ms(first):>11}{ms(t_ours):>11}{ms(t_theirs):>16}{t_theirs / t_ours:>9.1f}x{median:>7.1f}x"
                f"{peak_ours:>12}{peak_theirs:>13}",
                flush=True,
            )
            return
        except Exception:
            print(f"{label}torchcomp failed, ours alone:")
            traceback.print_exc(file=sys.stdout)
    best = min(processors_bench.once(ours_run, device) for _ in range(run.args.repeats))
    print(f"{label}{ms(first):>11}{ms(best):>11}{'-':>16}{'-':>10}{'-':>8}{peak_ours:>12}", flush=True)


def guarded(label: str, row) -> None:
    """Run one table row; an error prints one line after its label and the section goes on to the next row."""
    try:
        row()
    except Exception as error:
        print(f"{label}  failed: {''.join(traceback.format_exception_only(error)).strip()}", flush=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def demo_track_file(run: Run) -> Path:
    """The demo track of ``track_s`` seconds as a float WAV in the work folder (made once)."""
    if run.track is None:
        import soundfile as sf

        from tuning.audio import demo_track

        clock = time.perf_counter()
        track = demo_track(SR, run.sizes.track_s)
        run.track = run.workdir / f"demo{run.sizes.track_s:g}s.wav"
        sf.write(str(run.track), track.audio.T.numpy(), SR, subtype="FLOAT")
        print(f"synthesised {run.track.name} ({run.sizes.track_s:g} s stereo {SR} Hz) in "
              f"{time.perf_counter() - clock:.1f} s")  # fmt: skip
    return run.track


def job(run: Run, name: str, extra: list[str]) -> train_run.TrainRun:
    """One train.py child on the demo track, stopped at what is left of the budget; its figures printed."""
    track = demo_track_file(run)
    timeout = max(run.left_s(), 1.0)
    overrides = ["data=file", f"data.path={track}", *run.sizes.job_overrides, *extra, *run.args.overrides]
    print(f"train.py {' '.join(overrides)}  (stopped after {timeout:.0f} s)", flush=True)
    done = train_run.train(overrides, run.workdir / name, timeout_s=timeout)
    keep(run, done.log, f"{name}.log")
    keep(run, run.workdir / name / "metrics.json", f"{name}_metrics.json")
    if done.returncode != 0:
        print(done.tail(25))
        raise RuntimeError(f"train.py exited with {done.returncode} after {done.wall_s:.1f} s")
    print("\n".join(done.stages()))
    timing = done.metrics.get("timing_s", {})
    job_s = done.job_s()
    print(f"wall clock (start-up included): {done.wall_s:.2f} s")
    print(f"metrics.json timing_s: {', '.join(f'{k} {v:.2f} s' for k, v in timing.items())}")
    print(f"the job after start-up: {job_s:.2f} s = {job_s / JOB_GOAL_S:.2f} x the {JOB_GOAL_S:g} s goal")
    print(f"outside timing_s (start-up, reading, writing; wall clock - job): {done.wall_s - job_s:.2f} s")
    print(f"peak CUDA memory {gib(done.cuda_peak_bytes)}, peak resident memory {gib(done.max_rss_bytes)}")
    output = done.metrics.get("output", {})
    print(f"on target: {done.metrics.get('on_target')}, objective {output.get('objective_drl_db')} dB, "
          f"DRL {output.get('drl_db')} dB")  # fmt: skip
    return done


def job_section(run: Run) -> str:
    """The single start twice: the first run of a fresh copy compiles numba's CPU kernels into its disk cache
    (the CUDA kernels compile in every run); the second is what a user sees from then on."""
    print("first run (numba's disk cache empty)")
    first = job(run, "single_first", [])
    if 3 * first.wall_s > run.left_s():
        print(f"\nno second run: {run.left_s():.0f} s of the budget left for it and the population")
        run.single = first
        return child_note(first)
    print("\nsecond run (numba's CPU kernels cached on disk)")
    run.single = job(run, "single", [])
    return child_note(first) + child_note(run.single)


def population_section(run: Run) -> str:
    size = run.sizes.population
    done = job(run, f"population{size}", ["search=population", f"search.size={size}"])
    if run.single is not None:
        print(f"population of {size} against the single start: wall clock {done.wall_s / run.single.wall_s:.2f}x, "
              f"job after start-up {done.job_s() / run.single.job_s():.2f}x")  # fmt: skip
    return child_note(done)


def child_note(done: train_run.TrainRun) -> str:
    """The summary's note on a child job: its clocks and peaks."""
    return (
        f"; train.py: wall {done.wall_s:.1f} s, job {done.job_s():.2f} s, CUDA {gib(done.cuda_peak_bytes)}, "
        f"resident {gib(done.max_rss_bytes)}"
    )


def keep(run: Run, path: Path, name: str) -> None:
    """Copy ``path`` into --keep (the device tool's $OUT) when given and the file exists."""
    if run.args.keep is not None and path.is_file():
        shutil.copyfile(path, Path(run.args.keep) / name)


def section(run: Run, name: str, function) -> None:
    """Run one section: heading, peak CUDA memory, seconds; a failure prints its traceback, never aborts."""
    print(f"\n===== {name} =====", flush=True)
    if run.left_s() < 20:
        print(f"skipped: {run.left_s():.0f} s of the budget left")
        run.summary.append(f"{name:<12} skipped (budget)")
        return
    run.reset_peak()
    run.section_peak = 0
    clock = time.perf_counter()
    note = ""
    try:
        note = function(run) or ""
        status = "ok"
    except Exception:
        traceback.print_exc(file=sys.stdout)
        status = "FAILED"
    seconds = time.perf_counter() - clock
    peak = run.peak(whole_section=True)
    print(f"--- {name}: {status} in {seconds:.1f} s, peak CUDA memory in this process {peak}", flush=True)
    run.summary.append(f"{name:<11} {status:<7}{seconds:6.1f} s, peak CUDA memory here {peak}{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated, from the default")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per figure (median)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="child jobs stop at what is left of this")
    parser.add_argument("--keep", default=None, help="folder to copy the jobs' logs and metrics.json into")
    parser.add_argument("--dry-run", action="store_true", help="every section on the CPU with tiny sizes")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for the train.py jobs")
    args = parser.parse_args()
    args.sections = [name for name in args.sections.split(",") if name]
    unknown = [name for name in args.sections if name not in SECTIONS]
    if unknown or not args.sections:
        parser.exit(
            2, f"gpu_bench.py: --sections takes names among {','.join(SECTIONS)}, got {','.join(unknown) or '-'}\n"
        )
    if args.dry_run:
        sizes, args.repeats = DRY_RUN, min(args.repeats, 2)
    elif torch.cuda.is_available():
        sizes = Sizes()
    else:
        parser.exit(2, "gpu_bench.py: no CUDA device visible to torch; --dry-run runs the sections on the CPU\n")
    with tempfile.TemporaryDirectory(prefix="gpu_bench_") as workdir:
        run = Run(sizes, args, Path(workdir))
        header(run)
        functions = {
            "drl": drl_section,
            "loudness": loudness_section,
            "processors": processors_section,
            "job": job_section,
            "population": population_section,
        }
        for name in args.sections:
            section(run, name, functions[name])
        print("\n===== summary =====")
        print("\n".join(run.summary))
        print(f"whole run {time.perf_counter() - run.began:.1f} s")


if __name__ == "__main__":
    main()
