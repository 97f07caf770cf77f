"""Learned step size quantization (LSQ): the scale is a trained parameter with its own gradient.

Esser, McKinstry, Bablani, Appuswamy and Modha 2019, "Learned Step Size Quantization",
arXiv:1902.08153, in PyTorch's form (``torch/ao/quantization/_learnable_fake_quantize.py``,
ATen ``_fake_quantize_learnable_per_tensor_affine_backward``). With ``v = x / s`` and
``z`` the (integer) zero point::

    forward      q     = clamp(round(v) + z, quant_min, quant_max)           refq.quant A1
                 x_hat = (q - z) * s                                         refq.quant A2
    d x_hat/dx   1 if quant_min <= round(v) + z <= quant_max else 0         clipped STE
    d x_hat/ds   round(v) - v       inside     (LSQ eq. 3: -v + round(v))   STE through round
                 quant_min - z      below      (clamped: exact derivative)
                 quant_max - z      above
                 (in one line: (q - z) - [inside] * x / s, q the clamped code)
    d x_hat/dz   0 inside, -s where clamped (learned zero point, STE through round(z))
    grad scale   both gradients are multiplied by g = 1 / sqrt(N * quant_max)     (LSQ sec. 2.2)
    init         s = 2 * mean(|x|) / sqrt(quant_max)                              (LSQ sec. 2.1)

``N`` is the number of elements that share the scale: ``x.size`` per tensor, ``x.size / C`` per
channel. (PyTorch uses ``x.size`` in both cases; refq uses the per-scale count so that a
per-channel LSQ is exactly a loop of per-tensor LSQs. The paper's Q_P is ``quant_max`` when the
zero point is 0, which is the case the paper treats.)

Where the STE enters: inside the range ``x_hat(s) = round(x / s) * s`` is piecewise linear in
``s`` with true derivative ``round(x / s)`` (``round`` is locally constant). LSQ's gradient
``round(x/s) - x/s`` is the derivative of the STE-smoothed function in which ``round(v)`` is
replaced near ``v0 = x / s0`` by ``round(v0) + (v - v0)``; the extra ``-x/s`` term is what makes
the scale feel how close each value is to a rounding transition. At the clamps there is no
rounding and LSQ's gradient is the true derivative.

A learned scale must stay positive: before every forward (and whenever ``clamp_scale()`` is
called, e.g. after an optimizer step) a scale below the floor ``FLOAT32_EPS`` (float32 machine
epsilon, 1.19e-07: PyTorch's ``_LearnableFakeQuantize.eps``) is raised to the floor, counted in
``num_scale_clamps`` and reported with a ``RuntimeWarning`` naming the module (PyTorch clamps
silently). A NaN or Inf scale raises ValueError naming the module and the forward call.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np

from refq.qat.fake_quant import FakeQuantBase, check_quantizer
from refq.quant.affine import FLOAT32_EPS, dequantize_affine, quantize_affine
from refq.quant.base import normalize_axis
from refq.quant.linear import QParams


def lsq_init_scale(x: np.ndarray, quant_max: int, axis: int | None = None) -> np.ndarray:
    """LSQ's initial step size ``s = 2 * mean(|x|) / sqrt(quant_max)`` (arXiv:1902.08153, 2.1).

    Per channel (``axis``) the mean runs over all other axes: shape ``(C,)``. float64.

    Example: x = [1, -3], quant_max = 4: 2 * 2 / 2 = 2.

    >>> float(lsq_init_scale(np.array([1.0, -3.0]), 4))
    2.0
    >>> lsq_init_scale(np.array([[1.0, -3.0], [0.5, 0.5]]), 4, axis=0).tolist()
    [2.0, 0.5]
    """
    if quant_max <= 0:
        raise ValueError(f"LSQ needs quant_max > 0, got {quant_max}")
    a = np.abs(np.asarray(x, dtype=np.float64))
    if axis is None:
        m = a.mean()
    else:
        ax = normalize_axis(axis, a.ndim)
        m = a.mean(axis=tuple(i for i in range(a.ndim) if i != ax))  # (.., C, ..) -> (C,)
    return np.asarray(2.0 * m / np.sqrt(quant_max))


def lsq_grad_scale(n: int, quant_max: int) -> float:
    """LSQ's gradient scale ``g = 1 / sqrt(n * quant_max)`` (arXiv:1902.08153, section 2.2).

    >>> lsq_grad_scale(16, 4)
    0.125
    """
    return float(1.0 / np.sqrt(n * quant_max))


class LSQFakeQuantize(FakeQuantBase):
    """Fake quantization with a learned scale (and optionally a learned zero point), LSQ.

    Formulas: see the module docstring (forward A1-A2 of refq.quant with ``s = params["scale"]``;
    ``d x_hat / d s = round(x/s) - x/s`` inside, ``quant_min - z`` / ``quant_max - z`` where
    clamped; gradients times ``1 / sqrt(N * quant_max)``). Source: Esser et al. 2019,
    arXiv:1902.08153; PyTorch ``_LearnableFakeQuantize``.

    Args:
        quantizer: a linear quantizer (``refq.quant.LinearQuantizer``) giving ``quant_min``,
            ``quant_max``, ``axis`` (per channel) and ``rounding``; with an observer, its
            ``set_range`` turns the observed range into the initial scale and zero point.
            Groups (``group_size``) are not supported.
        observer: optional; while enabled, each forward re-initialises scale and zero point
            from it (PyTorch's ``static_enabled``). Disable it to start learning.
        scale: initial scale (``()`` or ``(C,)``); default: from the observer, else LSQ's
            ``2 * mean|x| / sqrt(quant_max)`` on the first forward.
        zero_point: initial zero point; default 0 (signed or affine codes) or the middle code
            (unsigned symmetric codes, as ``calculate_qparams``).
        learn_zero_point: make the zero point a parameter (``params["zero_point"]``, a float
            rounded to the nearest integer and clamped to the code range in the forward).
        grad_scale: multiply the gradients by ``1 / sqrt(N * quant_max)`` (LSQ; default True).
        scale_floor: smallest allowed scale (default float32 eps, as PyTorch).
        name: used in warnings and error messages.

    ``params["scale"]`` and ``grads["scale"]`` follow refq.nn's convention: ``backward``
    accumulates into ``grads`` (call ``zero_grad`` each step); an optimizer updates ``params``.

    Example (hand-worked): 4-bit signed symmetric (codes [-8, 7]), scale 0.5, no grad scale.
    x = 0.75: v = 1.5 -> round 2 -> x_hat 1.0, d/ds = 2 - 1.5 = 0.5;
    x = 5.0: v = 10 -> 10 > 7, clamped to 7 -> x_hat 3.5, d/ds = quant_max = 7.

    >>> from refq.quant.linear import LinearQuantizer
    >>> lsq = LSQFakeQuantize(LinearQuantizer(bits=4, symmetric=True), scale=0.5,
    ...                       grad_scale=False)
    >>> lsq(np.array([0.75, 5.0], dtype=np.float32))
    array([1. , 3.5], dtype=float32)
    >>> lsq.backward(np.ones(2, dtype=np.float32))
    array([1., 0.], dtype=float32)
    >>> float(lsq.grads["scale"])
    7.5
    """

    def __init__(
        self,
        quantizer: Any,
        observer: object | None = None,
        *,
        scale: float | np.ndarray | None = None,
        zero_point: int | np.ndarray | None = None,
        learn_zero_point: bool = False,
        grad_scale: bool = True,
        scale_floor: float = float(FLOAT32_EPS),
        name: str | None = None,
    ) -> None:
        super().__init__(observer, name)
        check_quantizer(quantizer)
        for attr in ("quant_min", "quant_max", "axis"):
            if not hasattr(quantizer, attr):
                raise TypeError(f"LSQ needs a linear quantizer with {attr!r}; got {quantizer!r}")
        if getattr(quantizer, "group_size", None) is not None:
            raise ValueError("LSQFakeQuantize supports per-tensor and per-channel, not groups")
        qmin, qmax = int(quantizer.quant_min), int(quantizer.quant_max)
        if not qmin <= 0 < qmax:
            raise ValueError(
                f"LSQ needs quant_min <= 0 < quant_max (the range must hold zero), "
                f"got [{qmin}, {qmax}]"
            )
        if observer is not None and not callable(getattr(quantizer, "set_range", None)):
            raise TypeError("an observer needs a calibratable quantizer (with set_range)")
        if learn_zero_point and getattr(quantizer, "symmetric", False):
            raise ValueError("a symmetric quantizer has a fixed zero point: learn_zero_point=False")
        if not (np.isfinite(scale_floor) and scale_floor > 0):
            raise ValueError(f"scale_floor must be finite and > 0, got {scale_floor}")
        self.quantizer = quantizer
        self.quant_min, self.quant_max = qmin, qmax
        self.axis = None if quantizer.axis is None else int(quantizer.axis)
        self.rounding = getattr(quantizer, "rounding", "half_even")
        self.learn_zero_point = bool(learn_zero_point)
        self.grad_scale = bool(grad_scale)
        self.scale_floor = float(scale_floor)
        self.num_scale_clamps = 0
        self._zp_init = zero_point
        if scale is not None:
            s = np.asarray(scale, dtype=np.float32)
            if s.ndim != (0 if self.axis is None else 1):
                raise ValueError(
                    f"scale must have shape () per tensor or (C,) per channel, got {s.shape}"
                )
            self._set_qparams(s, self._default_zero_point(s.shape))

    # -- parameters ----------------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        """True once the scale exists (given, observed or LSQ-initialised)."""
        return "scale" in self.params

    def _default_zero_point(self, shape: tuple[int, ...]) -> np.ndarray:
        if self._zp_init is not None:
            z = np.broadcast_to(np.asarray(self._zp_init), shape)
        elif getattr(self.quantizer, "symmetric", False) and self.quant_min == 0:
            z = np.full(shape, (self.quant_min + self.quant_max + 1) // 2)  # unsigned symmetric
        else:
            z = np.zeros(shape)
        if np.any(z < self.quant_min) or np.any(z > self.quant_max):
            raise ValueError(f"zero_point must lie in [{self.quant_min}, {self.quant_max}]")
        return np.asarray(z)

    def to_dtype(self, dtype: Any) -> LSQFakeQuantize:
        """Convert the parameters (also those a later lazy initialisation creates)."""
        super().to_dtype(dtype)
        self._param_dtype = np.dtype(dtype)
        return self

    def _set_qparams(self, scale: np.ndarray, zero_point: np.ndarray) -> None:
        """Write scale / zero point in place (new arrays on the first call)."""
        if self.initialized:  # keep the dtype (a parent's to_dtype converts arrays directly)
            dtype = self.params["scale"].dtype
        else:
            dtype = getattr(self, "_param_dtype", np.dtype(np.float32))
        if self.initialized and self.params["scale"].shape == np.shape(scale):
            self.params["scale"][...] = scale
        else:
            self.add_param("scale", np.array(scale, dtype=dtype))
        if self.learn_zero_point:
            if "zero_point" in self.params and self.params["zero_point"].shape == np.shape(scale):
                self.params["zero_point"][...] = zero_point
            else:
                self.add_param("zero_point", np.array(zero_point, dtype=dtype))
        else:
            self.buffers["zero_point"] = np.array(zero_point, dtype=np.int32)

    def _init_from_observer(self, x: np.ndarray) -> None:
        self.observer.observe(x)
        q = copy.deepcopy(self.quantizer).set_range(*self.observer.calculate_range())
        self._set_qparams(q.qparams.scale, q.qparams.zero_point)

    def _init_from_data(self, x: np.ndarray) -> None:
        s = lsq_init_scale(x, self.quant_max, self.axis)
        self._set_qparams(s, self._default_zero_point(s.shape))

    def zero_point_int(self) -> np.ndarray:
        """The integer zero point used in the forward: ``clamp(round(z), quant_min, quant_max)``
        (round half to even, as PyTorch's forward; int32)."""
        z = self.params["zero_point"] if self.learn_zero_point else self.buffers["zero_point"]
        return np.clip(np.rint(z), self.quant_min, self.quant_max).astype(np.int32)

    def clamp_scale(self) -> int:
        """Raise every scale entry below ``scale_floor`` to it, in place; report and count.

        Returns the number of entries raised. NaN/Inf raise ValueError naming the module.
        """
        if not self.initialized:
            return 0
        s = self.params["scale"]
        self.check_finite(s, "learned scale")
        low = s < self.scale_floor
        n = int(low.sum())
        if n:
            where = np.flatnonzero(low).tolist() if s.ndim else "(per tensor)"
            msg = (
                f"{self.where()}: learned scale fell to {float(s[low].min())!r} <= 0 or below the "
                f"floor {self.scale_floor!r} at channel(s) {where}; raised to the floor"
            )
            s[low] = self.scale_floor
            self.num_scale_clamps += n
            self.last_clamp_message = msg
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        return n

    @property
    def qparams(self) -> QParams:
        """Current (scale, integer zero point) as ``refq.quant.QParams`` (float32 / int32)."""
        if not self.initialized:
            raise ValueError(f"{self.where()}: scale not initialised yet (run a forward first)")
        return QParams(
            np.asarray(self.params["scale"], np.float32).copy(),
            self.zero_point_int(),
            self.quant_min,
            self.quant_max,
            self.axis,
            None,
        )

    def export_quantizer(self) -> Any:
        """A deep copy of the quantizer with ``qparams`` set to the learned ones (for convert)."""
        q = copy.deepcopy(self.quantizer)
        q.qparams = self.qparams
        return q

    # -- forward / backward ------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x_hat = (clamp(round(x / s) + z, quant_min, quant_max) - z) * s``, cached."""
        self.num_forward += 1
        x = self._input(x)
        if self.axis is not None:
            ax = normalize_axis(self.axis, x.ndim)
            if self.initialized and self.params["scale"].shape != (x.shape[ax],):
                raise ValueError(
                    f"{self.where()}: {self.params['scale'].shape[0]} channels in the scale, "
                    f"input has {x.shape[ax]} along axis {self.axis}"
                )
        if self.observer is not None and self.observer_enabled:
            self._init_from_observer(x)
        elif not self.initialized:
            self._init_from_data(x)
        self.clamp_scale()
        if not self.fake_quant_enabled:
            self._cache = {"shape": x.shape, "off": True}
            return x
        s = np.asarray(self.params["scale"], dtype=np.float32)  # refq.quant works in float32
        z = self.zero_point_int()
        # A1 with codes clamped one step outside [quant_min, quant_max]: below / inside / above
        # stay distinguishable, which is all the backward needs (as unclamped codes would).
        q_unclamped = quantize_affine(
            x, s, z, self.quant_min - 1, self.quant_max + 1, self.axis, self.rounding,
            getattr(self.quantizer, "rng", None),
        )  # fmt: skip
        codes = np.clip(q_unclamped, self.quant_min, self.quant_max)  # the clamp of A1
        y = dequantize_affine(codes, s, z, self.axis)  # A2, float32
        self._cache = {
            "shape": x.shape, "off": False, "x": x, "codes": codes, "q_unclamped": q_unclamped,
        }  # fmt: skip
        return y.astype(x.dtype, copy=False)

    def _per_scale(self, a: np.ndarray) -> np.ndarray:
        """Sum ``a`` over the elements that share a scale: () per tensor, (C,) per channel."""
        if self.axis is None:
            return a.sum()
        ax = normalize_axis(self.axis, a.ndim)
        return a.sum(axis=tuple(i for i in range(a.ndim) if i != ax))  # (.., C, ..) -> (C,)

    def _expand(self, p: np.ndarray, ndim: int) -> np.ndarray:
        if self.axis is None:
            return p
        ax = normalize_axis(self.axis, ndim)
        shape = [1] * ndim
        shape[ax] = -1
        return p.reshape(shape)  # (C,) -> (1, .., C, .., 1)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """STE for x; LSQ gradients accumulated into ``grads["scale"]`` (and ``"zero_point"``)."""
        dout = self._dout(dout)
        c = self._cache
        if c["off"]:
            return dout
        x, codes, q_unclamped = c["x"], c["codes"], c["q_unclamped"]
        qmin, qmax = self.quant_min, self.quant_max
        ct = np.result_type(x.dtype, dout.dtype, self.params["scale"].dtype)
        s = self._expand(np.asarray(self.params["scale"], np.float32), x.ndim).astype(ct)
        z = self._expand(self.zero_point_int(), x.ndim)  # int32
        inside = (q_unclamped >= qmin) & (q_unclamped <= qmax)  # inclusive, before the clamp
        dx = dout * inside  # STE, Bengio et al. 2013 (arXiv:1308.3432)
        # LSQ (arXiv:1902.08153, eq. 3), x_hat = (q - z) * s with q the clamped code:
        #   d x_hat / d s = (q - z) - [inside] * x / s
        # inside: round(x/s) - x/s; clamped: quant_min - z or quant_max - z (no rounding there).
        with np.errstate(over="ignore"):  # |x / s| -> inf only where clamped: not used there
            v = x.astype(ct, copy=False) / s  # the same division as A1
        dscale = (codes - z).astype(ct) - np.where(inside, v, 0)  # (q - z) int32, exact
        dout_c = dout.astype(ct, copy=False)
        n = x.size if self.axis is None else x.size // x.shape[normalize_axis(self.axis, x.ndim)]
        g = lsq_grad_scale(n, qmax) if self.grad_scale else 1.0
        gs = self.grads["scale"]
        gs += (g * self._per_scale(dout_c * dscale)).astype(gs.dtype)
        if self.learn_zero_point:  # d x_hat / d z = -s where clamped, 0 inside (STE on round z)
            gz = self.grads["zero_point"]
            gz += (g * self._per_scale(dout_c * (-s * ~inside))).astype(gz.dtype)
        self.check_finite(np.asarray(gs), "scale gradient")
        return dx.astype(dout.dtype, copy=False)

    def __repr__(self) -> str:
        return (
            f"LSQFakeQuantize([{self.quant_min}, {self.quant_max}], axis={self.axis}, "
            f"learn_zero_point={self.learn_zero_point}, grad_scale={self.grad_scale}, "
            f"name={self.name!r})"
        )
