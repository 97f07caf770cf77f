"""``QConfig``: which quantizer and which observer each tensor of a matmul gets.

PyTorch's ``QConfig(activation=..., weight=...)`` names two *observer* factories, and each
observer also carries the dtype and scheme. refq splits the two roles (STYLE.md): a *quantizer*
holds the formula (bits, scheme, granularity, rounding), an *observer* only collects statistics
and reports a range. A ``QConfig`` therefore names four factories:

    weight()                   -> fresh weight quantizer      (axis 0 = per output channel)
    activation()               -> fresh activation quantizer  (per tensor)
    weight_observer(q)         -> observer for the weight, told the target grid q
    activation_observer(q)     -> observer for each activation, told the target grid q

Presets (the names used in papers and in PyTorch's tutorials):

    W8A8      int8 weights, symmetric per output channel; int8 activations, affine per tensor
    W4A8      the same with 4-bit weights ([-8, 7], stored packed two per byte)
    W8A8_LOG  8-bit log-scale weights (seed section 4.2, signed), int8 affine activations

>>> qc = get_qconfig(weight_bits=4, act_bits=8, observer="minmax")
>>> qc.weight()
LinearQuantizer(bits=4, symmetric, [-8, 7], axis=0, group_size=None, rounding='half_even')
>>> qc.describe()["observer"]
'minmax'
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from refq.quant import LinearQuantizer, LogQuantizer

OBSERVERS = ("minmax", "ema", "percentile", "mse", "entropy")
REQUANT_MODES = ("fixed_point", "float")


def make_observer(name: str, quantizer: Any, axis: int | None = None) -> Any:
    """Observer called ``name`` (one of OBSERVERS) for the grid of ``quantizer``.

    >>> type(make_observer("mse", LinearQuantizer(8))).__name__
    'HistogramObserver'
    """
    from refq import calibration as cal

    if name == "minmax":
        return cal.MinMaxObserver(axis=axis)
    if name == "ema":
        return cal.MovingAverageMinMaxObserver(axis=axis)
    if name == "percentile":
        return cal.PercentileObserver(axis=axis)
    if name == "mse":
        if _plain_uniform(quantizer):  # the built-in grid model: same grid, ~50x faster search
            return cal.HistogramObserver(
                axis=axis, bits=quantizer.bits, symmetric=quantizer.symmetric
            )
        return cal.HistogramObserver(axis=axis, quantizer=quantizer)
    if name == "entropy":
        return cal.EntropyObserver(axis=axis, quantizer=quantizer)
    raise ValueError(f"unknown observer {name!r}: choose one of {', '.join(OBSERVERS)}")


def _plain_uniform(q: Any) -> bool:
    """A full-range LinearQuantizer without groups: its grid is the observers' built-in model."""
    return (
        type(q) is LinearQuantizer and q.group_size is None and not q.narrow_range
        and (q.signed or not q.symmetric)
    )  # fmt: skip


@dataclass(frozen=True)
class QConfig:
    """What ``prepare`` attaches to each quantizable matmul (see the module docstring).

    ``quantize_attention`` also quantizes the two attention matmuls (Q K^T and P V);
    ``requant`` chooses how int32 accumulators become int8 outputs: ``"float"`` (default, PyTorch's
    fbgemm: ``rint(float32(acc) * float32(M))``, the fast path of refq's kernels) or
    ``"fixed_point"`` (TFLite/gemmlowp: int32 multiplier and shift, integer only).
    """

    weight: Callable[[], Any]
    activation: Callable[[], Any]
    activation_observer: Callable[[Any], Any]
    weight_observer: Callable[[Any], Any] | None = None
    quantize_attention: bool = False
    requant: str = "float"
    spec: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.requant not in REQUANT_MODES:
            raise ValueError(f"requant must be one of {REQUANT_MODES}, got {self.requant!r}")

    def describe(self) -> dict:
        """JSON-able description (what the preset or ``get_qconfig`` was asked for)."""
        return dict(self.spec, quantize_attention=self.quantize_attention, requant=self.requant)


def get_qconfig(
    weight_bits: int = 8,
    act_bits: int = 8,
    observer: str = "minmax",
    per_channel: bool = True,
    log: bool = False,
    weight_observer: str = "minmax",
    quantize_attention: bool = False,
    requant: str = "float",
) -> QConfig:
    """Build a QConfig from the knobs the CLI exposes.

    Weights: symmetric signed ``weight_bits`` codes (narrow range [-127, 127] at 8 bits, as
    TFLite, so that -128 * -128 never occurs), per output channel unless ``per_channel=False``;
    with ``log=True`` the signed log quantizer (seed formula 4.2 on |w|, one sign bit) instead.
    Activations: affine signed ``act_bits`` codes per tensor, range from ``observer``.

    >>> get_qconfig(8, 8, per_channel=False).weight().axis is None
    True
    >>> get_qconfig(1, 8)
    Traceback (most recent call last):
    ...
    ValueError: weight_bits must be an integer in [2, 8] for the int8 kernels, got 1
    """
    for name, b in (("weight_bits", weight_bits), ("act_bits", act_bits)):
        if isinstance(b, bool) or not isinstance(b, int) or not 2 <= b <= 8:
            raise ValueError(f"{name} must be an integer in [2, 8] for the int8 kernels, got {b}")
    if observer not in OBSERVERS:
        raise ValueError(f"unknown observer {observer!r}: choose one of {', '.join(OBSERVERS)}")
    if weight_observer not in OBSERVERS:
        raise ValueError(f"unknown weight observer {weight_observer!r}: choose one of {OBSERVERS}")
    axis = 0 if per_channel else None
    if log:
        weight = functools.partial(LogQuantizer, bits=weight_bits, axis=axis)
    else:
        weight = functools.partial(
            LinearQuantizer, bits=weight_bits, symmetric=True, narrow_range=weight_bits == 8,
            axis=axis,
        )  # fmt: skip
    activation = functools.partial(LinearQuantizer, bits=act_bits, symmetric=False)
    spec = dict(
        weight_bits=weight_bits, act_bits=act_bits, observer=observer, per_channel=per_channel,
        log=log, weight_observer=weight_observer,
    )  # fmt: skip
    return QConfig(
        weight=weight,
        activation=activation,
        activation_observer=functools.partial(make_observer, observer),
        weight_observer=functools.partial(make_observer, weight_observer, axis=axis),
        quantize_attention=quantize_attention,
        requant=requant,
        spec=spec,
    )


W8A8 = get_qconfig(8, 8)
W4A8 = get_qconfig(4, 8)
W8A8_LOG = get_qconfig(8, 8, log=True)
