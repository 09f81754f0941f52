"""What a run shows: its lines on the console and in the run's record (train.log, configured by Hydra's job
logging, configs/hydra/job_logging/run_log.yaml), and Lightning's own output (progress bar, info lines, its
deprecation warnings) only when asked for (``verbose=true``)."""

from __future__ import annotations

import logging
import sys
import warnings

#: The run's record; without a configured handler (a job run from Python) it records nothing.
record = logging.getLogger("tuning.run")
record.addHandler(logging.NullHandler())


def say(text: str, *, warning: bool = False) -> None:
    """Print ``text`` on stdout (a warning on stderr, after "warning: ") and record it in the run's log."""
    print(f"warning: {text}" if warning else text, file=sys.stderr if warning else sys.stdout, flush=True)
    record.log(logging.WARNING if warning else logging.INFO, text)


def quiet_lightning(verbose: bool = False) -> None:
    """Silence Lightning's remarks that say nothing about this run; unless ``verbose``, also its info lines
    (accelerator, tips, why fit stopped) and the deprecation warnings of its pytree helpers. The progress bar
    is the Trainer's (:func:`tuning.job.make_trainer`)."""
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
    # crops are a function of the step, not of the loader's position: a mid-epoch resume is exact
    warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
    level = logging.INFO if verbose else logging.WARNING
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(level)
    if not verbose:
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
