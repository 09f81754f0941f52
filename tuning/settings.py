"""tuned_params.yaml: everything that renders a track as the tuning job did, and the chain rebuilt from it.

The file holds the processor config's name, the input it was tuned on, the target, the subsonic conditioning
the job applied ahead of the chain, the output format, in album mode the files and the gap between them, and
per stage its class and every constructor argument: the tuned parameters in physical units and the options
(the saturator's ``oversample`` and ``unity_gain``, the compressor's ``detector`` and ``stereo_link``, the
limiter's ``true_peak``, ...). Parameters are written as short as they can be while the chain, which renders in
float32, still runs with the job's very values (:func:`rounded`): 7 or 8 significant digits.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import yaml

import processors
from processors import Chain, Processor

HEADER = (
    "# Tuned settings in physical units (dB, ms, ratio) and every option of every stage, for processor={name}.\n"
    "# Render any audio file with them (the job's own input gives the job's output):\n"
    "#   python -m tuning.render tuned_params.yaml song.wav -o song_master.wav [--format pcm24]\n"
    "# or paste `stages` over the stages of configs/processor/{name}.yaml.\n"
)


def rounded(value):
    """A parameter value as written: a float as the shortest decimal that reads back as the same float32 (the
    precision the chain renders at, so a render from the file runs with the job's very parameters), e.g.
    21.117947 for 21.1179476119; None, bools, ints and strings unchanged."""
    if isinstance(value, float) and math.isfinite(value):
        return float(str(np.float32(value)))
    return value


def stage_settings(stage: Processor) -> dict:
    """{"_target_": "processors.<Class>", <every constructor argument but sample_rate>: value} of ``stage``:
    parameters from ``values()`` (None for an optional one switched off, e.g. a limiter without its slow
    stage), options from the attribute of the same name. ValueError when an option is not kept on the stage
    (it could not be reproduced)."""
    cls = type(stage)
    values = stage.values()
    declared = {spec.name for spec in cls.specs}
    out: dict = {"_target_": f"processors.{cls.__name__}"}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name in ("self", "sample_rate") or parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            continue
        if name in values:
            if isinstance(values[name], list):
                raise ValueError(f"{cls.__name__}.{name} holds several settings; save one setting at a time")
            out[name] = rounded(values[name])
        elif name in declared:
            out[name] = None
        elif hasattr(stage, name):
            value = getattr(stage, name)
            out[name] = value.item() if isinstance(value, torch.Tensor) else value
        else:
            raise ValueError(f"{cls.__name__} keeps no attribute for its option {name!r}: it cannot be saved")
    return out


def chain_settings(chain: Chain) -> dict[str, dict]:
    """{stage name: :func:`stage_settings`} of every stage of ``chain``, in order."""
    return {name: stage_settings(stage) for name, stage in chain}


def build_chain(stages: Mapping[str, Mapping], sample_rate: int) -> Chain:
    """The :class:`processors.Chain` of a settings file's ``stages`` at ``sample_rate`` (Hz). Only classes of
    the ``processors`` package are built; a stage that names another, or a bad value, is a ValueError."""
    if not isinstance(stages, Mapping) or not stages:
        raise ValueError("the settings file has no stages")
    built = {}
    for name, settings in stages.items():
        if not isinstance(settings, Mapping) or "_target_" not in settings:
            raise ValueError(f"stage {name!r} of the settings file names no processor (_target_: processors.<Class>)")
        module, _, class_name = str(settings["_target_"]).rpartition(".")
        cls = getattr(processors, class_name, None)
        if module != "processors" or not (inspect.isclass(cls) and issubclass(cls, Processor)):
            raise ValueError(f"stage {name!r}: {settings['_target_']!r} is not a processor of the processors package")
        arguments = {key: value for key, value in settings.items() if key != "_target_"}
        try:
            built[str(name)] = cls(sample_rate=sample_rate, **arguments)
        except (TypeError, ValueError) as error:  # an unknown option, a value out of range
            raise ValueError(f"stage {name!r} of the settings file: {error}") from None
    return Chain(built)


def subsonic_settings(conditioning: Mapping | None) -> dict:
    """{"mode": "on", "cutoff_hz": f} when a track's ``conditioning`` report says the subsonic stage ran, else
    {"mode": "off"}."""
    if conditioning and conditioning.get("subsonic"):
        return {"mode": "on", "cutoff_hz": float(conditioning["cutoff_hz"])}
    return {"mode": "off"}


def settings_document(
    chain: Chain,
    processor: str,
    source: Mapping,
    target,
    conditioning: Mapping | None,
    output: Mapping,
    album: Mapping | None = None,
) -> dict:
    """The content of tuned_params.yaml: the ``processor`` config's name, the ``source`` it was tuned on
    (``path`` or ``name``, ``duration_s``), the ``target`` (a :class:`tuning.objective.Target`), the subsonic
    stage the job ran ahead of the chain (from the track's ``conditioning`` report; None: off), the
    ``output`` (``format``, ``dither_seed``), in album mode the ``album`` (``gap_s`` and the ``files``, each
    with its ``name``, ``path`` and ``subsonic``: album mode conditions every file on its own), and the
    ``chain``'s :func:`chain_settings`."""
    document = {
        "processor": processor,
        "input": dict(source),
        "target": {"name": target.label, "lufs": float(target.lufs), "ceiling_dbtp": float(target.ceiling_dbtp)},
        "subsonic": subsonic_settings(conditioning),
        "output": dict(output),
    }
    if album is not None:
        document["album"] = dict(album)
    document["stages"] = chain_settings(chain)
    return document


def write_settings(path: str | Path, document: Mapping) -> Path:
    """Write ``document`` (``processor``, ``input``, ``target``, ``subsonic``, ``output``, ``stages``...) as a
    new YAML file under a header saying how to use it (ValueError if ``path`` exists)."""
    path = Path(path)
    if path.exists():
        raise ValueError(f"refusing to overwrite {path}: choose a new output folder (hydra.run.dir)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x") as handle:
        handle.write(HEADER.format(name=document.get("processor", "custom")))
        yaml.safe_dump(dict(document), handle, sort_keys=False, width=120)
    return path


#: Keys every settings file has (album mode adds ``album``).
REQUIRED = ("processor", "target", "subsonic", "stages")


def read_settings(path: str | Path) -> dict:
    """A tuned_params.yaml as a dict, checked for its required keys (ValueError naming what is wrong)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"settings file not found: {path}")
    try:
        document = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read settings file {path}: {' '.join(str(error).split())}") from None
    if not isinstance(document, dict):
        raise ValueError(f"settings file {path} is not a tuned_params.yaml (no keys)")
    missing = [key for key in REQUIRED if key not in document]
    if missing:
        raise ValueError(
            f"settings file {path} lacks {', '.join(missing)}: it was not written by this version of train.py"
        )
    subsonic = document["subsonic"]
    if not isinstance(subsonic, Mapping) or subsonic.get("mode") not in ("on", "off"):
        raise ValueError(f"settings file {path}: subsonic.mode must be on or off, got {subsonic!r}")
    return document
