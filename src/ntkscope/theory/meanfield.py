"""Mean-field signal propagation and the expected / infinite-width NTK (CONVENTIONS section 4).

For two inputs ``x, x'`` with ``q0 = |x|^2/M0``, ``q0' = |x'|^2/M0`` and covariance
``c0 = x.x'/M0`` (paper Section 2, eqs. 5-9; Lemma 5.2)::

    q^1 = sw2 q0 + sb2,                 q^1_sr = sw2 c0 + sb2
    qhat^l = E[phi(u)^2],  qhat^l_sr = E[phi(u) phi(v)],
        (u, v) ~ N(0, [[q^l, q^l_sr], [q^l_sr, q'^l]])
    q^{l+1} = sw2 qhat^l + sb2,         q^{l+1}_sr = sw2 qhat^l_sr + sb2,
    c^l = q^l_sr / sqrt(q^l q'^l)
    chi1^l = sw2 E[phi'(u)^2],          chi^l_sr = sw2 E[phi'(u) phi'(v)]
    p^{L+1} = p^{L+1}_sr = 1,           p^l = chi1^l p^{l+1},   p^l_sr = chi^l_sr p^{l+1}_sr

Expected NTK at the given finite widths (``qhat^0 = q0``, ``qhat^0_sr = c0``, ``M_0`` the
input dimension)::

    E Theta(x, x)  = sum_{l=1}^{L+1} p^l    (M_{l-1} qhat^{l-1}    + 1)
    E Theta(x, x') = sum_{l=1}^{L+1} p^l_sr (M_{l-1} qhat^{l-1}_sr + 1)
    kappa1 = sum_{l=1}^{L+1} qhat^{l-1} p^l,      kappa2 = sum_{l=1}^{L+1} qhat^{l-1}_sr p^l_sr

These sums are accumulated in one forward pass through ``K(L) = chi^L K(L-1) + qhat^L``,
``K(0) = qhat^0``, which also gives every depth ``1..L`` at once (:func:`kappa_by_depth`).
Everything broadcasts over array-valued ``sw2, sb2, q0, c0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NoReturn

import numpy as np

from ntkscope.activations import Activation, get_activation
from ntkscope.theory.gaussian import Quadrature, bivariate, univariate
from ntkscope.validation import (
    NtkscopeInputError,
    finite_array,
    nonnegative,
    positive,
    positive_int,
    widths,
)


@dataclass
class MeanField:
    """Mean-field quantities for inputs ``x`` (and ``x'``, suffix ``_b``).

    Per-layer arrays have shape ``(L, *batch)``: row ``l-1`` is layer ``l`` (hidden layers
    ``1..L``); they are ``None`` when computed with ``keep_layers=False``. Scalars-or-arrays of
    shape ``batch`` otherwise. ``p`` and ``p_sr`` follow CONVENTIONS (``p^{L+1} = 1``).
    """

    activation: str
    depth: int
    widths: tuple[int, ...]
    input_dim: int
    q: np.ndarray | None = field(default=None, repr=False)
    q_b: np.ndarray | None = field(default=None, repr=False)
    q_sr: np.ndarray | None = field(default=None, repr=False)
    c: np.ndarray | None = field(default=None, repr=False)
    qhat: np.ndarray | None = field(default=None, repr=False)
    qhat_b: np.ndarray | None = field(default=None, repr=False)
    qhat_sr: np.ndarray | None = field(default=None, repr=False)
    chi1: np.ndarray | None = field(default=None, repr=False)
    chi1_b: np.ndarray | None = field(default=None, repr=False)
    chi_sr: np.ndarray | None = field(default=None, repr=False)
    p: np.ndarray | None = field(default=None, repr=False)
    p_b: np.ndarray | None = field(default=None, repr=False)
    p_sr: np.ndarray | None = field(default=None, repr=False)
    output_var: np.ndarray = field(default_factory=lambda: np.array(np.nan))
    output_var_b: np.ndarray = field(default_factory=lambda: np.array(np.nan))
    output_cov: np.ndarray = field(default_factory=lambda: np.array(np.nan))
    ntk_mean_diag: np.ndarray = field(default_factory=lambda: np.array(np.nan))
    ntk_mean_diag_b: np.ndarray = field(default_factory=lambda: np.array(np.nan))
    ntk_mean_offdiag: np.ndarray = field(default_factory=lambda: np.array(np.nan))
    kappa1: np.ndarray = field(default_factory=lambda: np.array(np.nan))
    kappa1_b: np.ndarray = field(default_factory=lambda: np.array(np.nan))
    kappa2: np.ndarray = field(default_factory=lambda: np.array(np.nan))

    @property
    def kappa_ratio(self) -> np.ndarray:
        """``kappa1 / kappa2`` (conditioning of the infinite-width NTK, paper Section 5)."""
        with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 (underflow): NaN
            return self.kappa1 / self.kappa2

    def layer_table(self) -> list[dict[str, float]]:
        """One dict per hidden layer ``l = 1..L`` (scalar inputs only)."""
        if self.q is None:
            raise NtkscopeInputError("layer_table: computed with keep_layers=False")
        if np.ndim(self.q) != 1:
            raise NtkscopeInputError("layer_table: only for scalar (non-grid) inputs")
        keys = ("q", "q_sr", "c", "qhat", "qhat_sr", "p", "p_sr", "chi1")
        return [
            {"l": i + 1, **{k: float(getattr(self, k)[i]) for k in keys}} for i in range(self.depth)
        ]


@dataclass
class _Inputs:
    act: Activation
    sw2: np.ndarray
    sb2: np.ndarray
    q0: np.ndarray
    q0_b: np.ndarray
    c0: np.ndarray
    depth: int
    widths: tuple[int, ...]
    input_dim: int


MAX_DEPTH = 10_000
"""Deepest network the recursions accept: every signal has reached its fixed point (or
over/underflowed) long before, and a smooth activation costs a few ms of quadrature per layer."""


def _validate(
    activation, sigma_w2, sigma_b2, depth, width, input_dim, q0, c0, q0_b
) -> _Inputs:  # type: ignore[no-untyped-def]
    act = get_activation(activation)
    sw2 = positive("sigma_w2", sigma_w2)
    sb2 = nonnegative("sigma_b2", sigma_b2)
    depth = positive_int("depth", depth, maximum=MAX_DEPTH)
    hidden = widths("width", width, depth)
    m0 = hidden[0] if input_dim is None else positive_int("input_dim", input_dim)
    qa = positive("q0", q0)
    qb = qa if q0_b is None else positive("q0_b", q0_b)
    cab = finite_array("c0", c0)
    if np.any(np.abs(cab) > np.sqrt(qa) * np.sqrt(qb) * (1 + 1e-12)):  # no overflow of qa*qb
        raise NtkscopeInputError(
            "c0: the input covariance x.x'/M0 must satisfy |c0| <= sqrt(q0 q0') "
            f"(Cauchy-Schwarz); got c0={_brief(cab)} with q0={_brief(qa)}"
        )
    sw2, sb2, qa, qb, cab = np.broadcast_arrays(sw2, sb2, qa, qb, cab)
    return _Inputs(act, sw2, sb2, qa, qb, cab, depth, hidden, m0)


def _brief(a: np.ndarray) -> str:
    return f"{float(a):g}" if a.ndim == 0 else "array"


def propagate(
    activation: str | Activation,
    sigma_w2: float | np.ndarray,
    sigma_b2: float | np.ndarray,
    depth: int,
    width: int | Sequence[int] = 100,
    input_dim: int | None = None,
    q0: float | np.ndarray = 1.0,
    c0: float | np.ndarray = 0.0,
    q0_b: float | np.ndarray | None = None,
    *,
    keep_layers: bool = True,
    pairs: bool = True,
    method: str = "auto",
    quad: Quadrature | None = None,
) -> MeanField:
    """Run the mean-field recursions of CONVENTIONS section 4 through ``depth`` hidden layers.

    Args:
        activation: ``relu``, ``tanh``, ``erf``, an :class:`Activation` or a callable.
        sigma_w2, sigma_b2: ``sw2 > 0``, ``sb2 >= 0`` (arrays broadcast: grids in one call).
        depth: number of hidden layers ``L``.
        width: hidden width ``M`` or a list ``M_1..M_L`` (enters only ``E Theta``).
        input_dim: ``M_0`` (default: the first hidden width).
        q0, q0_b: ``|x|^2/M0`` and ``|x'|^2/M0`` (``q0_b`` defaults to ``q0``).
        c0: input covariance ``x.x'/M0`` with ``|c0| <= sqrt(q0 q0_b)``.
        keep_layers: keep per-layer arrays (``False`` for large grids: only final values).
        pairs: compute the two-input quantities (``q_sr``, ``p_sr``, ``ntk_mean_offdiag``,
            ``kappa2``, ``output_cov``); ``False`` skips the bivariate integrals (much faster
            for quadrature activations) and leaves those quantities ``NaN``.
        method: ``"auto"`` (closed forms for ReLU/erf) or ``"quadrature"``.

    Returns:
        :class:`MeanField` with per-layer ``q, q_sr, c, qhat, qhat_sr, p, p_sr, chi1``, the
        output NNGP ``output_var = q^{L+1}``, ``output_cov = q^{L+1}_sr``, the expected NTK
        ``ntk_mean_diag``, ``ntk_mean_offdiag`` and ``kappa1``, ``kappa2``.

    Raises:
        NtkscopeInputError: bad input, or values beyond the float64 range (very deep chaotic
            networks).
    """
    if method not in ("auto", "quadrature"):
        raise NtkscopeInputError(f"method: expected 'auto' or 'quadrature', got {method!r}")
    inp = _validate(activation, sigma_w2, sigma_b2, depth, width, input_dim, q0, c0, q0_b)
    return _run(inp, keep_layers, pairs, method, quad)


_LAYER_NAMES = ("q", "q_b", "q_sr", "qhat", "qhat_b", "qhat_sr", "chi1", "chi1_b", "chi_sr")


@np.errstate(over="ignore", invalid="ignore")  # overflow is detected and reported below
def _run(
    inp: _Inputs, keep_layers: bool, pairs: bool, method: str, quad: Quadrature | None
) -> MeanField:
    act, sw2, sb2, L = inp.act, inp.sw2, inp.sb2, inp.depth
    m_prev = (inp.input_dim, *inp.widths)  # M_0..M_L
    same_norm = np.array_equal(inp.q0, inp.q0_b)
    qhat_a, qhat_b, qhat_ab = inp.q0, inp.q0_b, inp.c0  # layer 0 (the inputs)
    # Running sums of the backward products, see the module docstring.
    k_a, k_b, k_ab = qhat_a.copy(), qhat_b.copy(), qhat_ab.copy()
    t_a, t_b, t_ab = (m_prev[0] * v + 1.0 for v in (qhat_a, qhat_b, qhat_ab))
    out = MeanField(act.name, L, inp.widths, inp.input_dim)
    rows: dict[str, list[np.ndarray]] = {n: [] for n in _LAYER_NAMES}
    for layer in range(1, L + 1):
        qa, qb, qab = (sw2 * v + sb2 for v in (qhat_a, qhat_b, qhat_ab))
        qhat_a, dphi_a = univariate(act, qa, method, quad)
        qhat_b, dphi_b = (qhat_a, dphi_a) if same_norm else univariate(act, qb, method, quad)
        if pairs:
            qhat_ab, dphi_ab = bivariate(act, qa, qb, qab, method, quad)
        else:
            qhat_ab = dphi_ab = np.full_like(qa, np.nan)
        chi_a, chi_b, chi_ab = sw2 * dphi_a, sw2 * dphi_b, sw2 * dphi_ab
        k_a, k_b, k_ab = chi_a * k_a + qhat_a, chi_b * k_b + qhat_b, chi_ab * k_ab + qhat_ab
        m = m_prev[layer]
        t_a, t_b, t_ab = (chi * t + m * qh + 1.0 for chi, t, qh in
                          ((chi_a, t_a, qhat_a), (chi_b, t_b, qhat_b), (chi_ab, t_ab, qhat_ab)))
        if not np.all(np.isfinite(t_a)):
            _overflow("ntk_mean_diag", layer)
        if keep_layers:
            values = (qa, qb, qab, qhat_a, qhat_b, qhat_ab, chi_a, chi_b, chi_ab)
            for n, v in zip(_LAYER_NAMES, values):
                rows[n].append(v)

    out.output_var, out.output_var_b = sw2 * qhat_a + sb2, sw2 * qhat_b + sb2
    out.output_cov = sw2 * qhat_ab + sb2
    out.ntk_mean_diag, out.ntk_mean_diag_b, out.ntk_mean_offdiag = t_a, t_b, t_ab
    out.kappa1, out.kappa1_b, out.kappa2 = k_a, k_b, k_ab
    if keep_layers:
        for n in _LAYER_NAMES:
            setattr(out, n, np.stack(rows[n]))
        out.c = out.q_sr / np.sqrt(out.q * out.q_b)
        out.p, out.p_b, out.p_sr = (
            _backward_products(getattr(out, n)) for n in ("chi1", "chi1_b", "chi_sr")
        )
    _check_finite(out, pairs)
    return out


def _backward_products(chi: np.ndarray) -> np.ndarray:
    """``p^l = prod_{k=l}^{L} chi^k`` for ``l = 1..L`` (``p^{L+1} = 1``)."""
    return np.flip(np.cumprod(np.flip(chi, 0), 0), 0)


def _check_finite(mf: MeanField, pairs: bool = True) -> None:
    names = ("output_var", "ntk_mean_diag", "kappa1")
    for name in names + (("ntk_mean_offdiag", "kappa2") if pairs else ()):
        if not np.all(np.isfinite(getattr(mf, name))):
            _overflow(name, mf.depth)


def _overflow(name: str, depth: int) -> NoReturn:
    raise NtkscopeInputError(
        f"depth: {name} exceeds the float64 range at depth {depth} (signals grow "
        "exponentially in the chaotic phase); use a smaller depth"
    )


def kappa_by_depth(
    activation: str | Activation,
    sigma_w2: float | np.ndarray,
    sigma_b2: float | np.ndarray,
    max_depth: int,
    q0: float | np.ndarray = 1.0,
    c0: float | np.ndarray = 0.0,
    *,
    method: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """``kappa1(L)`` and ``kappa2(L)`` for every depth ``L = 1..max_depth`` (paper Figs. 5-6).

    Uses ``K(L) = chi^L K(L-1) + qhat^L`` (module docstring): one pass gives all depths.
    Returns arrays of shape ``(max_depth, *batch)``.
    """
    mf = propagate(activation, sigma_w2, sigma_b2, max_depth, 1, 1, q0, c0, method=method)
    assert mf.chi1 is not None and mf.chi_sr is not None and mf.qhat is not None
    k1 = np.empty_like(mf.chi1)
    k2 = np.empty_like(mf.chi1)
    a, b = np.broadcast_arrays(np.asarray(q0, float), np.asarray(c0, float))
    prev1, prev2 = a * np.ones_like(mf.chi1[0]), b * np.ones_like(mf.chi1[0])
    for i in range(max_depth):
        prev1 = mf.chi1[i] * prev1 + mf.qhat[i]
        prev2 = mf.chi_sr[i] * prev2 + mf.qhat_sr[i]
        k1[i], k2[i] = prev1, prev2
    return k1, k2
