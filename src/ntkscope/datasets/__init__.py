"""Input data sets, normalized as in CONVENTIONS section 2 (``q0 = |x|^2 / M0``).

* ``gaussian``: :func:`gaussian_sphere`, points uniform on the sphere of radius ``sqrt(dim)``
  (``q0 = 1`` exactly), labelled by the side of a fixed hyperplane.
* ``mnist`` and ``fashion-mnist``: 28 x 28 images, pixels / 255, each image scaled to
  ``|x|^2 = M0 = 784`` (no centering). The full idx files are read from ``data_dir``,
  ``$NTKSCOPE_DATA``, the user cache or a system directory (:mod:`~ntkscope.datasets.files`)
  and verified against SHA-256 checksums; without them a small subset shipped with the
  package is used (:mod:`~ntkscope.datasets.subset`). :func:`download_dataset` fetches the
  full files.
* ``cifar10`` and ``cifar100``: 3 x 32 x 32 colour images (``M0 = 3072``), same normalization,
  from the python-version archives (:mod:`~ntkscope.datasets.cifar`: verified by checksum,
  unpickled safely, unpacked atomically); no subset ships, :func:`download_dataset` fetches
  them.

:func:`load_dataset` gives ``S`` class-balanced samples with training targets;
:func:`load_inputs` only the inputs (what the command line uses). Sources, citations and
details: ``docs/datasets.md``.
"""

from __future__ import annotations

from ntkscope.datasets.cifar import ARCHIVE_SETS, CIFAR10, CIFAR100, ArchiveSetSpec
from ntkscope.datasets.download import download_dataset, download_mnist
from ntkscope.datasets.files import DATA_ENV, default_download_dir, locate, user_cache_dir
from ntkscope.datasets.loading import (
    DATASET_NAMES,
    DATASETS,
    Dataset,
    InputLoader,
    dataset_name,
    load_dataset,
    load_inputs,
    normalize_images,
)
from ntkscope.datasets.specs import FASHION_MNIST, IMAGE_SETS, MNIST, ImageSetSpec
from ntkscope.datasets.synthetic import gaussian_sphere

__all__ = [
    "ARCHIVE_SETS",
    "CIFAR10",
    "CIFAR100",
    "DATASETS",
    "DATASET_NAMES",
    "DATA_ENV",
    "FASHION_MNIST",
    "IMAGE_SETS",
    "MNIST",
    "ArchiveSetSpec",
    "Dataset",
    "ImageSetSpec",
    "InputLoader",
    "dataset_name",
    "default_download_dir",
    "download_dataset",
    "download_mnist",
    "gaussian_sphere",
    "load_dataset",
    "load_inputs",
    "locate",
    "normalize_images",
    "user_cache_dir",
]
