"""The seed's other two compression families (section 1), next to quantization.

    pruning       refq.compress.pruning   magnitude pruning of Linear weights, fine-tuning with
                                          the masks kept, sparse int8 storage estimate
    distillation  refq.compress.distill   Hinton et al. 2015 loss with explicit backward, a
                                          ``train`` step_fn, plain distillation of a small student

Both combine with quantization: prune then ``quantize_model`` (zeros stay int8 zeros), and
``qat_train(..., teacher=float_model)`` for quantization-aware training by distillation.
"""

from refq.compress.distill import (
    DistillationLoss,
    distill_step,
    distill_train,
    model_logits,
    teacher_agreement,
)
from refq.compress.pruning import (
    apply_masks,
    gradual_sparsity,
    magnitude_masks,
    magnitude_prune,
    masked_step,
    prunable_weights,
    prune_and_finetune,
    sparse_size_bytes,
    sparsity_report,
)

__all__ = [
    "DistillationLoss",
    "apply_masks",
    "distill_step",
    "distill_train",
    "gradual_sparsity",
    "magnitude_masks",
    "magnitude_prune",
    "masked_step",
    "model_logits",
    "prunable_weights",
    "prune_and_finetune",
    "sparse_size_bytes",
    "sparsity_report",
    "teacher_agreement",
]
