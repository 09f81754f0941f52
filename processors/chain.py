"""Chain: processors run in order, their parameters exposed under unique dotted names ("compressor.ratio")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import torch
from torch import nn

from processors.base import Processor
from processors.functional import on_audio
from processors.params import ParamSpec


class Chain(nn.Module):
    """``Chain([Gain(...), Compressor(...)])`` or ``Chain({"drive": Gain(...), ...})``.

    Names default to the lowercased class name, a repeat getting "_2", "_3"... All processors must share
    one sample rate. Offers the Processor interface with dotted names: ``values()``, ``set_values(**{...})``,
    ``param("compressor.ratio")``, ``freeze(...)``, ``unfreeze(...)``, ``specs``, and ``chain["limiter"]``.
    """

    def __init__(self, processors: Sequence[Processor] | Mapping[str, Processor]) -> None:
        """``processors``: a sequence of :class:`Processor` (named after their classes) or a mapping of names
        (no ``.``) to them, at least one, all at one sample rate; otherwise ValueError. Each stage's parameters
        and their ranges: ``help(<its class>)``, or ``chain.specs``."""
        super().__init__()
        if isinstance(processors, Mapping):
            items = list(processors.items())
        else:
            items, seen = [], {}
            for proc in processors:
                base = type(proc).__name__.lower()
                seen[base] = seen.get(base, 0) + 1
                items.append((base if seen[base] == 1 else f"{base}_{seen[base]}", proc))
        if not items:
            raise ValueError("Chain needs at least one processor")
        for name, proc in items:
            if not isinstance(proc, Processor):
                raise ValueError(f"Chain item {name!r} is a {type(proc).__name__}, not a processors.Processor")
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"Chain names must be non-empty strings without '.', got {name!r}")
        rates = {proc.sample_rate for _, proc in items}
        if len(rates) > 1:
            raise ValueError(f"all processors of a Chain need one sample_rate, got {sorted(rates)}")
        self.sample_rate = rates.pop()
        self.stages = nn.ModuleDict(dict(items))

    def __getitem__(self, name: str) -> Processor:
        if name not in self.stages:
            raise KeyError(f"no processor {name!r} in the chain (names: {', '.join(self.stages)})")
        return self.stages[name]

    def __iter__(self):
        return iter(self.stages.items())

    def __len__(self) -> int:
        return len(self.stages)

    def _split(self, dotted: str) -> tuple[Processor, str]:
        name, _, param = dotted.partition(".")
        if name not in self.stages or not param:
            raise ValueError(f"unknown chain parameter {dotted!r} (parameters: {', '.join(self.values())})")
        return self.stages[name], param

    @property
    def specs(self) -> tuple[ParamSpec, ...]:
        """Every stage's ParamSpecs, renamed "<stage>.<param>"."""
        return tuple(
            replace(spec, name=f"{name}.{spec.name}")
            for name, proc in self.stages.items()
            for spec in proc._specs.values()
        )

    def values(self) -> dict[str, float | list[float]]:
        return {f"{name}.{k}": v for name, proc in self.stages.items() for k, v in proc.values().items()}

    def set_values(self, **physical_values) -> None:
        grouped: dict[str, dict] = {}
        for dotted, value in physical_values.items():
            proc, param = self._split(dotted)
            proc.spec(param)
            grouped.setdefault(dotted.partition(".")[0], {})[param] = value
        for name, values in grouped.items():
            self.stages[name].set_values(**values)

    def spec(self, dotted: str) -> ParamSpec:
        """The ParamSpec of ``"<stage>.<param>"`` (its own name, as the stage declares it)."""
        proc, param = self._split(dotted)
        return proc.spec(param)

    def param(self, dotted: str) -> torch.Tensor:
        proc, param = self._split(dotted)
        return proc.param(param)

    def _each(self, names: tuple[str, ...], method: str) -> None:
        if not names:
            for proc in self.stages.values():
                getattr(proc, method)()
            return
        for dotted in names:
            proc, param = self._split(dotted)
            getattr(proc, method)(param)

    def freeze(self, *names: str) -> None:
        """Freeze dotted parameters (all when none given)."""
        self._each(names, "freeze")

    def unfreeze(self, *names: str) -> None:
        """Unfreeze dotted parameters (all when none given)."""
        self._each(names, "unfreeze")

    def batch_size(self) -> int | None:
        """B when any stage's parameters are batched, else None (ValueError when stages disagree)."""
        sizes = {name: proc.batch_size() for name, proc in self.stages.items()}
        batched = {name: size for name, size in sizes.items() if size is not None}
        if len(set(batched.values())) > 1:
            raise ValueError(f"batched stages of the chain disagree in size: {batched}")
        return next(iter(batched.values()), None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run every stage in order on (T,), (C, T) or (B, C, T) audio; returns the same shape."""
        return on_audio(x, self._process)

    def _process(self, y: torch.Tensor) -> torch.Tensor:
        for proc in self.stages.values():
            y = proc.process(y, **proc._batched_params(y))
        return y
