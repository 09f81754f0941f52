"""`train.py`'s command line before the heavy imports (no torch, no Lightning): the overrides as the user meant
them, config errors in the user's words, the input files checked, and the run folder of a failed run removed.

Imports only the standard library, Hydra, OmegaConf and (to check an audio file) soundfile, so a bad path or a
misspelled option answers in about a second.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Override, QuotedString
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

#: Set by `./dev` to the folder it was called from (it runs train.py from the repository).
CALLER_DIR_ENV = "DRL_CALLER_DIR"
#: Overrides that name a file or a folder: a relative one is taken from the caller's folder.
PATH_OPTIONS = ("data.path", "data.dir", "ckpt_path", "hydra.run.dir", "hydra.sweep.dir")
_RAW_PATH = re.compile(rf"^(\+{{0,2}})({'|'.join(re.escape(k) for k in PATH_OPTIONS)})=(.+)$")
#: data.path belongs to data=file, data.dir to data=folder: giving one chooses its data option.
DATA_OPTION_OF = {"data.path": "file", "data.dir": "folder"}
#: What Hydra writes into every run folder before the job starts.
HYDRA_FILES = {".hydra", "train.log"}


def caller_dir() -> Path:
    """The folder relative paths on the command line are relative to: `./dev`'s caller's, else the current."""
    return Path(os.environ.get(CALLER_DIR_ENV) or os.getcwd())


def quote(text: str) -> str:
    """``text`` as a single-quoted Hydra override value (quotes escaped, and backslashes before them)."""
    escaped = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), text)
    return f"'{escaped}'"


def _absolute(value: str, base: Path) -> str:
    if "${" in value:  # an interpolation: OmegaConf resolves it
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _parse(arg: str) -> Override | None:
    """The override ``arg`` is, or None for a command-line flag and its values (``-m``, ``--cfg job``)."""
    if arg.startswith("-") or "=" not in arg:
        return None
    try:
        return OverridesParser.create().parse_override(arg)
    except HydraException:
        return None  # Hydra reports it in its own words


def prepare_arguments(args: list[str], base: Path) -> list[str]:
    """The command-line arguments with the paths of :data:`PATH_OPTIONS` made absolute against ``base`` (the
    caller's folder) and ``data=file`` (``data=folder``) added when ``data.path`` (``data.dir``) is given
    without a data option. ValueError when a path option contradicts the data option."""
    out, data_option, given = [], None, []
    for arg in args:
        override = _parse(arg)
        raw = _RAW_PATH.match(arg)
        if override is None and raw and not arg.startswith("-"):
            # a path Hydra's grammar cannot read as it is (spaces, parentheses...): take it literally
            prefix, key, value = raw.groups()
            given.append(key)
            arg = f"{prefix}{key}={quote(_absolute(value, base))}"
        elif override is not None and not override.is_delete():
            key, value = override.key_or_group, override.value()
            if key == "data" and isinstance(value, str):
                data_option = value
            if key in PATH_OPTIONS and value is not None:
                given.append(key)
                prefix = arg[: arg.index(key)]  # "", "+" or "++"
                if isinstance(value, ChoiceSweep):
                    paths = [_absolute(v.text if isinstance(v, QuotedString) else str(v), base) for v in value.list]
                    arg = f"{prefix}{key}={','.join(quote(p) for p in paths)}"
                elif isinstance(value, (str, int, float)):
                    arg = f"{prefix}{key}={quote(_absolute(str(value), base))}"
        out.append(arg)
    implied = [DATA_OPTION_OF[key] for key in given if key in DATA_OPTION_OF]
    for option in implied:
        if option != (data_option or option):
            key = next(k for k, v in DATA_OPTION_OF.items() if v == option)
            raise ValueError(f"{key} goes with data={option}, not data={data_option}")
    if len(set(implied)) > 1:
        raise ValueError("give data.path (one file) or data.dir (a folder), not both")
    if implied and data_option is None:
        out.insert(0, f"data={implied[0]}")
    return out


def run_dir_option(args: list[str]) -> Path | None:
    """The run folder ``hydra.run.dir=...`` names among ``args`` (after :func:`prepare_arguments`), or None."""
    for arg in args:
        override = _parse(arg)
        if override is not None and override.key_or_group == "hydra.run.dir" and isinstance(override.value(), str):
            return Path(override.value())
    return None


def close_name(name: str, names) -> str | None:
    """The name among ``names`` closest to ``name`` (a typo's likely intent), or None."""
    match = difflib.get_close_matches(name, [str(n) for n in names], n=1, cutoff=0.6)
    return match[0] if match else None


def explain(error: BaseException, args: list[str], compose) -> str | None:
    """A config error of Hydra or OmegaConf in the user's words, or None when it is not one this knows.

    ``compose(overrides)`` composes the config (without Hydra's own node): an unknown option is looked up in
    the config composed without it, for a close name."""
    chain = [error]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    for cause in chain:
        if isinstance(cause, OverrideParseException):
            message = str(cause.message).split("\n")[0].split(" See https://")[0]
            return f"cannot read {cause.override!r} (key=value, Hydra's override grammar): {message}"
        if isinstance(cause, MissingConfigException) and cause.missing_cfg_file and "/" in cause.missing_cfg_file:
            group, _, option = cause.missing_cfg_file.rpartition("/")
            options = list(cause.options or [])
            text = f"{group}={option} is not an option of {group}"
            guess = close_name(option, options)
            if guess:
                text += f"; did you mean '{group}={guess}'?"
            return f"{text} (options: {', '.join(options)})" if options else text
        if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and getattr(cause, "full_key", None):
            return _unknown_key(str(cause.full_key), args, compose)
    return None


def _unknown_key(full_key: str, args: list[str], compose) -> str:
    """``full_key`` is not in the config: say so, with the closest existing name and the node's options."""
    parent, _, leaf = full_key.rpartition(".")
    kept = [a for a in args if (o := _parse(a)) is None or o.key_or_group != full_key]
    overrides = [a for a in kept if _parse(a) is not None]
    text = f"{full_key} is not an option"
    try:
        cfg = compose(overrides)
    except Exception:  # another error in the overrides: say what is known
        return f"{text} (to add a new key, write +{full_key}=...)"
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig):
        return f"{text}: {parent} is a single value"
    names = [str(k) for k in node.keys() if not str(k).startswith("_")]
    guess = close_name(leaf, names)
    if guess:
        text += f"; did you mean '{parent + '.' if parent else ''}{guess}'?"
    where = f"{parent} has" if parent else "the options are"
    shown = ", ".join(names[:16]) + (", ..." if len(names) > 16 else "")
    return f"{text} ({where}: {shown})"


#: What a config's mandatory value is for, in the user's words.
MISSING_HINTS = {
    "data.path": "data=file needs the audio file: data.path=song.flac",
    "data.dir": "data=folder needs the folder of audio files: data.dir=album/",
}


def check_config(cfg: DictConfig) -> None:
    """What can be checked without the heavy imports: every mandatory value given, the audio file readable,
    the folder and the checkpoint present. Raises ValueError with one line in the user's words."""
    for key in missing_keys({k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}):
        raise ValueError(MISSING_HINTS.get(key, f"{key} must be given ({key}=...)"))
    data = cfg.get("data") or {}
    if data.get("dir") is None and data.get("path") is not None:
        check_audio_file(Path(str(data.path)))
    if data.get("dir") is not None:
        folder = Path(str(data.dir)).expanduser()
        if not folder.is_dir():
            raise ValueError(f"data.dir is not a folder: {folder}")
    ckpt = cfg.get("ckpt_path")
    if ckpt and not Path(str(ckpt)).expanduser().is_file():
        raise ValueError(f"checkpoint not found: {ckpt}")


def missing_keys(node, prefix: str = "") -> list[str]:
    """The dotted keys of mandatory values (``???``) not given in a config container, in order."""
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in missing_keys(value, f"{prefix}{key}.")]
    return [prefix[:-1]] if node == "???" else []


