"""Float simulation (fake quantization) of a converted layer, for checking the int8 path.

The int8 path and this simulation use the same qparams; they differ only in the arithmetic:
the simulation computes in float64 on dequantized values, then rounds the output once. So the
int8 output codes and the simulated ones agree to within one output step (the float/fixed-point
requantizer's own rounding), which ``tests/test_ptq_*.py`` checks.

    x_hat = s_in (q_in - z_in),  w_hat = s_w (q_w - z_w),  b_hat = s_in s_w bias_q
    q_sim = clamp(round((x_hat @ w_hat^T + b_hat) / s_out) + z_out, qmin, qmax)
"""

from __future__ import annotations

import numpy as np

from refq.ptq.quantized import QuantizedLinear


def simulate_linear_codes(layer: QuantizedLinear, x: np.ndarray) -> np.ndarray:
    """Output codes (M, N) of ``layer`` computed by float64 fake quantization of x (M, K)."""
    s = layer.state
    x_q = layer.quantize_input(x.reshape(-1, layer.in_features)).astype(np.float64)  # (M, K)
    x_hat = float(s["input_scale"]) * (x_q - float(s["input_zero_point"]))
    w_s = s["weight_scale"].astype(np.float64)[:, None]  # (N, 1)
    w_hat = w_s * (s["weight"].astype(np.float64) - s["weight_zero_point"][:, None])  # (N, K)
    y = x_hat @ w_hat.T  # (M, K) @ (K, N) -> (M, N)
    if "bias" in s:
        y += float(s["input_scale"]) * w_s[:, 0] * s["bias"].astype(np.float64)
    q = np.rint(y / float(s["output_scale"])) + int(s["output_zero_point"])
    return np.clip(q, int(s["act_qmin"]), int(s["act_qmax"])).astype(np.int64)
