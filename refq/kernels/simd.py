"""CPU feature detection and the VNNI micro-kernel, in LLVM IR through Numba's extension API.

The instruction: ``vpdpbusd acc, a, b`` (Intel AVX512-VNNI / AVX-VNNI). Each 32-bit lane ``j`` of
the accumulator gets the dot product of four *unsigned* bytes of ``a`` with four *signed* bytes of
``b``, without saturation:

    acc[j] += sum_{t=0..3} uint8(a[4j + t]) * int8(b[4j + t])          (wraps modulo 2^32)

A 512-bit register holds 16 lanes, so one instruction does 64 multiply-adds (128 ops).

How a GEMM ``C (M, N) int32 = A (M, K) @ B (K, N)`` is fed to it (the layout of ``pack_weight``):

- ``B`` is cut into panels of ``NR = 64`` columns; inside a panel, for every group of four ``k``,
  the 64 columns are stored one after the other, each as its 4 consecutive ``k`` bytes:
  ``packed[panel, g, n, t] = B[4g + t, 64*panel + n]``, i.e. 256 contiguous bytes per ``k``-group,
  = 4 zmm registers (or 8 ymm registers) of 16 (8) columns.
- For a row ``m`` of ``A``, the four bytes ``A[m, 4g:4g+4]`` are read as one int32 and broadcast to
  every lane, so lane ``j`` of ``vpdpbusd(acc, bcast(A[m, 4g:4g+4]), B_vec)`` adds
  ``sum_t A[m, 4g+t] * B[4g+t, n_j]``: exactly one step of ``C[m, n_j]``.
- The micro-kernel keeps an ``MR x NR`` tile of ``C`` in ``MR * NR / W`` vector registers
  (``W`` = 16 lanes for zmm) for the whole ``k`` loop and stores it once.

The instruction multiplies unsigned by signed bytes. int8 activations are made unsigned by the
gemmlowp offset trick (``a_u = a + 128``, computed as ``a XOR 0x80`` on the bytes):

    sum_k a[m,k] b[k,n] = sum_k (a[m,k] + 128) b[k,n] - 128 * sum_k b[k,n]
                        = (A_u @ B)[m, n] - 128 * colsum(B)[n]

so the accumulators start at ``-128 * colsum(B)[n]`` (precomputed once in ``pack_weight``) instead
of 0, and the XOR is one extra vector op per broadcast. uint8 activations start at 0.
The instruction wraps modulo 2^32, so the result is exact whenever the true sum fits int32 (see
``gemm.max_safe_k`` for the K that guarantees it).

Feature detection: llvmlite's host feature string (``+avx512vnni``, ``+avxvnni``, ...) is read
once at import. Functions using an instruction are only *compiled* on first call, so on a CPU
without VNNI the kernels here are never compiled and ``gemm`` falls back to a portable Numba loop.
Set ``REFQ_KERNEL=portable`` (read at import) to force the fallback.
"""

from __future__ import annotations

import os

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

NR = 64  # columns per packed panel (fixed: the packed layout depends on it)
MR = 6  # rows per micro-kernel tile (zmm: 6 * 4 = 24 accumulators + 4 B vectors + broadcasts)


def host_features() -> frozenset[str]:
    """The CPU features LLVM sees on this host, e.g. ``{"avx2", "avx512vnni", ...}``.

    Source: ``llvmlite.binding.get_host_cpu_features()`` (``+feature`` entries only).

    >>> isinstance(host_features(), frozenset)
    True
    """
    try:
        flat = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # some platforms cannot report features
        return frozenset()
    return frozenset(f[1:] for f in flat.split(",") if f.startswith("+"))


def supported_isas(features: frozenset[str] | None = None) -> list[str]:
    """The micro-kernels this CPU can run, fastest first (``"portable"`` always last).

    >>> supported_isas(frozenset({"avx2"}))
    ['portable']
    """
    if features is None:
        features = host_features()
    supported = ["portable"]
    if "avxvnni" in features or {"avx512vnni", "avx512vl"} <= features:
        supported.insert(0, "avxvnni")
    if {"avx512f", "avx512bw", "avx512vnni"} <= features:
        supported.insert(0, "avx512vnni")
    return supported


