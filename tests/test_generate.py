"""The generation job on Ray Data: row counts and schema, the Hub layout read as is by datasets,
pandas, pyarrow, Ray, DuckDB and Polars, determinism, text lines, style images, a re-run, and
clear errors. The output policy's hard cases (killed runs, two runs at once, S3) are in test_outputs.py."""

import io
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pytest
import torch
from PIL import Image
from test_images import handwritten_l
from typer.testing import CliRunner

from handvae.cli import app
from handvae.data.sources import DataSources, read_split
from handvae.errors import ConfigError, DataError, OutputError
from handvae.formats.model_file import load_model_and_metadata
from handvae.generate.choices import blend_draws, own_class_draws
from handvae.generate.driver import GenerateOptions, run_generation
from handvae.generate.reports import read_rows
from handvae.labels import CHARSET
from handvae.model.vae import model_inputs

from conftest import make_letters, make_mnist_root, save_tiny_model, write_kaggle_csv

pytestmark = pytest.mark.usefixtures("ray_local")
# 5 styles x 2 draws x 36 characters; 2 styles a model call (144 rows), 2 calls a file: 288 + 72 rows
SMALL_FILES = GenerateOptions(
    pairing="every-style", num_styles=5, samples_per_style=2, num_workers=1, styles_per_batch=2, rows_per_file=288
)
COLUMNS = ["style_id", "source", "row", "sample", "char", "label", "label_probs", "pixels", "image"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    images, labels = make_letters(60)
    make_mnist_root(root / "mnist", train=4, test=9)
    return DataSources(
        letters_csv=str(write_kaggle_csv(root / "az.csv", images, labels)), mnist_dir=str(root / "mnist")
    )


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="module")
def alphabets(sources, model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "alphabets"
    manifest = run_generation(model_path, sources, str(out), SMALL_FILES)
    return out, manifest


def data_dir(out) -> str:
    """The documented way: the committed run's folder, from the manifest."""
    return f"{out}/{json.loads((out / 'manifest.json').read_text())['data_dir']}"


def read(out):
    return pd.read_parquet(data_dir(out))


def parquet_files(out) -> dict[str, bytes]:
    manifest = json.loads((out / "manifest.json").read_text())
    return {name.rsplit("/", 1)[1]: (out / name).read_bytes() for name in manifest["files"]}


def assert_teacher_probabilities(frame: pd.DataFrame, model_path: str) -> None:
    """`label_probs` is the model's classifier's softmax of each row's own image."""
    model, _ = load_model_and_metadata(model_path)
    images = torch.from_numpy(np.stack([np.frombuffer(b, np.uint8).reshape(28, 28) for b in frame["pixels"]]))
    x, _ = model_inputs(images, torch.zeros(len(images), dtype=torch.long))
    with torch.no_grad():
        expected = model.encode(x)[2].softmax(dim=1).numpy()
    probs = np.stack(frame["label_probs"].to_numpy())
    assert probs.dtype == np.float32 and probs.shape == (len(frame), 36)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-7)


def test_every_style_gets_the_full_alphabet_in_one_schema(alphabets, model_path):
    out, manifest = alphabets
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "_SUCCESS", "data", "manifest.json", "sheet.png"]
    assert manifest["format"] == "handvae.generated" and manifest["owner"] == "handvae"
    assert manifest["files"] == [f"{manifest['data_dir']}/train-{i:05d}.parquet" for i in range(2)] and manifest[
        "file_rows"
    ] == [288, 72]
    table = pads.dataset(data_dir(out)).to_table()
    assert table.column_names == COLUMNS and table.num_rows == manifest["rows"] == 5 * 2 * 36
    assert (
        str(table.schema.field("pixels").type) == "fixed_size_binary[784]"
        and str(table.schema.field("image").type) == "struct<bytes: binary, path: string>"
        and str(table.schema.field("label_probs").type).endswith(": float>[36]")  # a fixed-size list
    )
    frame = table.to_pandas()
    assert_teacher_probabilities(frame, model_path)
    assert frame.groupby(["style_id", "sample"]).size().tolist() == [36] * 10
    assert (frame["label"] == frame["char"].map(CHARSET.index)).all()
    assert (
        set(frame["sample"]) == {0, 1} and frame["source"].str.endswith(("az.csv", "t10k-images-idx3-ubyte.gz")).all()
    )
    for pixels, image in zip(frame["pixels"][:5], frame["image"][:5]):
        assert np.array_equal(
            np.asarray(Image.open(io.BytesIO(image["bytes"]))), np.frombuffer(pixels, np.uint8).reshape(28, 28)
        )
    with Image.open(out / "sheet.png") as sheet:
        assert sheet.width > 500 and sheet.height > 100


