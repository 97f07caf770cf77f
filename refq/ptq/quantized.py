"""The modules ``convert`` produces: matmuls that run on refq's int8 kernels.

``QuantizedLinear`` holds no float weight at all. Its state is integer arrays plus the scales:

    weight      int8 codes (N, K), or packed 4/2-bit codes (uint8) on disk
    bias        int32 (N,), scale s_in * s_w[n], zero point 0          (TFLite spec)
    scales      s_w (N,), s_in, s_out (float32); zero points z_w (N,), z_in, z_out (int32)

Forward (Jacob et al. 2018, arXiv:1712.05877, eqs. 2-7; gemmlowp doc/quantization.md):

    x_q   = clamp(round(x / s_in) + z_in)                       quantize on the way in
    acc   = sum_k (x_q - z_in)(w_q - z_w) + bias                int32, int8 x int8 kernel
    y_q   = clamp(z_out + M[n] * acc),  M[n] = s_in s_w[n] / s_out   requantize on the way out
    y     = s_out * (y_q - z_out)                               back to float for LayerNorm etc.

LayerNorm, softmax, GELU and the residual additions stay in float between quantized matmuls:
their integer versions need polynomial approximations (I-BERT, Kim et al. 2021,
arXiv:2101.01321: i-GELU, i-softmax, i-sqrt for LayerNorm), which refq leaves as future work.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refq import kernels
from refq.nn.module import Module
from refq.quant.affine import dequantize_affine
from refq.quant.packing import pack_bits

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


LINEAR_KEYS = {
    "weight", "weight_scale", "weight_zero_point", "weight_bits", "input_scale",
    "input_zero_point", "output_scale", "output_zero_point", "act_qmin", "act_qmax", "requant",
}  # fmt: skip
MATMUL_KEYS = {"a_scale", "a_zero_point", "b_scale", "b_zero_point", "act_qmin", "act_qmax"}


def storage_bits(bits: int) -> int:
    """Field width used on disk for ``bits``-bit weight codes (packing supports 2, 4 and 8).

    >>> storage_bits(3), storage_bits(2), storage_bits(8)
    (4, 2, 8)
    """
    return 2 if bits <= 2 else 4 if bits <= 4 else 8


def _per_tensor(qz: Any, what: str, name: str) -> tuple[np.float32, np.int32, int, int]:
    """Scale, zero point and code range of a calibrated per-tensor uniform quantizer."""
    p = getattr(qz, "qparams", None)
    if p is None or not hasattr(p, "zero_point"):
        raise TypeError(
            f"layer {name!r}: the {what} quantizer must be a calibrated uniform quantizer "
            f"(LinearQuantizer) for the int8 kernels, got {type(qz).__name__}"
        )
    if p.axis is not None:
        raise ValueError(f"layer {name!r}: the {what} quantizer must be per tensor")
    if p.quant_min < -128 or p.quant_max > 255 or (p.quant_min < 0 and p.quant_max > 127):
        raise ValueError(
            f"layer {name!r}: {what} codes [{p.quant_min}, {p.quant_max}] do not fit int8/uint8"
        )
    return np.float32(p.scale), np.int32(p.zero_point), int(p.quant_min), int(p.quant_max)


def _clip(q: np.ndarray, s: dict[str, np.ndarray]) -> np.ndarray:
    """Clamp int8 codes to a narrower code range (e.g. [-8, 7] for 4-bit activations): the
    kernels clamp to int8's range, and clamping twice to nested intervals equals clamping once."""
    lo, hi = int(s["act_qmin"]), int(s["act_qmax"])
    return q if (lo, hi) == (-128, 127) else np.clip(q, lo, hi)


