"""``load_dataset``: S normalized, class-balanced samples with their training targets.

* Inputs (CONVENTIONS section 2): pixels / 255, then each image scaled to ``|x|^2 = M0``
  (``784`` for MNIST and Fashion-MNIST, ``3 * 32 * 32 = 3072`` for CIFAR-10/100; no centering,
  so ``c0 = x.x'/M0`` lies in ``[0, 1]``). ``gaussian``: uniform on the sphere ``|x|^2 = dim``.
* Samples: ``S`` of them, class-balanced (every class of the target contributes ``floor(S/C)``
  or ``ceil(S/C)``, as far as the class sizes allow), drawn by ``seed`` from the train split
  (default) or the test split; the same seed gives the same indices. Rows come in a
  seed-shuffled order, not sorted by class.
* Targets (CONVENTIONS section 7): ``parity`` (default; ``+1`` even, ``-1`` odd label),
  ``pair:A,B`` (only classes ``A`` and ``B``; ``+1`` for ``A``, ``-1`` for ``B``), and for
  ``gaussian`` ``sign`` (``+1`` / ``-1`` by the side of a fixed hyperplane). Multi-output
  targets come from the labels: :meth:`Dataset.one_hot` (cross-entropy; ``centered=True``,
  ``e_c - 1/C``, for the MSE loss).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ntkscope.datasets.cifar import ARCHIVE_SETS, ArchiveSetSpec, read_archive_split
from ntkscope.datasets.files import SplitData, locate, read_split
from ntkscope.datasets.specs import IMAGE_SETS, IMAGE_SIDE, INPUT_DIM, SPLITS, ImageSetSpec
from ntkscope.datasets.subset import load_subset
from ntkscope.datasets.synthetic import gaussian_sphere, sign_labels, sphere_points
from ntkscope.validation import NtkscopeInputError, positive_int

InputLoader = Callable[[int, int, int], np.ndarray]

#: Names of the data sets :func:`load_dataset` knows, in the order help texts list them.
DATASET_NAMES: tuple[str, ...] = ("gaussian", *IMAGE_SETS, *ARCHIVE_SETS)
_ALIASES = {"fashion": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "cifar-10": "cifar10", "cifar-100": "cifar100"}
_DEFAULT_TARGET = {"gaussian": "sign", **{name: "parity" for name in DATASET_NAMES[1:]}}


def image_spec(name: str) -> ImageSetSpec | ArchiveSetSpec:
    """The spec of the image data set ``name`` (canonical; not ``gaussian``)."""
    return IMAGE_SETS[name] if name in IMAGE_SETS else ARCHIVE_SETS[name]


def image_shape(spec: ImageSetSpec | ArchiveSetSpec) -> tuple[int, ...]:
    """The shape of one image, channel-first: ``(1, 28, 28)`` or ``(3, 32, 32)``."""
    return spec.image_shape if isinstance(spec, ArchiveSetSpec) else (1, IMAGE_SIDE, IMAGE_SIDE)


@dataclass(frozen=True, eq=False)
class Dataset:
    """``S`` samples of a data set.

    Attributes:
        name: canonical data set name (``"mnist"``).
        X: float64 ``(S, M0)`` inputs, normalized as in CONVENTIONS section 2 (images
            flattened channel-first; :attr:`images` has them in shape ``(S, *shape)``).
        y: float64 ``(S,)`` training targets, ``+1`` or ``-1``.
        labels: int64 ``(S,)`` class labels (``gaussian``: ``1`` if ``w.x >= 0`` else ``0``).
        indices: int64 ``(S,)`` positions of the samples in the full split file (``gaussian``:
            ``0..S-1``).
        split: ``"train"`` or ``"test"``.
        target: the target in canonical form (``"parity"``, ``"pair:3,5"``, ``"sign"``).
        source: where the data came from (``"full files in DIR"``, ``"shipped subset ..."``,
            ``"synthetic"``).
        subset: ``True`` when the shipped subset was used because no full files were found.
        shape: the shape of one input: ``(1, 28, 28)`` (MNIST, Fashion-MNIST), ``(3, 32, 32)``
            (CIFAR), ``(M0,)`` (``gaussian``).
        classes: the classes the samples were drawn from (all in label order; ``pair:A,B``:
            ``(A, B)``; ``gaussian``: ``(0, 1)``).
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    split: str
    target: str
    source: str
    subset: bool
    shape: tuple[int, ...] = ()
    classes: tuple[int, ...] = ()

    @property
    def images(self) -> np.ndarray:
        """``X`` as ``(S, *shape)`` (a view): ``(S, 3, 32, 32)`` for CIFAR."""
        return self.X.reshape(len(self.X), *(self.shape or self.X.shape[1:]))

    def one_hot(self, centered: bool = False) -> np.ndarray:
        """``(S, C)`` float64 one-hot targets over :attr:`classes` (column ``j`` for class
        ``classes[j]``): ``e_c`` for the cross-entropy loss, or with ``centered=True``
        ``e_c - 1/C`` (zero mean over the classes) for the MSE loss."""
        classes = np.asarray(self.classes or np.unique(self.labels))
        out = (self.labels[:, None] == classes[None, :]).astype(np.float64)
        return out - 1.0 / len(classes) if centered else out

    @property
    def note(self) -> str | None:
        """A one-line note for the user when the shipped subset was used, else ``None``."""
        if not self.subset:
            return None
        return (f"using the {self.source}; for the full data set pass --data-dir, set "
                f"NTKSCOPE_DATA or run `ntkscope data download {self.name}`")


