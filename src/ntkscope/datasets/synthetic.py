"""The synthetic ``gaussian`` data set: points uniform on the sphere ``|x|^2 = dim`` (``q0 = 1``).

Labels, so that training works on it: ``1`` where a fixed linear function ``w.x`` is
non-negative, else ``0`` (``w`` depends on ``dim`` only, never on the seed, so every draw
is labelled by the same function and a test draw matches its training draw).
"""

from __future__ import annotations

import numpy as np

from ntkscope.validation import positive_int

_STREAMS = {"train": (), "test": (1,)}  # the train stream is the historical gaussian_sphere one


def _seed(value: object) -> int:
    """A non-negative integer seed."""
    return positive_int("seed", value, minimum=0)


def sphere_points(samples: int, dim: int, seed: int = 0, split: str = "train") -> np.ndarray:
    """``samples`` points uniform on the sphere of radius ``sqrt(dim)``; ``split`` selects an
    independent stream (``"train"`` or ``"test"``)."""
    samples = positive_int("samples", samples)
    dim = positive_int("dim", dim)
    rng = np.random.default_rng(np.random.SeedSequence([_seed(seed), 0x5EED, *_STREAMS[split]]))
    z = rng.standard_normal((samples, dim))
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    while np.any(norms == 0.0):  # probability zero; kept so a zero row can never appear
        bad = norms[:, 0] == 0.0
        z[bad] = rng.standard_normal((int(bad.sum()), dim))
        norms = np.linalg.norm(z, axis=1, keepdims=True)
    return z * (np.sqrt(dim) / norms)


def gaussian_sphere(samples: int, dim: int, seed: int = 0) -> np.ndarray:
    """``samples`` points uniform on the sphere of radius ``sqrt(dim)`` in ``R^dim``.

    Each row is ``x = sqrt(dim) z / |z|`` with ``z ~ N(0, I_dim)``, so ``q0(x) = |x|^2/dim = 1``
    and, for two rows, ``c0 = x.x'/dim`` has mean 0 and variance ``1/dim``.

    Returns:
        float64 array of shape ``(samples, dim)``; the same ``seed`` gives the same points.
    """
    return sphere_points(samples, dim, seed, "train")


def sign_labels(X: np.ndarray) -> np.ndarray:
    """``1`` where ``w.x >= 0`` else ``0`` (int64), ``w`` a fixed random direction of ``R^dim``."""
    dim = X.shape[1]
    w = np.random.default_rng(np.random.SeedSequence([dim, 0x51C9])).standard_normal(dim)
    return (X @ w >= 0).astype(np.int64)
