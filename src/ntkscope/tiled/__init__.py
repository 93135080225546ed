"""Kernels larger than one process: an NTK cut into tiles, computed as tasks (this process,
local workers or Dask) into a zarr store, resumable; reductions read it tile by tile.

Entry points: :func:`kernel_matrix` (also ``ntkscope.kernel_matrix``; options
:class:`KernelConfig`, result :class:`KernelResult`), :func:`kernel_info`,
:func:`open_kernel` (:class:`KernelStore`: tiles, ``load()``), and the reductions
:func:`kernel_trace`, :func:`kernel_frobenius`, :func:`top_eigenvalues`,
:func:`relative_difference`, :func:`reduce_kernel`. One concept per private module:
``_store`` (the zarr layout, completion markers, refusal of other kernels), ``_compute``
(the tile task and the driver), ``_reduce``. See ``docs/kernel.md``.
"""

from __future__ import annotations

from ntkscope.tiled._compute import (
    KernelConfig,
    KernelResult,
    KernelTilesFailed,
    WeightsMismatch,
    kernel_info,
    kernel_matrix,
    parameters_fingerprint,
    tile_task,
)
from ntkscope.tiled._reduce import (
    Eigenvalues,
    KernelReduction,
    kernel_frobenius,
    kernel_trace,
    reduce_kernel,
    relative_difference,
    top_eigenvalues,
)
from ntkscope.tiled._store import KernelStore, open_kernel

__all__ = [
    "Eigenvalues",
    "KernelConfig",
    "KernelReduction",
    "KernelResult",
    "KernelStore",
    "KernelTilesFailed",
    "WeightsMismatch",
    "kernel_frobenius",
    "kernel_info",
    "kernel_matrix",
    "kernel_trace",
    "open_kernel",
    "parameters_fingerprint",
    "reduce_kernel",
    "relative_difference",
    "tile_task",
    "top_eigenvalues",
]