def dataset_name(name: object) -> str:
    """Canonical data set name (case-insensitive, ``_`` accepted for ``-``).

    Raises:
        NtkscopeInputError: unknown name.
    """
    key = str(name).strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in DATASET_NAMES:
        raise NtkscopeInputError(
            f"dataset: unknown data set {name!r}; choose one of {', '.join(DATASET_NAMES)}"
        )
    return key


def parse_target(target: object, name: str) -> tuple[str, tuple[int, ...] | None]:
    """``(canonical target, classes)`` for data set ``name``; ``classes`` is ``None`` for all.

    Raises:
        NtkscopeInputError: unknown target, malformed ``pair:A,B``, ``A == B`` or a class
            outside ``0..C-1`` (``C = 10``; CIFAR-100: 100).
    """
    text = str(target).strip().lower().replace(" ", "")
    top = 1 if name == "gaussian" else len(image_spec(name).class_names) - 1
    allowed = ("'sign'" if name == "gaussian"
               else f"'parity' or 'pair:A,B' (classes 0-{top}, A != B)")
    if name == "gaussian":
        if text == "sign":
            return "sign", None
    elif text == "parity":
        return "parity", None
    elif text.startswith("pair:"):
        match = re.fullmatch(r"pair:([0-9]+),([0-9]+)", text)
        if match is None:
            raise NtkscopeInputError(
                f"target: expected 'pair:A,B' with two classes 0-{top}, got {target!r}"
            )
        a, b = int(match[1]), int(match[2])
        if not (0 <= a <= top and 0 <= b <= top):
            raise NtkscopeInputError(f"target: classes must lie in 0-{top}, got {target!r}")
        if a == b:
            raise NtkscopeInputError(f"target: the two classes must differ, got {target!r}")
        return f"pair:{a},{b}", (a, b)
    raise NtkscopeInputError(f"target: unknown target {target!r} for {name}; use {allowed}")


def targets(labels: np.ndarray, target: str) -> np.ndarray:
    """``+1 / -1`` float64 targets of integer ``labels`` for a canonical ``target``."""
    if target == "parity":
        positive = labels % 2 == 0
    elif target.startswith("pair:"):
        positive = labels == int(target[5:].split(",")[0])
    elif target == "sign":
        positive = labels == 1
    else:  # pragma: no cover - parse_target refuses everything else
        raise ValueError(target)
    return np.where(positive, 1.0, -1.0)


def balanced_choice(labels: np.ndarray, classes: tuple[int, ...], samples: int,
                    rng: np.random.Generator, what: str) -> np.ndarray:
    """Positions of ``samples`` entries of ``labels`` in ``classes``, as balanced as possible.

    Each class gets ``min(available, t)`` with ``t`` the largest level that fits, and the
    remaining ones go, one each, to seed-chosen classes that still have images; the result is
    shuffled.

    Raises:
        NtkscopeInputError: fewer than ``samples`` entries available (the message says how many).
    """
    pools = [np.flatnonzero(labels == c) for c in classes]
    avail = np.array([len(p) for p in pools])
    if samples > avail.sum():
        raise NtkscopeInputError(
            f"samples: asked for {samples}, but only {int(avail.sum())} are available in {what}"
        )
    level = samples // len(classes)
    while level < avail.max() and np.minimum(avail, level + 1).sum() <= samples:
        level += 1
    quota = np.minimum(avail, level)
    extra = rng.permutation(np.flatnonzero(avail > level))[: samples - int(quota.sum())]
    quota[extra] += 1
    chosen = np.concatenate([rng.choice(p, q, replace=False) for p, q in zip(pools, quota)])
    return rng.permutation(chosen)


def normalize_images(images: np.ndarray) -> np.ndarray:
    """Flattened float64 images: pixels / 255, each row then scaled to ``|x|^2 = M0``.

    Raises:
        NtkscopeInputError: an all-black image (it cannot be scaled).
    """
    X = images.reshape(len(images), -1).astype(np.float64) / 255.0
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    if np.any(norms == 0.0):
        raise NtkscopeInputError("images: an all-black image cannot be normalized")
    return X * (np.sqrt(X.shape[1]) / norms)


