"""refq: the reference implementation of Transformer quantization.

Layers of the package (data flows one way, top to bottom):

- ``refq.quant``        the formulas: seed document section 4 (min-max, log), affine/symmetric
                        linear, log and power-of-two quantizers, rounding, bit packing, error metrics.
- ``refq.calibration``  observers: statistics only (min-max, EMA, percentile, MSE, entropy).
- ``refq.nn``           a from-scratch NumPy Transformer with explicit backward passes.
- ``refq.kernels``      Numba int8 kernels (GEMM, requantization), bit-exact with NumPy specs.
- ``refq.ptq``          prepare -> calibrate -> convert: a Transformer that runs on int8.
- ``refq.qat``          fake quantization with the straight-through estimator, LSQ.
- ``refq.cli``          the ``refq`` command (train, eval, ptq, qat, tour).
"""

__version__ = "0.1.0"