def check_audio_file(path: Path) -> None:
    """ValueError unless ``path`` is a file libsndfile can open (the header only: samples are read later)."""
    import soundfile as sf  # numpy and libsndfile: a fraction of a second

    path = path.expanduser()
    if not path.exists():
        raise ValueError(f"audio file not found: {path}")
    if not path.is_file():
        raise ValueError(f"audio path is not a file: {path}")
    try:
        frames = sf.info(str(path)).frames
    except Exception as error:  # libsndfile signals unreadable files with several exception types
        raise ValueError(f"cannot read audio file {path}: {' '.join(str(error).split())}") from None
    if frames == 0:
        raise ValueError(f"audio file {path} is empty (0 samples)")


def discard_run_folder(folder: Path, within: Path | None = None) -> bool:
    """Remove ``folder`` if it holds nothing but what Hydra writes before a job (``.hydra/``, ``train.log``),
    and then its parents inside ``within`` (default: the current folder) that are left empty (the date folder
    of ``outputs/<date>/<time>``): a run that failed before writing anything leaves no folder behind.
    Returns whether ``folder`` was removed."""
    folder = folder.absolute()
    if not folder.is_dir() or not {p.name for p in folder.iterdir()} <= HYDRA_FILES:
        return False
    hydra = folder / ".hydra"
    if hydra.exists() and (not hydra.is_dir() or any(p.is_dir() for p in hydra.iterdir())):
        return False
    shutil.rmtree(folder)
    within = (within or Path.cwd()).absolute()
    parent = folder.parent
    while parent != within and within in parent.parents and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
    return True
