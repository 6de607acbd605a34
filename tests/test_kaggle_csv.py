"""The Kaggle CSV reader without Ray: planning, parsing, every bad-input error, the split."""

import numpy as np
import pytest

from handvae.data.kaggle_csv import plan_csv, read_chunk
from handvae.errors import DataError

from conftest import make_letters, write_kaggle_csv


def read_all(path, chunk_bytes=None, seed=0):
    plan = plan_csv(str(path), chunk_bytes)
    batches = [read_chunk(plan, chunk, seed, 0.2) for chunk in plan.chunks]
    return plan, {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


@pytest.mark.parametrize("header", [False, True])
def test_both_variants_give_every_row(tmp_path, header):
    images, labels = make_letters(60)
    path = write_kaggle_csv(tmp_path / "az.csv", images, labels, header=header)
    plan, batch = read_all(path, chunk_bytes=5000)
    assert plan.has_header == header and plan.num_data_rows == 60 and len(plan.chunks) > 5
    np.testing.assert_array_equal(batch["image"], images)
    np.testing.assert_array_equal(batch["label"], labels + 10)  # letters are classes 10-35
    np.testing.assert_array_equal(batch["row"], np.arange(60) + 1 + header)  # 1-based file lines
    assert set(batch["source"]) == {str(path)}


def test_a_first_data_row_of_zeros_is_not_taken_for_a_header(tmp_path):
    images, labels = make_letters(3)
    images[0] = 0
    labels[0] = 0
    path = write_kaggle_csv(tmp_path / "az.csv", images, labels)
    plan, batch = read_all(path)
    assert not plan.has_header and len(batch["label"]) == 3


def test_no_final_newline_and_crlf(tmp_path):
    images, labels = make_letters(4)
    path = write_kaggle_csv(tmp_path / "az.csv", images, labels)
    path.write_bytes(path.read_bytes().rstrip(b"\n").replace(b"\n", b"\r\n"))
    plan, batch = read_all(path, chunk_bytes=3000)
    assert plan.num_data_rows == 4
    np.testing.assert_array_equal(batch["image"], images)


def test_split_is_deterministic_about_80_20_and_independent_of_chunks_and_header(tmp_path):
    images, labels = make_letters(2000)
    plain = write_kaggle_csv(tmp_path / "a.csv", images, labels)
    headed = write_kaggle_csv(tmp_path / "b.csv", images, labels, header=True)
    _, one_chunk = read_all(plain, chunk_bytes=1 << 30)
    _, many_chunks = read_all(plain, chunk_bytes=20_000)
    _, with_header = read_all(headed, chunk_bytes=7_000)
    np.testing.assert_array_equal(one_chunk["split"], many_chunks["split"])
    np.testing.assert_array_equal(one_chunk["split"], with_header["split"])
    test_share = np.mean(one_chunk["split"] == "test")
    assert 0.17 < test_share < 0.23
    _, other_seed = read_all(plain, seed=1)
    assert (other_seed["split"] != one_chunk["split"]).any()


def bad_csv(tmp_path, edit):
    images, labels = make_letters(5)
    path = write_kaggle_csv(tmp_path / "bad.csv", images, labels)
    lines = path.read_text().split("\n")
    lines[3] = edit(lines[3])  # file line 4
    path.write_text("\n".join(lines))
    return path


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda line: line.rsplit(",", 1)[0], "line 4: 784 fields"),
        (lambda line: line + ",0", "line 4: 786 fields"),
        (lambda line: line.replace(",0", ",x", 1) if ",0" in line else "x" + line[1:], "line 4: .* not an integer"),
        (lambda line: "26" + line[line.index(",") :], "line 4: label 26 is outside 0-25"),
        (lambda line: line[: line.rindex(",")] + ",256", "line 4: pixel 783 is 256, outside 0-255"),
        (lambda line: line[: line.rindex(",")] + ",-1", "line 4: pixel 783 is -1, outside 0-255"),
        (lambda line: line[: line.rindex(",")] + ",", "line 4: pixel 783 is '', not an integer"),
        (lambda line: "", "line 4: empty line"),
    ],
)
def test_bad_rows_name_the_file_the_line_and_what_was_wrong(tmp_path, edit, message):
    path = bad_csv(tmp_path, edit)
    with pytest.raises(DataError, match=f"bad.csv, {message}"):
        read_all(path, chunk_bytes=3000)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="absent.csv: letters CSV not found"):
        plan_csv(str(tmp_path / "absent.csv"))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv: the letters CSV has no data"):
        plan_csv(str(tmp_path / "empty.csv"))


def test_a_header_of_the_wrong_width_is_an_error(tmp_path):
    (tmp_path / "h.csv").write_text("label,pixel\n1,2\n")
    with pytest.raises(DataError, match="line 1: a header line with 2 fields"):
        plan_csv(str(tmp_path / "h.csv"))
