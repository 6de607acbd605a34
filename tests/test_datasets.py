"""The Ray Data datasets: both sources together, splits, block-count independence, prepare, the sample."""

import numpy as np
import pytest

from handvae.data.prepare import prepare
from handvae.data.sources import DataSources, read_split, summarize
from handvae.errors import DataError, OutputError
from handvae.labels import NUM_CLASSES

from conftest import make_letters, make_mnist_root, write_kaggle_csv

pytestmark = pytest.mark.usefixtures("ray_local")


def collect(dataset):
    batches = list(dataset.iter_batches(batch_format="numpy", batch_size=None))
    batch = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    order = np.lexsort((batch["row"], batch["source"]))
    return {k: v[order] for k, v in batch.items()}


@pytest.fixture(scope="module")
def raw_sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    images, labels = make_letters(300)
    csv = write_kaggle_csv(root / "az.csv", images, labels, header=True)
    make_mnist_root(root / "mnist", train=40, test=10)
    return DataSources(letters_csv=str(csv), mnist_dir=str(root / "mnist"), csv_chunk_bytes=40_000)


def test_both_sources_in_one_schema(raw_sources):
    train, test = collect(read_split(raw_sources, "train")), collect(read_split(raw_sources, "test"))
    assert len(train["label"]) + len(test["label"]) == 300 + 50
    for batch, split in ((train, "train"), (test, "test")):
        assert batch["image"].shape[1:] == (28, 28) and batch["image"].dtype == np.uint8
        assert set(batch["split"]) == {split}
    letters = train["source"] == raw_sources.letters_csv
    assert letters.any() and set(np.unique(train["label"][letters])) <= set(range(10, 36))
    assert (
        np.char.endswith(test["source"].astype(str), "t10k-images-idx3-ubyte.gz").sum() == 10
    )  # MNIST's own test split


def test_split_does_not_depend_on_the_number_of_blocks(raw_sources):
    from dataclasses import replace

    few = collect(read_split(replace(raw_sources, csv_chunk_bytes=1 << 30, mnist_dir=None), "test"))
    many = collect(read_split(replace(raw_sources, csv_chunk_bytes=9_000, mnist_dir=None), "test"))
    np.testing.assert_array_equal(few["row"], many["row"])
    np.testing.assert_array_equal(few["image"], many["image"])


def test_summary_counts_every_row_by_class_and_split(raw_sources):
    summary = summarize(read_split(raw_sources, None))
    assert summary.total == 350
    counts = summary.class_counts["train"] + summary.class_counts["test"]
    np.testing.assert_array_equal(counts[:10], [5] * 10)  # 50 digits, labels i % 10
    assert counts[10:].sum() == 300 and counts.shape == (NUM_CLASSES,)


def test_a_bad_row_fails_the_read_with_its_line(tmp_path):
    images, labels = make_letters(20)
    path = write_kaggle_csv(tmp_path / "az.csv", images, labels)
    lines = path.read_text().split("\n")
    lines[16] = "99" + lines[16][lines[16].index(",") :]
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match="az.csv, line 17: label 99 is outside 0-25"):
        summarize(read_split(DataSources(letters_csv=str(path), csv_chunk_bytes=5000), None))


def test_prepare_round_trips_and_never_leaves_a_partial_folder(raw_sources, tmp_path):
    out = tmp_path / "prepared"
    manifest = prepare(raw_sources, str(out))
    assert (out / "_SUCCESS").exists() and sum(manifest["rows"].values()) == 350
    for split in ("train", "test"):
        direct, prepared = (
            collect(read_split(raw_sources, split)),
            collect(read_split(DataSources(prepared_dir=str(out)), split)),
        )
        for column in ("image", "label", "row", "source", "split"):
            np.testing.assert_array_equal(direct[column], prepared[column])
    with pytest.raises(OutputError, match="prepared: already exists"):
        prepare(raw_sources, str(out))
    broken = DataSources(letters_csv=str(tmp_path / "absent.csv"))
    with pytest.raises(DataError, match="not found"):
        prepare(broken, str(tmp_path / "never"))
    assert not list(tmp_path.glob("never*")), "a failed prepare leaves nothing behind"


def test_a_prepared_folder_with_foreign_images_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "train").mkdir()
    (tmp_path / "_SUCCESS").touch()
    table = pa.table(
        {
            "image": pa.array([b"\x00" * 10]),
            "label": pa.array([1], pa.uint8()),
            "source": ["x"],
            "row": [0],
            "split": ["train"],
        }
    )
    pq.write_table(table, tmp_path / "train" / "part-0.parquet")
    with pytest.raises(
        DataError,
        match=r"train/part-0.parquet: images are `image` binary; expected `pixels` or `image` as fixed_size_binary\[784\]",
    ):
        summarize(read_split(DataSources(prepared_dir=str(tmp_path)), "train"))


def test_bundled_sample_has_every_class(ray_local):
    summary = summarize(read_split(DataSources(), None))
    for split, per_class in (("train", 80), ("test", 20)):
        counts = summary.class_counts[split]
        assert counts.min() > 0 and counts.max() == per_class
    assert 3000 < summary.total <= 3600


def test_source_options_are_validated():
    with pytest.raises(DataError, match="not both"):
        DataSources(letters_csv="a.csv", prepared_dir="p")
    with pytest.raises(DataError, match="--download needs --mnist-dir"):
        DataSources(download=True)
    with pytest.raises(DataError, match="test_fraction"):
        DataSources(test_fraction=1.0)