def image_split(spec: ImageSetSpec | ArchiveSetSpec, split: str,
                data_dir: str | os.PathLike[str] | None = None) -> SplitData:
    """The full split when its files are found (search order in :mod:`~.files`), else the
    shipped subset; CIFAR: the verified split (:func:`~.cifar.read_archive_split`; no subset)."""
    if isinstance(spec, ArchiveSetSpec):
        return read_archive_split(spec, split, data_dir)
    directory = locate(spec, split, data_dir)
    return load_subset(spec, split) if directory is None else read_split(spec, split, directory)


def load_dataset(name: str, samples: int, seed: int = 0, target: str | None = None,
                 split: str = "train", data_dir: str | os.PathLike[str] | None = None,
                 dim: int | None = None) -> Dataset:
    """``samples`` normalized, class-balanced samples of data set ``name`` with targets.

    Args:
        name: ``"gaussian"``, ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"`` or ``"cifar100"``.
        samples: ``S``.
        seed: chooses the samples (and their order); same seed, same samples.
        target: ``"parity"`` (default for image sets), ``"pair:A,B"``, or ``"sign"``
            (``gaussian``, its default).
        split: ``"train"`` (default) or ``"test"``.
        data_dir: directory with the full idx files, or the CIFAR archive or its unpacked
            folder (else ``NTKSCOPE_DATA``, the user cache, system directories, and finally the
            shipped subset; CIFAR has none).
        dim: input dimension; ``gaussian`` only (default 784); image sets accept only their
            own (784; CIFAR 3072).

    Returns:
        a :class:`Dataset`; ``.source`` says where the images came from, ``.note`` is a
        one-line message when the shipped subset was used.

    Raises:
        NtkscopeInputError: unknown data set, target or split; ``samples`` larger than the
            data available; missing or corrupt files; ``dim`` or ``data_dir`` that do not fit.
    """
    key = dataset_name(name)
    samples = positive_int("samples", samples)
    seed = positive_int("seed", seed, minimum=0)
    if split not in SPLITS:
        raise NtkscopeInputError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
    canonical, classes = parse_target(_DEFAULT_TARGET[key] if target is None else target, key)
    if key == "gaussian":
        if data_dir is not None:
            raise NtkscopeInputError("data_dir: the gaussian data set is synthetic (no files)")
        X = sphere_points(samples, INPUT_DIM if dim is None else dim, seed, split)
        labels = sign_labels(X)
        return Dataset(key, X, targets(labels, canonical), labels, np.arange(samples),
                       split, canonical, "synthetic", subset=False, shape=(X.shape[1],),
                       classes=(0, 1))
    spec = image_spec(key)
    shape = image_shape(spec)
    m0 = int(np.prod(shape))
    if dim is not None and positive_int("dim", dim) != m0:
        raise NtkscopeInputError(
            f"dim: {spec.title} images have {m0} values ({' x '.join(map(str, shape))}), so "
            f"the input dimension (--input-dim) must be {m0}, got {dim}"
        )
    data = image_split(spec, split, data_dir)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xDA7A]))
    what = f"the {spec.title} {split} split ({data.source})"
    if classes is not None:
        what = f"classes {classes[0]} and {classes[1]} of {what}"
    if data.subset:
        what += f"; `ntkscope data download {key}` gets the full data set"
    pool = classes or tuple(range(len(spec.class_names)))
    pos = balanced_choice(data.labels, pool, samples, rng, what)
    labels = data.labels[pos].astype(np.int64)
    return Dataset(key, normalize_images(data.images[pos]), targets(labels, canonical), labels,
                   data.indices[pos], split, canonical, data.source, data.subset, shape=shape,
                   classes=pool)


def load_inputs(name: str, samples: int, dim: int, seed: int = 0, *,
                data_dir: str | os.PathLike[str] | None = None) -> np.ndarray:
    """Inputs ``X`` of shape ``(samples, dim)`` (float64, ``q0 = 1``) from the data set ``name``.

    ``gaussian`` gives :func:`gaussian_sphere` ``(samples, dim, seed)``; the image sets give
    ``load_dataset(name, samples, seed).X`` and require ``dim = 784`` (CIFAR: 3072).

    Raises:
        NtkscopeInputError: unknown name, bad sizes, missing or corrupt data files.
    """
    key = dataset_name(name)
    if key == "gaussian" and data_dir is None:
        return gaussian_sphere(samples, dim, seed)
    return load_dataset(key, samples, seed, data_dir=data_dir, dim=dim).X


def _image_loader(name: str) -> InputLoader:
    def loader(samples: int, dim: int, seed: int) -> np.ndarray:
        return load_inputs(name, samples, dim, seed)

    loader.__doc__ = f"``load_inputs({name!r}, samples, dim, seed)``."
    return loader


#: Input loaders ``(samples, dim, seed) -> X`` by data set name.
DATASETS: dict[str, InputLoader] = {
    "gaussian": gaussian_sphere,
    **{name: _image_loader(name) for name in DATASET_NAMES[1:]},
}