def select_isa(features: frozenset[str] | None = None, override: str | None = None) -> str:
    """Choose the GEMM micro-kernel: ``"avx512vnni"``, ``"avxvnni"`` or ``"portable"``.

    ``avx512vnni`` needs AVX512-F/BW + VNNI (512-bit ``vpdpbusd``); ``avxvnni`` needs the 256-bit
    form (AVX-VNNI, or AVX512-VNNI with AVX512-VL); otherwise the portable Numba loop.
    ``override`` (from ``REFQ_KERNEL``) may force a choice the CPU supports, or ``"portable"``.

    >>> select_isa(frozenset({"avx2"}))
    'portable'
    >>> select_isa(frozenset({"avx512f", "avx512bw", "avx512vnni", "avx512vl"}))
    'avx512vnni'
    >>> select_isa(frozenset({"avx2", "avxvnni"}))
    'avxvnni'
    """
    supported = supported_isas(features)
    if override:
        if override not in ("avx512vnni", "avxvnni", "portable"):
            raise ValueError(
                f"REFQ_KERNEL={override!r}: expected 'avx512vnni', 'avxvnni' or 'portable'"
            )
        if override not in supported:
            raise ValueError(f"REFQ_KERNEL={override!r} is not supported by this CPU ({supported})")
        return override
    return supported[0]


ISA: str = select_isa(override=os.environ.get("REFQ_KERNEL") or None)

