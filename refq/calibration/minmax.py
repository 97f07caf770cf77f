"""Min-max observers: the running range (exact) and its exponential moving average.

Sources: seed document section 3 ("linear quantization: (1) find the range (min, max)") and
PyTorch ``MinMaxObserver`` / ``MovingAverageMinMaxObserver`` (and their ``PerChannel`` forms,
here the same classes with ``axis=``).
"""

from __future__ import annotations

import numpy as np

from refq.calibration.base import Observer


class MinMaxObserver(Observer):
    """The running minimum and maximum of everything observed.

    Rule: ``min_val = min over batches of min(x_b)``, ``max_val = max over batches of max(x_b)``
    (per channel: reduced over every axis except ``axis``). Accumulating batch by batch gives
    exactly the range of the concatenated data. Source: seed document section 3, step (1);
    PyTorch ``MinMaxObserver``. The reported range is the data range itself; widening it to
    contain zero is the quantizer's job (``set_range``), as in PyTorch's ``calculate_qparams``.

    >>> obs = MinMaxObserver()
    >>> _ = obs.observe(np.array([0.5, 2.0])); _ = obs.observe(np.array([-1.0, 1.5]))
    >>> obs.calculate_range()
    (array(-1., dtype=float32), array(2., dtype=float32))
    >>> pc = MinMaxObserver(axis=0)
    >>> _ = pc.observe(np.array([[1.0, -3.0], [4.0, 2.0]]))
    >>> [a.tolist() for a in pc.calculate_range()]
    [[-3.0, 2.0], [1.0, 4.0]]
    """

    def reset(self) -> None:
        super().reset()
        self.min_val: np.ndarray | None = None  # (C,) float64
        self.max_val: np.ndarray | None = None

    def _observe(self, xc: np.ndarray) -> None:
        lo = xc.min(axis=1).astype(np.float64)  # (C, N) -> (C,)
        hi = xc.max(axis=1).astype(np.float64)
        if self.min_val is None:
            self.min_val, self.max_val = lo, hi
        else:
            self.min_val = np.minimum(self.min_val, lo)
            self.max_val = np.maximum(self.max_val, hi)

    def _calculate_range(self) -> tuple[np.ndarray, np.ndarray]:
        return self.min_val, self.max_val


class MovingAverageMinMaxObserver(Observer):
    """Exponential moving average of each batch's min and max (PyTorch's QAT default).

    Rule (PyTorch ``MovingAverageMinMaxObserver``): the first batch sets ``min_val = min(x_1)``,
    ``max_val = max(x_1)``; every later batch ``b`` updates

        min_val <- min_val + c * (min(x_b) - min_val)
        max_val <- max_val + c * (max(x_b) - max_val)

    with ``c = averaging_constant`` (0.01 as in PyTorch). The state is kept in float64 (PyTorch
    keeps float32, so its last bits can differ); the reported range is rounded to float32.
    One outlier batch moves the range by only ``c`` of its excess, which is why it is used for
    activations during QAT.

    >>> obs = MovingAverageMinMaxObserver(averaging_constant=0.5)
    >>> _ = obs.observe(np.array([0.0, 4.0])); _ = obs.observe(np.array([-2.0, 2.0]))
    >>> obs.calculate_range()
    (array(-1., dtype=float32), array(3., dtype=float32))
    """

    def __init__(self, averaging_constant: float = 0.01, axis: int | None = None) -> None:
        c = float(averaging_constant)
        if not 0.0 < c <= 1.0:
            raise ValueError(f"averaging_constant must be in (0, 1], got {averaging_constant}")
        self.averaging_constant = c
        super().__init__(axis=axis)

    def reset(self) -> None:
        super().reset()
        self.min_val: np.ndarray | None = None  # (C,) float64
        self.max_val: np.ndarray | None = None

    def _observe(self, xc: np.ndarray) -> None:
        lo = xc.min(axis=1).astype(np.float64)  # (C, N) -> (C,)
        hi = xc.max(axis=1).astype(np.float64)
        if self.min_val is None:
            self.min_val, self.max_val = lo, hi
        else:
            c = self.averaging_constant
            self.min_val = self.min_val + c * (lo - self.min_val)
            self.max_val = self.max_val + c * (hi - self.max_val)

    def _calculate_range(self) -> tuple[np.ndarray, np.ndarray]:
        return self.min_val, self.max_val
