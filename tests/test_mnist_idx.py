"""The MNIST IDX reader without Ray: gz and raw files, and every bad-input error."""

import gzip

import numpy as np
import pytest

from handvae.data.mnist_idx import read_mnist_split
from handvae.errors import DataError

from conftest import make_mnist_root, write_idx


@pytest.mark.parametrize("gz", [True, False])
def test_reads_images_labels_and_provenance(tmp_path, gz):
    arrays = make_mnist_root(tmp_path, gz=gz)
    for split in ("train", "test"):
        batch = read_mnist_split(str(tmp_path), split)
        images, labels = arrays[split]
        np.testing.assert_array_equal(batch["image"], images)
        np.testing.assert_array_equal(batch["label"], labels)
        np.testing.assert_array_equal(batch["row"], np.arange(len(labels)))
        assert set(batch["split"]) == {split}
        assert batch["source"][0].endswith("idx3-ubyte.gz" if gz else "idx3-ubyte")


def test_missing_files_say_where_they_were_expected(tmp_path):
    with pytest.raises(
        DataError, match=r"MNIST images not found: expected .*MNIST/raw/train-images-idx3-ubyte.*--download"
    ):
        read_mnist_split(str(tmp_path), "train")


def test_wrong_magic_number(tmp_path):
    make_mnist_root(tmp_path, gz=False)
    path = tmp_path / "MNIST/raw/train-images-idx3-ubyte"
    data = bytearray(path.read_bytes())
    data[3] = 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="train-images-idx3-ubyte: IDX magic number 0x00000801, expected 0x00000803"):
        read_mnist_split(str(tmp_path), "train")


@pytest.mark.parametrize("cut", [10, 5000])
def test_truncated_file(tmp_path, cut):
    make_mnist_root(tmp_path, gz=True)
    path = tmp_path / "MNIST/raw/t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:cut]))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: truncated"):
        read_mnist_split(str(tmp_path), "test")


def test_corrupt_gzip(tmp_path):
    make_mnist_root(tmp_path, gz=True)
    (tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: not a readable gzip file"):
        read_mnist_split(str(tmp_path), "test")


def test_count_mismatch_and_bad_label(tmp_path):
    make_mnist_root(tmp_path, gz=False, train=30)
    labels_path = tmp_path / "MNIST/raw/train-labels-idx1-ubyte"
    write_idx(labels_path, np.zeros(29, np.uint8))
    with pytest.raises(DataError, match="holds 30 images but .* holds 29 labels"):
        read_mnist_split(str(tmp_path), "train")
    write_idx(labels_path, np.r_[np.zeros(29, np.uint8), 12].astype(np.uint8))
    with pytest.raises(DataError, match="record 29: label 12, expected a digit 0-9"):
        read_mnist_split(str(tmp_path), "train")
