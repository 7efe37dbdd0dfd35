"""Fashion-MNIST loading from the places it can be found offline."""

import gzip
import os
import struct

import numpy as np

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def read_idx(path):
    """Reads an IDX file (optionally gzipped) into a NumPy array.

    Args:
        path: path of a `.idx*-ubyte` or `.idx*-ubyte.gz` file.

    Returns:
        A NumPy array with the file's dtype and shape.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"Not an IDX file (bad magic number). Received: path={path}"
        )
    dtypes = {
        0x08: np.uint8,
        0x09: np.int8,
        0x0B: ">i2",
        0x0C: ">i4",
        0x0D: ">f4",
        0x0E: ">f8",
    }
    if data[2] not in dtypes:
        raise ValueError(
            f"Unknown IDX data type {data[2]:#x}. Received: path={path}"
        )
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(dtypes[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    body = data[4 + 4 * ndim :]
    if len(body) != expected:
        raise ValueError(
            f"IDX file is truncated: expected {expected} data bytes for shape "
            f"{shape}, found {len(body)}. Received: path={path}"
        )
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def _candidate_dirs(data_dir):
    if data_dir is not None:
        return [data_dir]
    keras_home = os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras"))
    return [
        DEBIAN_DIR,
        os.path.join(keras_home, "datasets", "fashion-mnist"),
    ]


def load_fashion_mnist(data_dir=None, download=True):
    """Loads Fashion-MNIST as uint8 arrays.

    Looks in `data_dir` if given; otherwise in the directory of Debian's
    `dataset-fashion-mnist` package, then in the Keras dataset cache
    (`~/.keras/datasets/fashion-mnist`). If none holds the files and
    `download` is true, falls back to `keras.datasets.fashion_mnist`, which
    downloads them.

    Args:
        data_dir: optional directory holding the four IDX `.gz` files.
        download: whether to download when no local copy is found.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: images `(N, 28, 28)` uint8,
        labels `(N,)` uint8.
    """
    for directory in _candidate_dirs(data_dir):
        paths = {k: os.path.join(directory, f) for k, f in _FILES.items()}
        if all(os.path.exists(p) for p in paths.values()):
            arrays = {k: read_idx(p) for k, p in paths.items()}
            return (arrays["x_train"], arrays["y_train"]), (
                arrays["x_test"],
                arrays["y_test"],
            )
    if data_dir is not None:
        raise ValueError(
            "The Fashion-MNIST IDX files were not found in `data_dir` "
            f"(expected {sorted(_FILES.values())}). "
            f"Received: data_dir={data_dir}"
        )
    if not download:
        raise FileNotFoundError(
            "Fashion-MNIST was not found locally. Install Debian's package "
            "(`apt-get install dataset-fashion-mnist`) or allow downloading "
            f"(download=True). Looked in: {_candidate_dirs(None)}"
        )
    import keras

    try:
        return keras.datasets.fashion_mnist.load_data()
    except Exception as e:
        raise RuntimeError(
            "Fashion-MNIST is not on this machine and could not be "
            "downloaded. Install Debian's package "
            "(`apt-get install dataset-fashion-mnist`) or put the four IDX "
            f"files in a directory and pass it as `data_dir`. Cause: {e}"
        ) from e