_I8 = ir.IntType(8)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def _emit_microkernel(context, builder, sig, args, mr: int, lanes: int):
    """Emit the ``mr x NR`` VNNI micro-kernel (see the module docstring) into ``builder``.

    Arguments (Numba values): a (1-D uint8/int8 array), a_off, lda, b (1-D int8 packed panel
    storage), b_off, c (1-D int32), c_off, ldc, kg (number of 4-byte ``k`` groups),
    init (1-D int32), init_off, use_init (bool), a_xor (int: 0x80808080 turns int8 bytes into
    uint8 + 128, 0 leaves uint8 bytes alone).

    Accumulator start: ``init[init_off : init_off + NR]`` broadcast over the rows when
    ``use_init`` (first ``k`` block), else the current ``C`` tile (later ``k`` blocks).
    """
    ta, tb, tc, tinit = sig.args[0], sig.args[3], sig.args[5], sig.args[9]
    args = [
        context.cast(builder, v, t, types.boolean if i == 11 else types.int64)
        if i not in (0, 3, 5, 9)
        else v
        for i, (v, t) in enumerate(zip(args, sig.args, strict=True))
    ]
    a, a_off, lda, b, b_off, c, c_off, ldc, kg, init, init_off, use_init, a_xor = args[:12] + [
        builder.trunc(context.cast(builder, args[12], sig.args[12], types.int64), _I32)
    ]
    nv = NR // lanes
    vec = ir.VectorType(_I32, lanes)
    vptr = vec.as_pointer()
    name = "llvm.x86.avx512.vpdpbusd.512" if lanes == 16 else "llvm.x86.avx512.vpdpbusd.256"
    dp = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3), name)

    a_data = builder.bitcast(context.make_array(ta)(context, builder, a).data, _I8.as_pointer())
    b_data = builder.bitcast(context.make_array(tb)(context, builder, b).data, _I8.as_pointer())
    c_data = context.make_array(tc)(context, builder, c).data  # i32*
    i_data = context.make_array(tinit)(context, builder, init).data  # i32*
    a_base = builder.gep(a_data, [a_off])
    b_base = builder.gep(b_data, [b_off])
    c_base = builder.gep(c_data, [c_off])
    i_base = builder.gep(i_data, [init_off])
    c_rows = [builder.gep(c_base, [builder.mul(ldc, _I64(r))]) for r in range(mr)]
    a_rows = [builder.gep(a_base, [builder.mul(lda, _I64(r))]) for r in range(mr)]

    # initial accumulators: init row (first k block) or the C tile (later k blocks)
    acc0 = []
    for r in range(mr):
        row = builder.select(use_init, i_base, c_rows[r])
        for v in range(nv):
            p = builder.bitcast(builder.gep(row, [_I64(v * lanes)]), vptr)
            acc0.append(builder.load(p, align=4))

    entry = builder.block
    loop = builder.append_basic_block("vnni_loop")
    done = builder.append_basic_block("vnni_done")
    builder.cbranch(builder.icmp_signed(">", kg, _I64(0)), loop, done)

    builder.position_at_end(loop)
    k = builder.phi(_I64)
    accs = [builder.phi(vec) for _ in acc0]
    for phi, val in zip(accs, acc0, strict=True):
        phi.add_incoming(val, entry)
    k.add_incoming(_I64(0), entry)
    bvecs = []
    bk = builder.gep(b_base, [builder.mul(k, _I64(4 * NR))])  # 256 bytes per k group
    for v in range(nv):
        p = builder.bitcast(builder.gep(bk, [_I64(v * lanes * 4)]), vptr)
        bvecs.append(builder.load(p, align=4))
    new = []
    mask = ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes)
    for r in range(mr):
        pa = builder.bitcast(builder.gep(a_rows[r], [builder.mul(k, _I64(4))]), _I32.as_pointer())
        a4 = builder.load(pa, align=1)  # 4 bytes of row r: A[r, 4k:4k+4]
        a4 = builder.xor(a4, a_xor)  # int8 -> uint8 + 128: flip each byte's sign bit
        av = builder.shuffle_vector(
            builder.insert_element(ir.Constant(vec, ir.Undefined), a4, _I32(0)),
            ir.Constant(vec, ir.Undefined),
            mask,
        )  # broadcast to all lanes
        for v in range(nv):
            new.append(builder.call(dp, [accs[r * nv + v], av, bvecs[v]]))
    k1 = builder.add(k, _I64(1))
    k.add_incoming(k1, loop)
    for phi, val in zip(accs, new, strict=True):
        phi.add_incoming(val, loop)
    builder.cbranch(builder.icmp_signed("<", k1, kg), loop, done)

    builder.position_at_end(done)
    fins = []
    for i in range(mr * nv):  # phis first: LLVM wants them at the top of the block
        fin = builder.phi(vec)
        fin.add_incoming(acc0[i], entry)
        fin.add_incoming(new[i], loop)
        fins.append(fin)
    for r in range(mr):
        for v in range(nv):
            p = builder.bitcast(builder.gep(c_rows[r], [_I64(v * lanes)]), vptr)
            builder.store(fins[r * nv + v], p, align=4)
    return context.get_dummy_value()


def _make_intrinsic(mr: int, lanes: int):
    def impl(typingctx, a, a_off, lda, b, b_off, c, c_off, ldc, kg, init, init_off, use_init, ax):
        sig = types.none(a, a_off, lda, b, b_off, c, c_off, ldc, kg, init, init_off, use_init, ax)

        def codegen(context, builder, sig, args):
            return _emit_microkernel(context, builder, sig, args, mr, lanes)

        return sig, codegen

    impl.__name__ = f"vnni_mk_{mr}x{NR}_w{lanes}"
    return intrinsic(impl)


# one intrinsic per tile height (row tails use the smaller ones) and vector width
mk16_1, mk16_2, mk16_3, mk16_4, mk16_5, mk16_6 = (_make_intrinsic(m, 16) for m in range(1, 7))
mk8_1, mk8_2, mk8_3, mk8_4, mk8_5, mk8_6 = (_make_intrinsic(m, 8) for m in range(1, 7))
