"""Fake quantization with the clipped straight-through estimator (STE).

The seed's QAT recipe (seed document section 3, "QAT"): insert fake-quantization nodes, train
with the quantization error inside the loss, convert. A fake-quantization node computes

    forward:   y  = fake_quant(x) = dequantize(quantize(x))            (float in, float out)
    backward:  dx = dy * [quant_min <= q_unclamped <= quant_max]       (clipped STE)

with ``q_unclamped = round(x / scale) + zero_point``, the code *before* it is clamped to
``[quant_min, quant_max]``; the bounds are inclusive. ``round`` has derivative 0 almost
everywhere, so the true gradient is useless for training; the straight-through estimator
(Bengio, Leonard and Courville 2013, arXiv:1308.3432) treats ``round`` as the identity in the
backward pass and keeps only the clamp's derivative. This is PyTorch's ``FakeQuantize``
(ATen ``FakeQuantPerTensorAffine.cpp``: the mask ``quant_min <= qval <= quant_max`` is taken on
``qval = nearbyint(x * inv_scale) + zero_point`` before clamping).

Which STE a quantizer gets (``ste_for``):

- a quantizer with its own ``ste_mask(x) -> bool array`` method: that one;
- a linear quantizer with ``qparams`` (``refq.quant.LinearQuantizer``): the clipped STE above;
- ``LogQuantizer`` / ``PowerOfTwoQuantizer``: the log STE of ``refq.qat.log_ste``;
- any other object with the three quantizer methods: the plain (identity) STE of Bengio et al.,
  ``dx = dy`` everywhere, because nothing tells where such a quantizer clips.

Ranges: while the observer is enabled, every forward feeds ``x`` to the observer and sets the
quantizer's range from it (``quantizer.set_range(*observer.calculate_range())``); without an
observer, ``quantizer.fit(x)`` (the batch's own min/max). ``enable_observer(False)`` freezes the
range (PyTorch's ``disable_observer``); ``enable_fake_quant(False)`` makes the node the identity.
As in PyTorch, these two flags, not ``train()``/``eval()``, decide what the node does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from refq.nn.module import Module
from refq.qat.log_ste import is_log_quantizer, log_ste_mask
from refq.quant.affine import dequantize_affine, quantize_affine
from refq.quant.linear import QParams

SteMask = Callable[[Any, np.ndarray], np.ndarray]


def _has_methods(obj: object, *names: str) -> bool:
    return all(callable(getattr(obj, n, None)) for n in names)


def check_quantizer(quantizer: object) -> None:
    """Raise TypeError unless ``quantizer`` has ``quantize``, ``dequantize`` and ``fake_quant``.

    >>> check_quantizer(object())
    Traceback (most recent call last):
    ...
    TypeError: quantizer must have quantize(), dequantize() and fake_quant() methods, got object
    """
    if not _has_methods(quantizer, "quantize", "dequantize", "fake_quant"):
        raise TypeError(
            "quantizer must have quantize(), dequantize() and fake_quant() methods, "
            f"got {type(quantizer).__name__}"
        )


def ste_for(quantizer: object) -> str:
    """Name of the STE used for ``quantizer``: "own", "affine", "log" or "identity".

    >>> from refq.quant.linear import LinearQuantizer
    >>> from refq.quant.log import LogQuantizer
    >>> ste_for(LinearQuantizer(4)), ste_for(LogQuantizer(4))
    ('affine', 'log')
    """
    if callable(getattr(quantizer, "ste_mask", None)):
        return "own"
    if is_log_quantizer(quantizer):
        return "log"
    if hasattr(quantizer, "qparams") and hasattr(quantizer, "quant_min"):
        return "affine"
    return "identity"


class FakeQuantBase(Module):
    """What ``FakeQuantize`` and ``LSQFakeQuantize`` share: the two PyTorch flags, a name for
    messages, a forward counter, and the divergence guard (NaN/Inf raise ValueError naming the
    module and the forward call)."""

    def __init__(self, observer: object | None = None, name: str | None = None) -> None:
        super().__init__()
        if observer is not None and not _has_methods(observer, "observe", "calculate_range"):
            raise TypeError(
                "observer must have observe(x) and calculate_range() methods, "
                f"got {type(observer).__name__}"
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}")
        self.observer = observer
        self.name = name
        self.observer_enabled = True
        self.fake_quant_enabled = True
        self.num_forward = 0  # forward calls so far: the "step" named in error messages
        self._cache: dict[str, Any] | None = None

    # -- PyTorch's switches --------------------------------------------------------------------
    def enable_observer(self, enabled: bool = True) -> FakeQuantBase:
        """Let the observer update the range (True) or freeze it (False). Returns self."""
        self.observer_enabled = bool(enabled)
        return self

    def disable_observer(self) -> FakeQuantBase:
        """``enable_observer(False)``: freeze the range (PyTorch ``disable_observer``)."""
        return self.enable_observer(False)

    def enable_fake_quant(self, enabled: bool = True) -> FakeQuantBase:
        """Quantize in the forward (True) or pass ``x`` through unchanged (False)."""
        self.fake_quant_enabled = bool(enabled)
        return self

    def disable_fake_quant(self) -> FakeQuantBase:
        """``enable_fake_quant(False)`` (PyTorch ``disable_fake_quant``)."""
        return self.enable_fake_quant(False)

    # -- messages and guards -------------------------------------------------------------------
    def where(self) -> str:
        """``"FakeQuantize 'name' (forward call N)"``: the prefix of every error message."""
        label = repr(self.name) if self.name is not None else "(unnamed)"
        return f"{type(self).__name__} {label} (forward call {self.num_forward})"

    def check_finite(self, a: np.ndarray, what: str) -> None:
        """Raise ValueError naming this module if ``a`` holds NaN or Inf (training diverged)."""
        bad = ~np.isfinite(a)
        if bad.any():
            first = np.unravel_index(int(np.argmax(bad)), a.shape) if a.ndim else ()
            raise ValueError(
                f"{self.where()}: {what} contains NaN or Inf ({int(bad.sum())} of {a.size} "
                f"values, first at index {tuple(int(i) for i in first)}): training diverged"
            )

    def _input(self, x: object) -> np.ndarray:
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"{self.where()}: input must be a float array, got dtype {x.dtype}")
        self.check_finite(x, "input")
        return x

    def _dout(self, dout: object) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError(f"{self.where()}: backward called before forward")
        dout = np.asarray(dout)
        if dout.shape != self._cache["shape"]:
            raise ValueError(
                f"{self.where()}: dout shape {dout.shape} != forward output shape "
                f"{self._cache['shape']}"
            )
        self.check_finite(dout, "incoming gradient dout")
        return dout


class FakeQuantize(FakeQuantBase):
    """Fake-quantization node: ``y = quantizer.fake_quant(x)``, backward the clipped STE.

    Forward: ``y = dequantize(quantize(x))`` (for a linear quantizer, refq.quant equations
    A1-A3: ``q = clamp(round(x / scale) + zero_point, quant_min, quant_max)``,
    ``y = (q - zero_point) * scale``), returned in x's dtype.
    Backward (Bengio et al. 2013, arXiv:1308.3432; PyTorch ``FakeQuantPerTensorAffine.cpp``):
    ``dx = dy * [quant_min <= round(x / scale) + zero_point <= quant_max]`` (inclusive, before
    clamping). Log and power-of-two quantizers use ``refq.qat.log_ste``; see the module
    docstring for the others. No parameters: ``params`` and ``grads`` are empty.

    For a linear quantizer the node evaluates A1-A2 through ``refq.quant.affine`` with the
    quantizer's qparams, rounding mode and generator, keeping the codes from before the clamp
    for the STE: the output is bit-identical to ``quantizer.fake_quant(x)`` (tested, stochastic
    rounding included). Other quantizers are called as they are: ``quantizer.fake_quant(x)``.

    Args:
        quantizer: any refq quantizer (or an object with its three methods); the node sets its
            range and, for linear ones, ``quantizer.qparams`` is what ``convert`` reads.
        observer: optional refq.calibration observer (``observe``, ``calculate_range``).
        name: used in error messages (e.g. the dotted name of the wrapped layer).
        ste_mask: optional ``f(quantizer, x) -> bool array`` replacing the automatic STE choice.

    Example: 4-bit signed affine (codes [-8, 7]) on the range [-1, 2]: scale 0.2, zero point -3.
    2.1 / 0.2 = 10.5 -> 10 (half to even) -> code 7 = quant_max: inside, gradient 1;
    2.2 / 0.2 -> 11 -> code 8 > 7: clipped, gradient 0.

    >>> from refq.quant.linear import LinearQuantizer
    >>> fq = FakeQuantize(LinearQuantizer(bits=4).set_range(-1.0, 2.0)).disable_observer()
    >>> fq(np.array([0.5, 2.1, 2.2], dtype=np.float32))
    array([0.4, 2. , 2. ], dtype=float32)
    >>> fq.backward(np.ones(3, dtype=np.float32))
    array([1., 1., 0.], dtype=float32)
    """

    def __init__(
        self,
        quantizer: Any,
        observer: object | None = None,
        *,
        name: str | None = None,
        ste_mask: SteMask | None = None,
    ) -> None:
        super().__init__(observer, name)
        check_quantizer(quantizer)
        if observer is not None and not callable(getattr(quantizer, "set_range", None)):
            raise TypeError(
                f"an observer needs a calibratable quantizer (with set_range), "
                f"got {type(quantizer).__name__}"
            )
        if ste_mask is not None and not callable(ste_mask):
            raise TypeError("ste_mask must be callable as ste_mask(quantizer, x)")
        self.quantizer = quantizer
        self.ste_mask = ste_mask

    @property
    def qparams(self) -> QParams | None:
        """The wrapped quantizer's ``qparams`` (None if it has none or no range yet)."""
        return getattr(self.quantizer, "qparams", None)

    def _update_range(self, x: np.ndarray) -> None:
        q = self.quantizer
        if self.observer is not None:
            self.observer.observe(x)
            q.set_range(*self.observer.calculate_range())
        elif callable(getattr(q, "fit", None)):
            q.fit(x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``y = fake_quant(x)`` (identity while fake quant is disabled); caches the STE mask."""
        self.num_forward += 1
        x = self._input(x)
        try:
            if self.observer_enabled:
                self._update_range(x)
            if not self.fake_quant_enabled:
                self._cache = {"shape": x.shape, "kind": "off"}
                return x
            return self._fake_quant(x)
        except ValueError as e:  # e.g. no range yet, a bad scale: say which node
            if str(e).startswith(type(self).__name__):
                raise
            raise ValueError(f"{self.where()}: {e}") from e

    def _fake_quant(self, x: np.ndarray) -> np.ndarray:
        q = self.quantizer
        kind = "custom" if self.ste_mask is not None else ste_for(q)
        if kind == "affine":
            p = q.qparams
            if p is None:
                raise ValueError("quantizer has no range yet: call set_range(min, max) or fit(x)")
            self.check_finite(np.asarray(p.scale), "scale")
            # Codes of A1 clamped one step *outside* [quant_min, quant_max]: below, inside and
            # above stay distinguishable, so these answer the STE's question exactly as the
            # unclamped codes would. The quantizer's own rng: stochastic rounding draws the same.
            q_unclamped = quantize_affine(
                x, p.scale, p.zero_point, p.quant_min - 1, p.quant_max + 1,
                p.axis, getattr(q, "rounding", "half_even"), getattr(q, "rng", None),
                p.group_size,
            )  # fmt: skip
            codes = np.clip(q_unclamped, p.quant_min, p.quant_max)  # the clamp of A1
            y = dequantize_affine(codes, p.scale, p.zero_point, p.axis, p.group_size)
            self._cache = {
                "shape": x.shape, "kind": kind, "q_unclamped": q_unclamped,
                "quant_min": p.quant_min, "quant_max": p.quant_max,
            }  # fmt: skip
        else:
            y = np.asarray(q.fake_quant(x))
            if kind == "custom":
                mask = self.ste_mask(q, x)
            elif kind == "own":
                mask = q.ste_mask(x)
            elif kind == "log":
                mask = log_ste_mask(q, x)
            else:  # identity STE: nothing says where this quantizer clips
                mask = np.ones(x.shape, dtype=bool)
            mask = np.asarray(mask)
            if mask.shape != x.shape or mask.dtype != bool:
                raise ValueError(
                    f"STE mask must be a bool array of shape {x.shape}, "
                    f"got {mask.dtype} {mask.shape}"
                )
            self._cache = {"shape": x.shape, "kind": kind, "mask": mask}
        self.check_finite(y, "fake-quantized output")
        return y.astype(x.dtype, copy=False)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """The clipped straight-through estimator: ``dx = dy`` inside the range, 0 outside."""
        dout = self._dout(dout)
        c = self._cache
        if c["kind"] == "off":
            return dout
        if c["kind"] == "affine":
            q_unclamped, quant_min, quant_max = c["q_unclamped"], c["quant_min"], c["quant_max"]
            # STE, Bengio et al. 2013 (arXiv:1308.3432); bounds inclusive, before the clamp:
            dx = dout * ((q_unclamped >= quant_min) & (q_unclamped <= quant_max))
        else:
            dx = dout * c["mask"]  # the log / own / identity STE mask, computed in forward
        return dx.astype(dout.dtype, copy=False)

    def __repr__(self) -> str:
        obs = None if self.observer is None else type(self.observer).__name__
        return (
            f"FakeQuantize({self.quantizer!r}, observer={obs}, "
            f"name={self.name!r}, observer_enabled={self.observer_enabled}, "
            f"fake_quant_enabled={self.fake_quant_enabled})"
        )


# -- switching every node of a model at once (PyTorch: model.apply(disable_observer)) -----------


def fake_quant_modules(root: Module) -> Iterator[tuple[str, FakeQuantBase]]:
    """Yield ``(dotted_name, node)`` for every fake-quant node under ``root`` (depth first).

    >>> class Pair(Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.w = FakeQuantize(LinearQuantizer(4)); self.a = FakeQuantize(LinearQuantizer(8))
    >>> from refq.quant.linear import LinearQuantizer
    >>> [name for name, _ in fake_quant_modules(Pair())]
    ['w', 'a']
    """
    for name, m in root.named_modules():
        if isinstance(m, FakeQuantBase):
            yield name, m


def set_observers(root: Module, enabled: bool) -> int:
    """``enable_observer(enabled)`` on every fake-quant node under ``root``; returns how many.

    ``set_observers(model, False)`` freezes every range (PyTorch ``disable_observer``).
    """
    nodes = [m for _, m in fake_quant_modules(root)]
    for m in nodes:
        m.enable_observer(enabled)
    return len(nodes)


def set_fake_quant(root: Module, enabled: bool) -> int:
    """``enable_fake_quant(enabled)`` on every fake-quant node under ``root``; returns how many."""
    nodes = [m for _, m in fake_quant_modules(root)]
    for m in nodes:
        m.enable_fake_quant(enabled)
    return len(nodes)
