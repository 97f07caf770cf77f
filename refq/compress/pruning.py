"""Magnitude pruning of the Linear weights (the matmuls PTQ quantizes), and how it meets int8.

Seed document, section 1: pruning ("drop unimportant weights") is the first of the three
compression families. refq prunes by magnitude (Han et al. 2015, arXiv:1506.02626):

    unstructured:  mask_ij = 0 for the k = round(s * n) weights of smallest |w_ij|, 1 otherwise
    structured:    mask_i. = 0 for the k = round(s * N) output rows of smallest ||w_i.||_2

``scope="layer"`` takes the k smallest in each layer (every layer ends at sparsity s);
``scope="global"`` ranks all layers together (layers with small weights lose more). Ties are
broken by position (a stable sort), so pruning is deterministic. A mask is a bool array of the
weight's shape, True = kept (PyTorch's ``torch.nn.utils.prune`` convention, 1 = keep); masks
cover weights only, biases are never pruned (a pruned output row then emits its bias, a
constant the next layer can absorb).

Gradual pruning (Zhu & Gupta 2017, arXiv:1710.01878, eq. 1) raises the sparsity along

    s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (n * dt))^3     for t_0 <= t <= t_0 + n * dt

so that most weights go early, while the network still has redundancy, and few at the end.

Fine-tuning with the masks kept: the optimizer updates the weights *after* ``step_fn`` returns,
so zeroing the weights inside ``step_fn`` would be undone by the update. ``prune_and_finetune``
therefore (1) multiplies the gradients by the masks inside ``step_fn`` (gradient clipping and
AdamW then see only the surviving weights: a pruned weight has g = 0, so its Adam moments stay
0, its update is 0 / (sqrt(0) + eps) = 0 and its decoupled weight decay lr * wd * 0 = 0), and
(2) re-applies the weight masks in ``on_step`` before every step and once more after the last
(needed with the gradual schedule, where newly pruned weights still carry Adam momentum).
Pruned weights are exactly 0.0 at the end (tested).

With quantization: a symmetric quantizer maps 0.0 to code 0 exactly (round(0 / s) = 0), so the
zeros survive ``refq.ptq.flow.quantize_model`` as int8 zeros; an affine one maps it to its zero
point (zero is exactly representable there too). A sparse int8 layer can then be stored as a
bitmap (1 bit per weight) plus its nonzero codes: ``sparse_size_bytes``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from refq.nn import CrossEntropyLoss
from refq.nn.linear import Linear
from refq.nn.module import Module
from refq.ptq.quantized import QuantizedLinear, storage_bits
from refq.train.tasks import Task
from refq.train.trainer import TrainConfig, loss_and_backward, train

SCOPES = ("layer", "global")


def prunable_weights(model: Module) -> dict[str, np.ndarray]:
    """``{"<layer>.weight": array}`` for every ``Linear`` of ``model`` (the arrays, not copies).

    >>> from refq.nn.activations import ReLU
    >>> class Net(Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = Linear(3, 2, rng=np.random.default_rng(0)); self.act = ReLU()
    >>> list(prunable_weights(Net()))
    ['fc.weight']
    """
    if not isinstance(model, Module):
        raise TypeError(f"expected a refq Module, got {type(model).__name__}")
    return {f"{n}.weight" if n else "weight": m.params["weight"]
            for n, m in model.named_modules() if type(m) is Linear}  # fmt: skip


def _check_sparsity(sparsity: float) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise TypeError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    if not (0.0 <= float(sparsity) < 1.0):
        raise ValueError(f"sparsity must be in [0, 1) (1 removes every weight), got {sparsity}")
    return float(sparsity)


def _smallest(scores: np.ndarray, k: int) -> np.ndarray:
    """Bool (n,) marking the k smallest scores; ties broken by position (stable sort)."""
    drop = np.zeros(scores.size, bool)
    drop[np.argsort(scores, kind="stable")[:k]] = True
    return drop


def magnitude_masks(
    weights: dict[str, np.ndarray], sparsity: float, scope: str = "layer", structured: bool = False
) -> dict[str, np.ndarray]:
    """Keep-masks (True = kept) of magnitude pruning for a dict of weight matrices (N, K).

    Scores: |w_ij| (unstructured) or the row norm ||w_i.||_2 (structured, whole output rows).
    ``scope="layer"``: the round(s * count) smallest per layer. ``scope="global"``: the
    round(s * total count) smallest over all layers together; structured global ranks rows by
    their RMS ||w_i.||_2 / sqrt(K), so rows of layers with different fan-in K compare fairly
    (the pruned fraction of *weights* is then only close to s). Han et al. 2015, 1506.02626.

    >>> w = {"a": np.array([[0.5, -0.1], [0.2, -0.9]]), "b": np.array([[0.05, 3.0]])}
    >>> magnitude_masks(w, 0.5)["a"]          # the two smallest |w| of "a": 0.1 and 0.2
    array([[ True, False],
           [False,  True]])
    >>> m = magnitude_masks(w, 0.5, scope="global")   # 3 smallest of all 6: 0.05, 0.1, 0.2
    >>> m["a"].sum(), m["b"].tolist()
    (np.int64(2), [[False, True]])
    >>> magnitude_masks(w, 0.5, structured=True)["a"]  # row norms 0.51 < 0.92
    array([[False, False],
           [ True,  True]])
    """
    s = _check_sparsity(sparsity)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    for name, w in weights.items():
        if np.ndim(w) != 2:
            raise ValueError(f"{name!r}: expected a 2-D (out, in) weight, got shape {np.shape(w)}")
    names = list(weights)
    if structured:  # one score per output row
        scores = {n: np.sqrt((weights[n].astype(np.float64) ** 2).sum(axis=1)) for n in names}
        if scope == "global":
            scores = {n: scores[n] / math.sqrt(weights[n].shape[1]) for n in names}  # RMS
    else:
        scores = {n: np.abs(weights[n].astype(np.float64)).ravel() for n in names}
    if scope == "layer":
        drops = {n: _smallest(scores[n], int(round(s * scores[n].size))) for n in names}
    else:
        flat = np.concatenate([scores[n] for n in names]) if names else np.zeros(0)
        drop_all = _smallest(flat, int(round(s * flat.size)))
        ends = np.cumsum([scores[n].size for n in names])[:-1]
        drops = dict(zip(names, np.split(drop_all, ends), strict=True))
    masks = {}
    for n in names:
        w = weights[n]
        if structured:  # (N,) row decision -> (N, K) mask
            masks[n] = np.broadcast_to(~drops[n][:, None], w.shape).copy()
        else:
            masks[n] = ~drops[n].reshape(w.shape)  # (N * K,) -> (N, K)
    return masks


def apply_masks(model: Module, masks: dict[str, np.ndarray]) -> None:
    """Zero the pruned weights in place: ``w *= mask`` (exact 0.0 where mask is False).

    >>> class Net(Module):
    ...     def __init__(self):
    ...         super().__init__(); self.fc = Linear(2, 1, rng=np.random.default_rng(0))
    >>> net = Net(); net.fc.params["weight"][...] = [[0.5, -2.0]]
    >>> apply_masks(net, {"fc.weight": np.array([[False, True]])})
    >>> net.fc.params["weight"]
    array([[ 0., -2.]], dtype=float32)
    """
    weights = prunable_weights(model)
    for name, mask in masks.items():
        if name not in weights:
            raise ValueError(f"mask {name!r} names no Linear weight of the model")
        mask = np.asarray(mask)
        if mask.dtype != np.bool_:
            raise TypeError(f"mask {name!r} must be a bool array, got dtype {mask.dtype}")
        if mask.shape != weights[name].shape:
            raise ValueError(
                f"mask {name!r} has shape {mask.shape}, weight has {weights[name].shape}"
            )
        weights[name][~mask] = 0.0


def magnitude_prune(
    model: Module, sparsity: float, scope: str = "layer", structured: bool = False
) -> dict[str, np.ndarray]:
    """Prune every Linear weight of ``model`` by magnitude, in place; returns the keep-masks.

    ``magnitude_masks(prunable_weights(model), ...)`` then ``apply_masks`` (see both).

    >>> class Net(Module):
    ...     def __init__(self):
    ...         super().__init__(); self.fc = Linear(4, 1, rng=np.random.default_rng(0))
    >>> net = Net(); net.fc.params["weight"][...] = [[0.3, -0.1, 2.0, -0.4]]
    >>> masks = magnitude_prune(net, 0.5)
    >>> net.fc.params["weight"], masks["fc.weight"].sum()
    (array([[ 0. ,  0. ,  2. , -0.4]], dtype=float32), np.int64(2))
    """
    masks = magnitude_masks(prunable_weights(model), sparsity, scope, structured)
    apply_masks(model, masks)
    return masks


def sparsity_report(model: Module) -> dict[str, Any]:
    """Fraction of zero weights per prunable layer and in total.

    Float models: zeros of each ``Linear`` weight. Converted models: codes equal to the weight
    zero point of each ``QuantizedLinear`` (code 0 for symmetric weights), i.e. weights that
    dequantize to exactly 0.0. Returns ``{"layers": {name: fraction}, "zeros": int,
    "total": int, "sparsity": zeros / total}``.

    >>> class Net(Module):
    ...     def __init__(self):
    ...         super().__init__(); self.fc = Linear(4, 1, rng=np.random.default_rng(0))
    >>> net = Net(); net.fc.params["weight"][...] = [[0.0, 1.0, 0.0, 0.0]]
    >>> r = sparsity_report(net); r["layers"], r["sparsity"]
    ({'fc.weight': 0.75}, 0.75)
    """
    if not isinstance(model, Module):
        raise TypeError(f"expected a refq Module, got {type(model).__name__}")
    layers, zeros, total = {}, 0, 0
    for name, m in model.named_modules():
        if type(m) is Linear:
            z, n = int(np.count_nonzero(m.params["weight"] == 0)), m.params["weight"].size
        elif isinstance(m, QuantizedLinear):
            codes, zp = m.state["weight"], m.state["weight_zero_point"]  # (N, K) int8, (N,)
            z, n = int(np.count_nonzero(codes == zp[:, None])), codes.size
        else:
            continue
        layers[f"{name}.weight"] = z / n
        zeros, total = zeros + z, total + n
    if total == 0:
        raise ValueError("the model has no Linear or QuantizedLinear layers to report on")
    return {"layers": layers, "zeros": zeros, "total": total, "sparsity": zeros / total}


def sparse_size_bytes(qmodel: Module) -> dict[str, Any]:
    """Weight-code bytes of a converted model, dense vs bitmap-sparse, per layer and in total.

        dense  = ceil(N * K * f / 8)                       every code, f-bit fields
        sparse = ceil(N * K / 8) + ceil(nnz * f / 8)       1-bit keep bitmap + nonzero codes

    with f = 8 for int8 codes (4 or 2 for packed low-bit codes) and nnz = codes not equal to
    the zero point. The bitmap costs 1 bit per weight and each zero saves f bits, so the sparse
    form is smaller once more than 1/f of the codes are zero (1/8 for int8). Scales, zero points
    and the int32 bias are the same in both forms and are not counted. (A compressed-sparse-row
    layout with 8-bit column indices, as in Han et al. 2016, arXiv:1510.00149, would cost
    nnz * (f + 8) bits instead; the bitmap is the simpler estimate.)

    >>> from refq.ptq.quantized import QuantizedLinear
    >>> st = dict(weight=np.array([[0, 5, 0, 0], [0, 0, -3, 0]], np.int8),
    ...           weight_scale=np.ones(2, np.float32), weight_zero_point=np.zeros(2, np.int32),
    ...           weight_bits=np.int32(8), input_scale=np.float32(1), input_zero_point=np.int32(0),
    ...           output_scale=np.float32(1), output_zero_point=np.int32(0),
    ...           act_qmin=np.int32(-128), act_qmax=np.int32(127), requant=np.str_("float"))
    >>> class Q(Module):
    ...     def __init__(self):
    ...         super().__init__(); self.fc = QuantizedLinear(st, "fc")
    >>> r = sparse_size_bytes(Q())
    >>> r["dense_bytes"], r["sparse_bytes"]          # 8 codes; bitmap 1 byte + 2 nonzero codes
    (8, 3)
    """
    if not isinstance(qmodel, Module):
        raise TypeError(f"expected a refq Module, got {type(qmodel).__name__}")
    layers: dict[str, dict[str, int]] = {}
    for name, m in qmodel.named_modules():
        if not isinstance(m, QuantizedLinear):
            continue
        codes, zp = m.state["weight"], m.state["weight_zero_point"]  # (N, K) int8, (N,) int32
        f = storage_bits(int(m.state["weight_bits"]))
        n, nnz = codes.size, int(np.count_nonzero(codes != zp[:, None]))
        layers[name] = {
            "dense_bytes": math.ceil(n * f / 8),
            "sparse_bytes": math.ceil(n / 8) + math.ceil(nnz * f / 8),
            "nonzero": nnz,
            "weights": n,
        }
    if not layers:
        raise ValueError("sparse_size_bytes needs a converted model (no QuantizedLinear found)")
    dense = sum(v["dense_bytes"] for v in layers.values())
    sparse = sum(v["sparse_bytes"] for v in layers.values())
    return {"layers": layers, "dense_bytes": dense, "sparse_bytes": sparse,
            "ratio": sparse / dense}  # fmt: skip


def gradual_sparsity(step: int, final: float, begin: int, end: int, initial: float = 0.0) -> float:
    """Zhu & Gupta (arXiv:1710.01878, eq. 1) cubic schedule, with n * dt = end - begin:

        s_t = s_f + (s_i - s_f) * (1 - (t - begin) / (end - begin))^3,  clamped to [begin, end]

    >>> [round(gradual_sparsity(t, 0.8, 0, 10), 4) for t in (0, 5, 10, 20)]
    [0.0, 0.7, 0.8, 0.8]
    """
    _check_sparsity(final)
    _check_sparsity(initial)
    if end <= begin:
        raise ValueError(f"gradual_sparsity needs end > begin, got begin={begin}, end={end}")
    frac = min(max((step - begin) / (end - begin), 0.0), 1.0)
    return final + (initial - final) * (1.0 - frac) ** 3


def masked_step(masks: dict[str, np.ndarray], loss_fn: CrossEntropyLoss) -> Callable:
    """A ``train(..., step_fn=...)`` that runs forward + loss + backward and then multiplies each
    pruned weight's gradient by its mask (g *= mask), so the optimizer never moves it.

    ``masks`` is read at every call, so a caller may replace its entries (gradual pruning).
    """

    def step_fn(model: Module, batch: Any) -> float:
        loss = loss_and_backward(model, batch, loss_fn)
        grads = {n: m.grads["weight"] for n, m in _linears(model).items()}
        for name, mask in masks.items():
            grads[name] *= mask  # (N, K) float * (N, K) bool: 0 where pruned
        return loss

    return step_fn


def _linears(model: Module) -> dict[str, Linear]:
    return {f"{n}.weight" if n else "weight": m
            for n, m in model.named_modules() if type(m) is Linear}  # fmt: skip


def prune_and_finetune(
    model: Module,
    task: Task,
    sparsity: float,
    steps: int,
    scope: str = "layer",
    structured: bool = False,
    gradual: bool = False,
    ramp_fraction: float = 0.5,
    prune_every: int = 10,
    lr: float = 5e-4,
    batch_size: int = 64,
    seed: int = 0,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Prune ``model`` in place to ``sparsity`` and fine-tune it with the masks kept.

    One-shot (default): prune once, then ``steps`` steps. ``gradual=True``: raise the sparsity
    along ``gradual_sparsity`` from 0 at step 1 to ``sparsity`` at ``ramp_fraction * steps``,
    re-pruning every ``prune_every`` steps, then fine-tune at the final masks. Masks are kept as
    the module docstring explains (gradients masked inside the step, weights re-masked before
    each step and after the last). Returns (final keep-masks, training history).
    """
    _check_sparsity(sparsity)
    if steps <= 0 or prune_every <= 0:
        raise ValueError(f"steps and prune_every must be positive, got {steps}, {prune_every}")
    if not 0.0 < ramp_fraction <= 1.0:
        raise ValueError(f"ramp_fraction must be in (0, 1], got {ramp_fraction}")
    end = max(2, int(round(ramp_fraction * steps)))
    start = 0.0 if gradual else sparsity
    masks = magnitude_prune(model, start, scope, structured)

    def on_step(step: int) -> None:
        apply_masks(model, masks)  # undo what the last optimizer step did to pruned weights
        if gradual and step <= end and ((step - 1) % prune_every == 0 or step == end):
            # already-pruned weights are exact zeros, so the masks only ever grow
            masks.update(magnitude_prune(model, gradual_sparsity(step, sparsity, 1, end), scope,
                                         structured))  # fmt: skip

    ignore = None if task.kind == "classification" else task.pad_id
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup=min(50, steps // 10),
                      seed=seed, log_every=max(1, steps // 10))  # fmt: skip
    history = train(model, task, cfg, log=log, on_step=on_step,
                    step_fn=masked_step(masks, CrossEntropyLoss(ignore_index=ignore)))  # fmt: skip
    if gradual and steps < end:  # never reached the end of the ramp: prune to the target now
        masks.update(magnitude_prune(model, sparsity, scope, structured))
    apply_masks(model, masks)  # the last optimizer step ran after the last on_step
    return masks, history


__all__ = [
    "apply_masks",
    "gradual_sparsity",
    "magnitude_masks",
    "magnitude_prune",
    "masked_step",
    "prunable_weights",
    "prune_and_finetune",
    "sparse_size_bytes",
    "sparsity_report",
]
