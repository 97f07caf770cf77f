"""Numba int8 kernels: GEMM, requantization, the quantized linear layer, batched matmul, int4.

Every kernel is bit-exact with its NumPy specification in ``refq.kernels.spec``; the readable
triple loop is ``refq.kernels.reference``. The fast GEMM uses the VNNI instruction ``vpdpbusd``
through an LLVM intrinsic (``refq.kernels.simd``) when the CPU has it, else a portable loop
(``refq.kernels.simd.ISA`` says which). Threading policy: ``refq.kernels.threads``.

>>> import numpy as np
>>> a = np.array([[1, -2, 3]], dtype=np.int8)                  # (M=1, K=3)
>>> w = np.array([[1, 1, 1], [2, 0, -1]], dtype=np.int8)      # (N=2, K=3), PyTorch (out, in)
>>> matmul_int8_packed(a, pack_weight(w))                     # [1-2+3, 2-3]
array([[ 2, -1]], dtype=int32)
"""

from refq.kernels import threads as _threads

THREADING_LAYER = _threads.apply_policy()

from refq.kernels.bmm import bmm_int8, bmm_int8_acc  # noqa: E402
from refq.kernels.gemm import (  # noqa: E402
    PackedWeight,
    matmul_int8,
    matmul_int8_packed,
    max_safe_k,
    pack_weight,
)
from refq.kernels.int4 import pack_int4, pack_weight_int4, unpack_int4  # noqa: E402
from refq.kernels.linear import (  # noqa: E402
    quantize_input,
    quantized_linear,
    quantized_linear_acc,
    quantized_linear_dequant,
)
from refq.kernels.reference import bmm_reference, matmul_reference  # noqa: E402
from refq.kernels.requant import (  # noqa: E402
    quantize_multiplier,
    requantize_fixed_point,
    requantize_float,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from refq.kernels.simd import ISA  # noqa: E402
from refq.kernels.threads import get_num_threads, num_threads, set_num_threads  # noqa: E402

__all__ = [
    "ISA",
    "THREADING_LAYER",
    "PackedWeight",
    "bmm_int8",
    "bmm_int8_acc",
    "bmm_reference",
    "get_num_threads",
    "matmul_int8",
    "matmul_int8_packed",
    "matmul_reference",
    "max_safe_k",
    "num_threads",
    "pack_int4",
    "pack_weight",
    "pack_weight_int4",
    "quantize_input",
    "quantize_multiplier",
    "quantized_linear",
    "quantized_linear_acc",
    "quantized_linear_dequant",
    "requantize_fixed_point",
    "requantize_float",
    "rounding_divide_by_pot",
    "saturating_rounding_doubling_high_mul",
    "set_num_threads",
    "unpack_int4",
]