def test_read_rows_takes_every_stride_th_row_across_files(alphabets):
    out, manifest = alphabets
    frame = read(out)  # 288 + 72 rows in two files
    images, labels, keys = read_rows([str(out / name) for name in manifest["files"]], 7)
    expected = frame.iloc[::7]
    assert len(labels) == len(expected) == 52
    assert labels.tolist() == expected["label"].tolist() and keys.tolist() == expected["style_id"].tolist()
    assert [bytes(image.numpy().tobytes()) for image in images] == list(expected["pixels"])


def test_the_tools_people_use_read_the_same_rows(alphabets, tmp_path, monkeypatch):
    import datasets
    import duckdb
    import polars as pl
    import ray.data

    out, manifest = alphabets
    expected = read(out).sort_values(["style_id", "sample", "label"]).reset_index(drop=True)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = datasets.load_dataset(str(out), split="train")  # the card: no cast by the user
    assert hub.num_rows == 360 and isinstance(hub.features["image"], datasets.Image)
    assert (
        hub.features["label"].names == list(CHARSET)
        and hub.features["label"].int2str(hub[40]["label"]) == CHARSET[hub[40]["label"]]
    )
    assert hub[40]["char"] == CHARSET[hub[40]["label"]] and np.asarray(hub[40]["image"]).shape == (28, 28)
    readers = {
        "pyarrow": pads.dataset(data_dir(out)).to_table().to_pandas(),
        "ray": ray.data.read_parquet(data_dir(out)).to_pandas(),
        "duckdb": duckdb.sql(f"SELECT * FROM '{data_dir(out)}/*.parquet'").df(),
        "polars": pl.read_parquet(f"{data_dir(out)}/*.parquet").to_pandas(),
        "datasets": hub.select_columns(["style_id", "sample", "label", "char", "label_probs", "pixels"]).to_pandas(),
    }
    for name, frame in readers.items():
        frame = frame.sort_values(["style_id", "sample", "label"]).reset_index(drop=True)
        assert len(frame) == 360, name
        for column in ("style_id", "sample", "label", "char"):
            assert frame[column].astype(expected[column].dtype).equals(expected[column]), (name, column)
        assert [bytes(b) for b in frame["pixels"]] == list(expected["pixels"]), name
        if "label_probs" in frame:
            probs = np.stack([np.asarray(p, np.float32) for p in frame["label_probs"]])
            assert np.array_equal(probs, np.stack(expected["label_probs"].to_numpy())), name
    assert hub.features["label_probs"] == datasets.List(datasets.Value("float32"), length=36)
    card = (out / "README.md").read_text()
    assert f"path: {manifest['data_dir']}/train-*.parquet" in card and "seed 0" in card
    assert "CC BY-SA 3.0" in card and "Sachin Patel" in card and "NIST Special Database 19" in card


