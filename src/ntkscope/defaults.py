"""Defaults shared by the library and the command line (torch-free).

The CLI imports this module to build its ``--help`` without importing torch; the library
imports it too, so every default has exactly one place (no copies kept in sync by a test).
"""

from __future__ import annotations

from ntkscope.datasets.specs import INPUT_DIM as _IMAGE_DIM

# Input dimension where a function has no inputs to read it from (MNIST's 28 x 28 = 784).
INPUT_DIM = _IMAGE_DIM
# Floating dtypes a computation may run in, by name (float64 is every default).
DTYPE_NAMES: tuple[str, ...] = ("float64", "float32")
# Initializations for R = E[Theta0^2]/E[Theta0]^2 (ntk-variance, check).
INITS = 1000
# Level of every bootstrap interval.
CONFIDENCE = 0.95
# Bootstrap resamples.
RESAMPLES = 2000
# Steps at which training measures the NTK change (paper Section 4).
SNAPSHOTS: tuple[int, ...] = (10, 100, 1000, 10_000)
# Gradient descent (paper Section 4, Appendix D): the fixed learning rate, the most updates,
# and early stopping after PATIENCE steps without a decrease of at least MIN_DELTA.
LEARNING_RATE = 1e-5
MAX_STEPS = 100_000
PATIENCE = 100
MIN_DELTA = 1e-7
# R = E[Theta0^2]/E[Theta0]^2 is reported as a lower bound "R >= x" without an interval when
# the effective sample size of the Theta0^2 weights, ESS = (sum t^2)^2 / sum t^4, is below
# MIN_ESS and below MIN_ESS_FRACTION of the draws (a light tail, ESS >= N/2, is exempt: few
# draws, but none dominates). ntkscope.statistics.ratio_is_lower_bound; the experiment that
# sets both: docs/ntk-variance.md ("Heavy tails"), scripts/ess_threshold.py.
MIN_ESS = 100.0
MIN_ESS_FRACTION = 0.5
# Budget of ntk_variance(..., target_ess=E) / ntkscope ntk-variance --target-ess when no
# --max-inits is given (the low-rank sampler draws 1e6 inits of M = 10, L = 20 in ~35 s).
MAX_INITS = 1_000_000
# ntkscope check: each training run stops when its loss has fallen to CHECK_LOSS_FRACTION of
# its initial value, or after CHECK_STEPS steps (docs/check.md: why these).
CHECK_LOSS_FRACTION = 0.01
CHECK_STEPS = 1000
# ntkscope check --model: initializations for R, on the first CHECK_PROBES training samples.
CHECK_MODEL_INITS = 200
CHECK_PROBES = 16
