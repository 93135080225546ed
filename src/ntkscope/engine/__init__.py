"""One scaled-pass engine for every forward/backward pass of ntkscope's MLPs.

* **Layer operators** (:mod:`._layers`): :class:`DenseLayer` (weights ``W`` of
  :class:`ntkscope.Params`) and :class:`LowRankLayer` (the exact low-rank operator ``G, Q, Z``
  of CONVENTIONS section 6: forward ``W A^T = G R``, backward ``W^T D^T = Q G^T D^T + P Z B``).
* **Passes** (:mod:`._passes`): one :func:`forward` and one :func:`backward` loop over any
  layer operators, plain or in the rescaled domain, and :func:`kernel_pass`, the NTK of
  CONVENTIONS section 3 ``Theta = sum_l (D_l D_l^T) ∘ (A_{l-1} A_{l-1}^T + 1)``.
* **Exponent arithmetic** (:mod:`._exponents`): exact powers of two per row,
  ``value = x * 2**e`` (:func:`row_exponent`, :func:`ldexp`, :func:`per_batch`).
* **Kernel accumulator** (:mod:`._kernel`): :class:`ScaledKernel`, the running-maximum
  (base-two log-sum-exp) sum of the layer terms, for the entries chosen by :class:`Pairing`.
* **Range contract** (:mod:`._range`): :func:`check_finite` raises
  :class:`NtkscopeRangeError` with one message style; :class:`RangeMonitor` and
  :func:`guarded` run a pass plain first and rescaled only when needed.
* **Low-rank sampler** (:mod:`._lowrank`): :func:`lowrank_draw` for
  :func:`ntkscope.sampling.sample_ntk`.
"""

from ntkscope.engine._exponents import ldexp, max_exponent, per_batch, row_exponent
from ntkscope.engine._kernel import Pairing, ScaledKernel
from ntkscope.engine._layers import (
    DenseLayer,
    LayerOperator,
    LowRankLayer,
    NoiseCursor,
    lowrank_noise_size,
    orth,
)
from ntkscope.engine._lowrank import (
    fold_log_scale,
    gaussian_noise,
    lowrank_draw,
    network_seed,
    unscale_log,
)
from ntkscope.engine._passes import DeltaVisitor, InputVisitor, backward, forward, kernel_pass
from ntkscope.engine._range import (
    NtkscopeRangeError,
    RangeMonitor,
    check_finite,
    guarded,
    materialize,
)

__all__ = [
    "DeltaVisitor",
    "DenseLayer",
    "InputVisitor",
    "LayerOperator",
    "LowRankLayer",
    "NoiseCursor",
    "NtkscopeRangeError",
    "Pairing",
    "RangeMonitor",
    "ScaledKernel",
    "backward",
    "check_finite",
    "fold_log_scale",
    "forward",
    "gaussian_noise",
    "guarded",
    "kernel_pass",
    "ldexp",
    "lowrank_draw",
    "lowrank_noise_size",
    "materialize",
    "max_exponent",
    "network_seed",
    "orth",
    "per_batch",
    "row_exponent",
    "unscale_log",
]
