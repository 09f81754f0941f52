"""The shared Processor: parameter storage and validation, batched parameters, shapes, values()."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import nn

from drl.checks import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, check_sample_rate
from processors.functional import on_audio
from processors.params import ParamSpec

SAMPLE_RATE_LINE = f"sample_rate: in Hz, a whole number in {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}."
PARAMETERS_NOTE = (
    "Each parameter in physical units: a number, or a 1-D sequence of B numbers for B settings processed in one\n"
    "call; a value outside its range raises ValueError, and so does an unknown name."
)


def as_value_tensor(name: str, value) -> torch.Tensor:
    """A float, a 1-D sequence or a tensor of physical values -> float64 tensor (detached)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(device="cpu", dtype=torch.float64)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        raise ValueError(f"{name} must be a number or a 1-D sequence of numbers, got {value!r}")
    if isinstance(value, Sequence):
        if any(isinstance(v, (bool, str)) or v is None for v in value):
            raise ValueError(f"{name} must be a number or a 1-D sequence of numbers, got {value!r}")
    try:
        return torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{name} must be a number or a 1-D sequence of numbers, got {value!r}") from error


def check_flag(name: str, value) -> bool:
    """An on/off option: ``value`` must be True or False (a string such as "false" would read as True)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _document(cls: type) -> None:
    """Document ``cls.specs`` where ``help()`` looks, generated so that it follows the declarations: a
    parameter section appended to the class docstring, and the arguments (sample rate, each parameter's range,
    then the ``__init__``'s own text on its options) as the docstring of an ``__init__`` the class defines."""
    lines = [f"    {spec.doc_line}" for spec in cls.specs]
    section = "\n".join(["Parameters (tunable):"] + lines) if lines else "Parameters (tunable): none."
    cls.__doc__ = f"{inspect.cleandoc(cls.__doc__ or '')}\n\n{section}".lstrip()
    init = cls.__dict__.get("__init__")
    if init is not None:
        own = inspect.cleandoc(init.__doc__ or "")
        arguments = "\n".join(["Args:", f"    {SAMPLE_RATE_LINE}"] + lines)
        init.__doc__ = "\n\n".join(part for part in (arguments, PARAMETERS_NOTE if lines else "", own) if part)


def _tidy(x: float) -> float:
    """Report a physical value without the last-bit round-off of the sigmoid/log round trip."""
    return float(f"{x:.12g}")


class Processor(nn.Module):
    """Base of every effect. Subclasses declare ``specs`` (their ParamSpecs) and implement ``process``.

    Stores one unconstrained ``nn.Parameter`` per spec (float64, shape () or (B,) for B settings processed in
    one call) in ``self.raw[name]``; ``param(name)`` maps it into range, differentiably.
    """

    specs: tuple[ParamSpec, ...] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        _document(cls)

    def __init__(self, sample_rate: int, **physical_values) -> None:
        """``sample_rate`` in Hz; ``physical_values``: a value per parameter name (the declared default for any
        not given); unknown names and values outside a range raise ValueError."""
        super().__init__()
        self.sample_rate = check_sample_rate(sample_rate)
        self._specs = {spec.name: spec for spec in self.active_specs()}
        self.raw = nn.ParameterDict()
        # defaults need no check: ParamSpec refuses one outside its range
        values = {name: as_value_tensor(name, spec.default) for name, spec in self._specs.items()}
        values.update(self._checked(physical_values))
        for name, value in values.items():
            self.raw[name] = nn.Parameter(self._specs[name].to_unconstrained(value))

    @classmethod
    def spec_of(cls, name: str) -> ParamSpec:
        """The declared :class:`ParamSpec` of parameter ``name`` (its unit, range, scale and default)."""
        for spec in cls.specs:
            if spec.name == name:
                return spec
        raise ValueError(
            f"{cls.__name__} has no parameter {name!r} (parameters: {', '.join(s.name for s in cls.specs) or 'none'})"
        )

    def active_specs(self) -> tuple[ParamSpec, ...]:
        """The specs this instance stores (all of ``specs`` unless an option switches a stage off)."""
        return self.specs

    # --- parameters -------------------------------------------------------------------------------------------
    def _checked(self, physical_values: dict) -> dict[str, torch.Tensor]:
        return {name: self.spec(name).check(as_value_tensor(name, value)) for name, value in physical_values.items()}

    def spec(self, name: str) -> ParamSpec:
        if name not in self._specs:
            allowed = ", ".join(self._specs) or "none"
            raise ValueError(f"{type(self).__name__} has no parameter {name!r} (parameters: {allowed})")
        return self._specs[name]

    def param(self, name: str) -> torch.Tensor:
        """The differentiable physical value of ``name``: shape () or (B,), float64 unless the module was cast."""
        return self.spec(name).to_physical(self.raw[name])

    def values(self) -> dict[str, float | list[float]]:
        """Current physical values as plain Python (floats, or lists of B floats when batched)."""
        out: dict[str, float | list[float]] = {}
        with torch.no_grad():
            for name in self._specs:
                value = self.param(name).detach().cpu().double()
                out[name] = _tidy(float(value)) if value.ndim == 0 else [_tidy(v) for v in value.tolist()]
        return out

    def set_values(self, **physical_values) -> None:
        """Set physical values (validated like the constructor); keeps each parameter's requires_grad."""
        for name, value in self._checked(physical_values).items():
            raw = self.raw[name]
            new = self._specs[name].to_unconstrained(value).to(device=raw.device, dtype=raw.dtype)
            with torch.no_grad():
                if new.shape == raw.shape:
                    raw.copy_(new)
                else:  # batch size changed: a new Parameter (an optimiser must be rebuilt)
                    self.raw[name] = nn.Parameter(new, requires_grad=raw.requires_grad)

    def _names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            self.spec(name)
        return names or tuple(self._specs)

    def freeze(self, *names: str) -> None:
        """Stop optimising ``names`` (all parameters when none given)."""
        for name in self._names(names):
            self.raw[name].requires_grad_(False)

    def unfreeze(self, *names: str) -> None:
        """Optimise ``names`` again (all parameters when none given)."""
        for name in self._names(names):
            self.raw[name].requires_grad_(True)

    def batch_size(self) -> int | None:
        """B when any parameter is batched, else None (ValueError on mismatched batch sizes)."""
        sizes = {name: int(raw.shape[0]) for name, raw in self.raw.items() if raw.ndim == 1}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"batched parameters of {type(self).__name__} disagree in size: {sizes}")
        return next(iter(sizes.values()), None)

    def _batched_params(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Physical values cast to ``x``'s dtype/device, each of shape (N,) matching x's batch (N, C, T). B
        batched settings serve a batch of N = K x B items, item ``k * B + b`` with setting ``b`` (K crops of
        each setting, crop-major)."""
        b = self.batch_size()
        if b is not None and b != 1 and x.shape[0] % b:
            raise ValueError(
                f"{type(self).__name__} parameters carry a batch of {b} settings but the audio batch is "
                f"{x.shape[0]}; pass audio of shape ({b}, C, T) or (K x {b}, C, T)"
            )
        out = {}
        for name in self._specs:
            value = self.param(name).to(device=x.device, dtype=x.dtype)
            if value.numel() == 1:
                out[name] = value.reshape(-1).expand(x.shape[0])
            else:
                out[name] = value.repeat(x.shape[0] // value.shape[0]) if value.shape[0] != x.shape[0] else value
        return out

    # --- processing -------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Process ``x`` of shape (T,), (C, T) or (B, C, T); returns the same shape, time-aligned."""
        return on_audio(x, lambda xb: self.process(xb, **self._batched_params(xb)))

    def process(self, x: torch.Tensor, **params: torch.Tensor) -> torch.Tensor:
        """(B, C, T) audio and (B,) physical parameters -> (B, C, T) audio."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"sample_rate={self.sample_rate}, " + ", ".join(f"{k}={v}" for k, v in self.values().items())