def test_own_class_draws_each_character_in_styles_of_its_own_samples(sources, model_path, tmp_path):
    # The default for a data split. The train split holds about 2 samples of each letter and 3 of
    # each digit: 5 drawings of a character reuse its samples, each time a further posterior draw.
    options = GenerateOptions(
        split="train", num_styles=5, chars="AB3", samples_per_style=2, num_workers=1, styles_per_batch=3
    )
    manifest = run_generation(model_path, sources, str(tmp_path / "own"), options)
    frame = read(tmp_path / "own")
    assert manifest["options"]["pairing"] == "own-class" and len(frame) == manifest["rows"] == 5 * 2 * 3
    card_text = (tmp_path / "own" / "README.md").read_text()
    assert manifest["model_config"]["detail_latent"] == 2 and "posterior and detail code per use" in card_text
    assert frame.groupby("char").size().to_dict() == {"3": 10, "A": 10, "B": 10}
    real = read_split(sources, "train").to_pandas()
    real_label = {(s, r): label for s, r, label in zip(real["source"], real["row"], real["label"])}
    assert all(
        real_label[(s, r)] == label for s, r, label in zip(frame["source"], frame["row"], frame["label"])
    )  # its own class
    per_style = frame.groupby("style_id")["sample"].agg(list)
    assert all(sorted(samples) == list(range(len(samples))) for samples in per_style)  # reuses are further draws
    counts = frame.groupby(["char", "style_id"]).size().groupby("char").agg(["min", "max"])
    assert ((counts["max"] - counts["min"]) <= 2).all() and manifest["styles"] == len(per_style)  # spread evenly
    assert frame["pixels"].nunique() == len(frame)
    # The card's novelty: every row measured (fewer than NOVELTY_SAMPLE), digits and letters apart.
    novelty = manifest["novelty"]
    assert (
        novelty["sampled_rows"] == 30 and novelty["digits"]["generated"] == 10 and novelty["letters"]["generated"] == 20
    )
    for part in ("digits", "letters"):
        f = novelty[part]
        assert f["generated_distance"] > 0 and f["ratio"] == pytest.approx(
            f["generated_distance"] / f["new_writer_distance"]
        )
        assert 0 <= f["nearest_is_own_sample"] <= 1  # every style sample is a training record
    assert "## Novelty" in card_text and "on 30 of its rows" in card_text
    run_generation(model_path, sources, str(tmp_path / "again"), replace(options, num_workers=2))
    assert parquet_files(tmp_path / "own") == parquet_files(tmp_path / "again")  # names and bytes


def test_own_class_draws_spread_each_characters_drawings_over_its_samples():
    style_ids, labels = np.arange(100, 110), np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    draws = own_class_draws(style_ids, labels, GenerateOptions(num_styles=7, chars="01"), "here")
    assert draws[:3].sum() == 7 and draws[3:7].sum() == 7 and draws[7:].sum() == 0  # '2' not asked for
    assert set(draws[:3]) == {2, 3} and set(draws[3:7]) == {1, 2}
    assert np.array_equal(draws, own_class_draws(style_ids, labels, GenerateOptions(num_styles=7, chars="01"), "here"))
    many = np.arange(1000, 1050)  # 50 samples of '0': which 10 are drawn is the seed's choice
    chosen = [
        set(
            np.flatnonzero(
                own_class_draws(many, np.zeros(50, int), GenerateOptions(num_styles=10, chars="0", seed=seed), "here")
            )
        )
        for seed in (0, 0, 1)
    ]
    assert chosen[0] == chosen[1] != chosen[2] and len(chosen[2]) == 10
    every = own_class_draws(style_ids, labels, GenerateOptions(chars="012", samples_per_style=2), "here")
    assert (every == 2).all()  # without num_styles: each sample once, times its draws
    with pytest.raises(DataError, match="here holds no samples of 'Z'"):
        own_class_draws(style_ids, labels, GenerateOptions(num_styles=1, chars="0Z"), "here")
    with pytest.raises(DataError, match="would draw one sample 50,000 times"):
        own_class_draws(
            style_ids, labels, GenerateOptions(num_styles=100_000, chars="1", samples_per_style=2, seed=0), "here"
        )


def test_blend_partners_are_other_samples_of_the_same_class():
    style_ids = np.arange(200, 212)
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 3])
    draws = np.array([2, 1, 1, 0, 3, 1, 2, 0, 1, 1, 1, 1])  # sample 3 and 7 not drawn; '2' has one sample
    index, number, partners, shares = blend_draws(style_ids, labels, draws, seed=0, candidates=3)
    assert index.tolist() == [0, 0, 1, 2, 4, 4, 4, 5, 6, 6, 8, 9, 10, 11]  # each sample's draws, in order
    assert number.tolist() == [0, 1, 0, 0, 0, 1, 2, 0, 0, 1, 0, 0, 0, 0]
    assert (labels[partners] == labels[index][:, None]).all()  # the same class
    alone = labels[index] == 2
    assert (partners[~alone] != index[~alone][:, None]).all() and (partners[alone] == 6).all()  # never itself
    assert np.isin(partners, np.flatnonzero(draws)).all()  # among the drawn samples
    assert ((0.3 <= shares) & (shares < 0.7)).all() and len(np.unique(shares)) == shares.size
    many = np.zeros(60, int)
    spread = blend_draws(np.arange(60), many, np.full(60, 20), seed=0)[2]
    assert len(np.unique(spread)) == 60  # partners over the whole class
    again = blend_draws(style_ids, labels, draws, seed=0, candidates=3)
    assert all(np.array_equal(a, b) for a, b in zip(again, (index, number, partners, shares)))
    other = blend_draws(style_ids, labels, draws, seed=1, candidates=3)
    assert not np.array_equal(other[3], shares)
    # A draw's partners and shares are its sample's, whichever other samples are drawn.
    fewer = draws.copy()
    fewer[9:] = 0
    kept = blend_draws(style_ids, labels, fewer, seed=0, candidates=3)
    assert np.array_equal(kept[3], shares[: len(kept[3])])