class QuantizedLinear(Module):
    """An int8 ``Linear``: integer weights and bias, computed by ``refq.kernels``.

    Build it with ``from_state`` (arrays) or through ``refq.ptq.convert``; inference only.
    forward(x (..., K) float) -> (..., N) float32.
    """

    def __init__(self, state: dict[str, np.ndarray], name: str = "") -> None:
        super().__init__()
        self.name = name
        self.state = {k: np.asarray(v) for k, v in state.items()}
        s = self.state
        missing = sorted(LINEAR_KEYS - set(s))
        if missing:
            raise ValueError(f"layer {name!r}: quantized state lacks {missing}")
        w = s["weight"]
        if w.dtype != np.int8 or w.ndim != 2:
            raise TypeError(f"layer {name!r}: weight codes must be int8 (N, K), got {w.dtype}")
        self.out_features, self.in_features = w.shape
        n = w.shape[0]
        s["weight_zero_point"] = np.broadcast_to(s["weight_zero_point"], (n,)).astype(np.int32)
        if s["weight_scale"].shape != (n,):
            raise ValueError(f"layer {name!r}: weight_scale must have shape ({n},)")
        if int(s["weight_bits"]) <= 4:  # two codes per byte in memory, unpacked once per call
            self.packed = kernels.pack_weight_int4(pack_bits(w, 4), w.shape[1])
        else:
            self.packed = kernels.pack_weight(w)  # the kernel's layout, prepared once
        self.requant = str(s["requant"])
        in_s, out_s = np.float32(s["input_scale"]), np.float32(s["output_scale"])
        self.multiplier = in_s * s["weight_scale"].astype(np.float64) / out_s  # (N,)
        self.training = False

    # -- the arithmetic ---------------------------------------------------------------------
    def quantize_input(self, x2: np.ndarray) -> np.ndarray:
        """(M, K) float -> (M, K) int8 codes: ``clamp(rint(x / s_in) + z_in, qmin, qmax)``."""
        s = self.state
        return _clip(kernels.quantize_input(x2, s["input_scale"], s["input_zero_point"]), s)

    def forward_codes(self, x_q: np.ndarray) -> np.ndarray:
        """(M, K) int8 input codes -> (M, N) int8 output codes, integers all the way."""
        s = self.state
        y_q = kernels.quantized_linear(
            x_q,
            int(s["input_zero_point"]),
            self.packed,
            s["weight_zero_point"],
            s.get("bias"),
            self.multiplier,
            int(s["output_zero_point"]),
            np.int8,
            mode=self.requant,
        )  # (M, K) int8 @ (K, N) int8 -> int32 -> (M, N) int8
        return _clip(y_q, s)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"layer {self.name!r}: last axis must be in_features={self.in_features}, "
                f"got shape {x.shape}"
            )
        x2 = x.reshape(-1, self.in_features)  # (..., K) -> (M, K)
        y_q = self.forward_codes(self.quantize_input(x2))  # (M, K) int8 -> (M, N) int8
        s = self.state
        y = dequantize_affine(y_q, s["output_scale"], s["output_zero_point"])
        return y.reshape(*x.shape[:-1], self.out_features)  # (M, N) -> (..., N)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        raise RuntimeError(f"layer {self.name!r} is a converted int8 layer: inference only")

    def stored_arrays(self) -> dict[str, np.ndarray]:
        """What a checkpoint stores: codes packed below 8 bits (2- or 4-bit fields, refq.quant
        packing layout), weight zero points as one scalar when they are all equal (symmetric
        weights: 0), scales float32, bias int32."""
        out = {k: v for k, v in self.state.items() if k != "requant"}
        field = storage_bits(int(self.state["weight_bits"]))
        if field < 8:
            out["weight_packed"] = pack_bits(out.pop("weight"), field)  # (N, K) -> (N, ceil)
        zp = out["weight_zero_point"]
        if zp.ndim and np.all(zp == zp[0]):
            out["weight_zero_point"] = np.int32(zp[0])
        return out

    def storage_nbytes(self) -> int:
        """Bytes this layer occupies in a checkpoint (``stored_arrays``)."""
        return int(sum(v.nbytes for v in self.stored_arrays().values()))

    def __repr__(self) -> str:
        bits = int(self.state["weight_bits"])
        return f"QuantizedLinear({self.in_features}, {self.out_features}, w{bits}, {self.requant})"


class QuantizedMatMul(Module):
    """An int8 attention matmul ``a @ b``: both operands quantized per tensor, int32 batched
    product (``refq.kernels.bmm_int8_acc``), result dequantized with ``s_a * s_b``:

        a @ b ~= s_a s_b * sum_k (a_q - z_a)(b_q - z_b)

    The output goes to softmax (Q K^T) or the head merge (P V), both float, so it is not
    requantized.
    """

    def __init__(self, state: dict[str, np.ndarray], name: str = "") -> None:
        super().__init__()
        self.name = name
        self.state = {k: np.asarray(v) for k, v in state.items()}
        missing = sorted(MATMUL_KEYS - set(self.state))
        if missing:
            raise ValueError(f"layer {name!r}: quantized state lacks {missing}")
        self.training = False

    def _q(self, x: np.ndarray, side: str) -> np.ndarray:
        s = self.state
        return _clip(kernels.quantize_input(x, s[f"{side}_scale"], s[f"{side}_zero_point"]), s)

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
            raise ValueError(f"layer {self.name!r}: shapes {a.shape} and {b.shape} do not contract")
        lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        a3 = np.broadcast_to(a, lead + a.shape[-2:]).reshape(-1, *a.shape[-2:])  # (B, M, K)
        b3 = np.broadcast_to(b, lead + b.shape[-2:]).reshape(-1, *b.shape[-2:])  # (B, K, N)
        s = self.state
        a_q = self._q(a3, "a")  # (B, M, K) int8
        b_q = self._q(b3, "b")  # (B, K, N) int8
        acc = kernels.bmm_int8_acc(a_q, int(s["a_zero_point"]), b_q, int(s["b_zero_point"]))
        # (B, M, K) int8 @ (B, K, N) int8 -> (B, M, N) int32 = sum_k (a - z_a)(b - z_b)
        out = acc.astype(np.float32) * (np.float32(s["a_scale"]) * np.float32(s["b_scale"]))
        return out.reshape(*lead, a.shape[-2], b.shape[-1])  # (B, M, N) -> (..., M, N)

    def backward(self, dout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise RuntimeError(f"layer {self.name!r} is a converted int8 matmul: inference only")

    def stored_arrays(self) -> dict[str, np.ndarray]:
        return dict(self.state)

    def storage_nbytes(self) -> int:
        return int(sum(v.nbytes for v in self.state.values()))

    def __repr__(self) -> str:
        return "QuantizedMatMul(int8)"
