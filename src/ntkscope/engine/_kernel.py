"""The one kernel accumulator: ``Theta = sum_l (D_l D_l^T) ∘ (A_{l-1} A_{l-1}^T + 1)``.

CONVENTIONS section 3: ``Theta(x, x') = sum_{l=1}^{L+1} <delta^l(x), delta^l(x')>
(<x^{l-1}(x), x^{l-1}(x')> + 1)``. The layer terms arrive from the backward pass (``l = L+1,
..., 1``) as Gram matrices of scaled rows, ``D_i = 2**beta_i Dt_i``, ``A_i = 2**gamma_i At_i``,
and are summed in scaled form ``Theta_ij = T_ij 2**(c_i + c_j)`` with a running maximum
exponent ``c`` per network and sample (a log-sum-exp in base two with exact factors).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ntkscope.engine._exponents import per_batch
from ntkscope.engine._range import RangeMonitor, materialize


class Pairing:
    """Which kernel entries are formed: the full ``S x S`` matrix (``"full"``), the cross block
    ``S1 x S2`` of stacked inputs ``[X1; X2]`` (``"cross"``, ``split = S1``), or the diagonal
    ``S`` (``"diag"``).

    Per-sample vectors ``v`` of shape ``(B, S)`` split into the row and column vectors of the
    selected entries.
    """

    def __init__(self, kind: str, split: int = 0) -> None:
        self.kind, self.split = kind, split

    def gram(self, u: Tensor) -> Tensor:
        """``<u_i, u_j>`` over the last axis for the selected pairs ``(i, j)``."""
        if self.kind == "full":
            return torch.matmul(u, u.mT)
        if self.kind == "cross":
            return torch.matmul(u[:, : self.split], u[:, self.split :].mT)
        return torch.linalg.vecdot(u, u)

    def diagonal(self, gram: Tensor) -> Tensor:
        """The entries ``(i, i)`` of a full or diagonal Gram result."""
        return torch.diagonal(gram, dim1=-2, dim2=-1) if self.kind == "full" else gram

    def gram_is_smaller(self, u: Tensor) -> bool:
        """Whether the Gram matrix of ``u`` takes less memory than ``u`` itself."""
        s, m = u.shape[-2], u.shape[-1]
        if self.kind == "full":
            return s <= m
        if self.kind == "cross":
            return self.split * (s - self.split) <= s * m
        return True

    def _rows_cols(self, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.kind == "cross":
            return v[:, : self.split, None], v[:, None, self.split :]
        if self.kind == "full":
            return v[:, :, None], v[:, None, :]
        return v, v

    def exponents(self, e: Tensor) -> Tensor:
        """``e_i + e_j`` for the selected pairs."""
        rows, cols = self._rows_cols(e)
        return rows + cols

    def scale_(self, t: Tensor, v: Tensor) -> Tensor:
        """``t_ij * v_i v_j``, in place unless ``t`` broadcasts over the batch of ``v``."""
        rows, cols = self._rows_cols(v)
        if t.shape[0] != v.shape[0]:
            return t * rows * cols if self.kind != "diag" else t * (v * v)
        return t.mul_(rows).mul_(cols) if self.kind != "diag" else t.mul_(v * v)

    def add_outer_(self, t: Tensor, v: Tensor) -> Tensor:
        """``t_ij += v_i v_j`` in place."""
        rows, cols = self._rows_cols(v)
        return t.addcmul_(rows, cols)


class ScaledKernel:
    """``Theta_ij = T_ij 2**(c_i + c_j)`` accumulated layer by layer.

    ``c`` (per network and sample) is the running maximum of the layer terms' exponents, so
    ``|T_ij|`` stays of order ``M^2`` (Cauchy-Schwarz) and every entry is exact up to rounding
    relative to ``sqrt(Theta_ii Theta_jj)``. All scale factors are exact powers of two. Plain
    passes (no exponents) simply sum the terms.
    """

    def __init__(self, pairing: Pairing) -> None:
        self.pairing = pairing
        self.t: Tensor | None = None
        self.c: Tensor | None = None

    def add_layer(
        self, gram_d: Tensor, beta: Tensor | None, gram_a: Tensor, gamma: Tensor | None
    ) -> None:
        """Add ``(D D^T) ∘ (A A^T + 1)`` for ``D_i = 2**beta_i Dt_i``, ``A_i = 2**gamma_i At_i``
        (``gram_d``, ``gram_a`` the Gram entries of ``Dt``, ``At``; ``gamma`` None means 0;
        ``beta`` None: plain values, all exponents 0, and ``gamma`` None too).

        With ``m_i = max(gamma_i, 0)`` the term is ``2**(u_i + u_j)`` times
        ``gram_d ∘ (gram_a v_i v_j + z_i z_j)``, ``u = beta + m``, ``v = 2**(gamma - m)``,
        ``z = 2**-m``. Tensors passed in are consumed (``gram_a`` may broadcast over the
        batch: inputs shared by every network).
        """
        pair = self.pairing
        if beta is None:  # plain values: no exponents anywhere
            if self.t is None:
                self.t = gram_d.mul_(gram_a + 1.0)
            else:
                self.t.addcmul_(gram_d, gram_a).add_(gram_d)
            return
        m = None if gamma is None else gamma.clamp(min=0.0)
        u = beta if m is None else beta + m
        if self.t is None or self.c is None:
            c, w = u, None
        else:
            c = torch.maximum(self.c, u)
            w = torch.exp2(u - c)
        if gamma is None or m is None:
            term = gram_d.mul_(gram_a + 1.0)
            if w is not None:
                pair.scale_(term, w)
        else:
            scale_a, scale_one = torch.exp2(gamma - m), torch.exp2(-m)
            if w is not None:
                scale_a, scale_one = scale_a * w, scale_one * w
            inner = pair.add_outer_(pair.scale_(gram_a, scale_a), scale_one)
            term = gram_d.mul_(inner)
        if self.t is None or self.c is None:
            self.t = term
        else:
            self.t = pair.scale_(self.t, torch.exp2(self.c - c)).add_(term)
        self.c = c

    def result(self, monitor: RangeMonitor | None, what: str = "empirical NTK") -> Tensor:
        """The kernel itself; plain sums are handed to ``monitor`` for the finiteness check
        (without a monitor, or for scaled sums, :func:`~ntkscope.engine.check_finite`)."""
        assert self.t is not None
        if self.c is None:
            return monitor.values(self.t) if monitor is not None else materialize(
                self.t, None, what)
        return materialize(self.t, self.pairing.exponents(self.c), what)

    def per_network(self) -> tuple[Tensor, Tensor]:
        """``(T, E)`` with ``Theta = T * 2**E[b]`` for network ``b`` and ``max|T[b]|`` in
        ``[1/2, 1)`` (``E`` of shape ``(B,)``): the kernel even beyond the dtype's range."""
        assert self.t is not None
        return per_batch(self.t, None if self.c is None else self.pairing.exponents(self.c))