def test_blends_are_drawn_as_their_class_the_same_whatever_the_actors(sources, model_path, tmp_path):
    options = GenerateOptions(
        pairing="blend", split="train", num_styles=4, chars="AB3", num_workers=1, styles_per_batch=3
    )
    manifest = run_generation(model_path, sources, str(tmp_path / "blend"), options)
    frame = read(tmp_path / "blend")
    assert manifest["options"]["pairing"] == "blend" and len(frame) == manifest["rows"] == 4 * 3
    assert frame.groupby("char").size().to_dict() == {"3": 4, "A": 4, "B": 4}
    real = read_split(sources, "train").to_pandas()
    real_label = {(s, r): label for s, r, label in zip(real["source"], real["row"], real["label"])}
    assert all(real_label[(s, r)] == label for s, r, label in zip(frame["source"], frame["row"], frame["label"]))
    assert manifest["styles"] == frame["style_id"].nunique() and "novelty" in manifest
    assert "two real samples of that same character blended" in (tmp_path / "blend" / "README.md").read_text()
    assert_teacher_probabilities(frame, model_path)
    run_generation(model_path, sources, str(tmp_path / "again"), replace(options, num_workers=2))
    assert parquet_files(tmp_path / "blend") == parquet_files(tmp_path / "again")  # names and bytes
    redraws = run_generation(model_path, sources, str(tmp_path / "redraws"), replace(options, pairing="own-class"))
    assert redraws["rows"] == manifest["rows"] and not read(tmp_path / "redraws")["pixels"].equals(frame["pixels"])


def test_same_seed_same_files_whatever_the_actors(sources, model_path, alphabets, tmp_path):
    out, _ = alphabets
    again = run_generation(model_path, sources, str(tmp_path / "again"), replace(SMALL_FILES, num_workers=2))
    assert parquet_files(out) == parquet_files(tmp_path / "again") and again["rows"] == 360  # names and bytes
    run_generation(model_path, sources, str(tmp_path / "other"), replace(SMALL_FILES, seed=1))
    assert not read(out)["pixels"].equals(read(tmp_path / "other")["pixels"])


def test_randomness_zero_draws_the_mean_style(sources, model_path, tmp_path):
    run_generation(
        model_path,
        sources,
        str(tmp_path / "mean"),
        GenerateOptions(pairing="every-style", num_styles=2, chars="A7", samples_per_style=3, randomness=0.0),
    )
    frame = read(tmp_path / "mean")
    for _, group in frame.groupby(["style_id", "char"]):
        assert group["pixels"].nunique() == 1  # every draw is the posterior mean
    assert frame["pixels"].nunique() == 4


def test_text_lines_and_style_images(model_path, tmp_path):
    paths = [str(handwritten_l(tmp_path / f"mine{i}.png", size=(90 + 10 * i, 140))) for i in range(2)]
    manifest = run_generation(
        model_path, DataSources(), str(tmp_path / "text"), GenerateOptions(text="HI 2", style_images=tuple(paths))
    )
    frame = read(tmp_path / "text")
    assert (
        manifest["styles"] == 2 and len(frame) == 2 and set(frame["char"]) == {"HI 2"} and set(frame["label"]) == {-1}
    )
    assert sorted(frame["source"]) == sorted(paths) and set(frame["row"]) == {0}
    assert "novelty" not in manifest  # no training records to be near
    assert frame["label_probs"].isna().all()  # a line has no one class
    line = np.frombuffer(frame["pixels"][0], np.uint8).reshape(28, 4 * 28)
    assert line[:, 56:84].max() == 0 and line[:, :56].max() > 0  # the space stays blank
    assert np.asarray(Image.open(io.BytesIO(frame["image"][0]["bytes"]))).shape == (28, 112)


