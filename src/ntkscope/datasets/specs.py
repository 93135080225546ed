"""What ntkscope knows about each image data set: files, checksums, mirrors, citation.

The checksums are SHA-256 digests of the *decompressed* idx files, so a ``.gz`` file and its
decompressed twin verify against the same value.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The two splits of an image data set.
SPLITS: tuple[str, ...] = ("train", "test")

#: Image height and width of every idx data set ntkscope reads (``M0 = 28 * 28 = 784``).
IMAGE_SIDE = 28
INPUT_DIM = IMAGE_SIDE * IMAGE_SIDE

#: File stems of the four standard idx files, per split (images, labels).
SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True, eq=False)  # hashed by identity: a cache key
class ImageSetSpec:
    """One idx image data set (MNIST layout: 28 x 28 uint8 images, labels 0-9).

    Attributes:
        name: the name ``load_dataset`` accepts (``"mnist"``).
        title: the name people write (``"MNIST"``).
        sha256: SHA-256 of each decompressed idx file, by file stem.
        sizes: number of images per split.
        mirrors: base URLs the files ``<stem>.gz`` are downloaded from, tried in order.
        system_dirs: directories where an operating-system package installs the files.
        subset_file: the shipped subset in ``ntkscope/data``.
        class_names: one name per label.
        citation: who made the data set, and its license.
    """

    name: str
    title: str
    sha256: dict[str, str]
    sizes: dict[str, int]
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...]
    subset_file: str
    class_names: tuple[str, ...]
    citation: str

    @property
    def files(self) -> tuple[str, ...]:
        """The four file stems, train split first."""
        return tuple(stem for split in SPLITS for stem in SPLIT_FILES[split])


MNIST = ImageSetSpec(
    name="mnist",
    title="MNIST",
    sha256={
        "train-images-idx3-ubyte":
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte":
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte":
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte":
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    sizes={"train": 60_000, "test": 10_000},
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    system_dirs=(),
    subset_file="mnist-subset.npz",
    class_names=tuple(str(d) for d in range(10)),
    citation="MNIST by Yann LeCun, Corinna Cortes and Christopher J.C. Burges "
    "(http://yann.lecun.com/exdb/mnist/), CC BY-SA 3.0",
)

FASHION_MNIST = ImageSetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    sha256={
        "train-images-idx3-ubyte":
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte":
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte":
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte":
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    sizes={"train": 60_000, "test": 10_000},
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    system_dirs=("/usr/share/datasets/fashion-mnist",),  # Debian: dataset-fashion-mnist
    subset_file="fashion-mnist-subset.npz",
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"),
    citation="Fashion-MNIST by Zalando Research: H. Xiao, K. Rasul and R. Vollgraf, "
    "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms, "
    "arXiv:1708.07747 (2017), MIT license",
)

#: The idx image data sets, by name.
IMAGE_SETS: dict[str, ImageSetSpec] = {s.name: s for s in (MNIST, FASHION_MNIST)}