def test_a_rerun_replaces_the_data_set_and_keeps_files_beside_it(sources, model_path, tmp_path):
    out = tmp_path / "gen"
    options = GenerateOptions(num_styles=2, chars="AB")
    first = run_generation(model_path, sources, str(out), options)
    (out / "notes.txt").write_text("mine")  # handvae did not write it: it stays
    second = run_generation(model_path, sources, str(out), options)
    assert second["data_dir"] != first["data_dir"] and [p.name for p in (out / "data").iterdir()] == [second["run"]]
    assert (out / "notes.txt").read_text() == "mine" and len(read(out)) == 2 * 2  # replaced, not appended


def test_bad_requests_are_refused_with_what_was_wrong(sources, model_path, tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"--text: 'a' at position 2 is not supported; the model draws 0-9 and A-Z \(the model draws upper-case",
    ):
        GenerateOptions(text="Ha")
    with pytest.raises(ConfigError, match=r"--chars: '\?' at position 3"):
        GenerateOptions(chars="AB?")
    for shaped in ({"randomness": 0.0}, {"average": 4}):  # not silently ignored
        with pytest.raises(ConfigError, match="blends are drawn from the posterior means of two samples"):
            GenerateOptions(pairing="blend", **shaped)
    with pytest.raises(ConfigError, match="pairing blend draws each style sample as its own class"):
        GenerateOptions(pairing="blend", text="HI")
    (tmp_path / "scan.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="scan.png: not a readable image"):
        run_generation(
            model_path,
            DataSources(),
            str(tmp_path / "out"),
            GenerateOptions(style_images=(str(tmp_path / "scan.png"),)),
        )
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep")
    with pytest.raises(OutputError, match="mine: exists and is not a handvae generated output"):
        run_generation(model_path, sources, str(tmp_path / "mine"), GenerateOptions(num_styles=1))
    assert not (tmp_path / "out").exists() and (tmp_path / "mine" / "thesis.tex").read_text() == "keep"
    with pytest.raises(
        DataError, match=r"--num-styles 100,000: split 'test' of the given data holds \d+ style samples"
    ):
        run_generation(
            model_path, sources, str(tmp_path / "many"), GenerateOptions(pairing="every-style", num_styles=100_000)
        )
    assert not (tmp_path / "many" / "_SUCCESS").exists()
    with pytest.raises(
        DataError, match=r"split 'test' of the given data holds no samples of '9' to take its styles from"
    ):
        run_generation(
            model_path, sources, str(tmp_path / "nine"), GenerateOptions(num_styles=2, chars="A9")
        )  # the fixture's 9 test digits: 0-8
    with pytest.raises(
        ConfigError,
        match="pairing own-class draws each style sample as its own class; the samples of --style-images have none",
    ):
        GenerateOptions(pairing="own-class", style_images=("a.png",))
    with pytest.raises(ConfigError, match="pairing must be one of own-class, blend, every-style, got 'mixed'"):
        GenerateOptions(pairing="mixed")


def test_cli_generates_and_exits_2_on_an_unsupported_character(sources, model_path, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(
        app,
        [
            "generate",
            "--model",
            model_path,
            "--out",
            str(tmp_path / "g"),
            "--mnist-dir",
            sources.mnist_dir,
            "--num-styles",
            "2",
            "--chars",
            "XY",
            "--pairing",
            "every-style",
            "--no-label-probs",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "wrote 4 images in 2 styles" in ok.output
    assert read(tmp_path / "g")["label_probs"].isna().all()  # left out: the column is there, null
    assert ok.output.count("(100%)") == 1 and "generated 4/4 (100%)" in ok.output  # one final progress line
    bad = runner.invoke(app, ["generate", "--model", model_path, "--out", str(tmp_path / "h"), "--text", "hello"])
    assert bad.exit_code == 2 and "'h' at position 1 is not supported" in bad.output
