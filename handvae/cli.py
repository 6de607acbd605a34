"""The `handvae` command. Thin: parse flags, build configs, call the library, report errors plainly.

handvae data                                  # summarise the bundled sample
handvae data --letters-csv "A_Z Handwritten Data.csv" --mnist-dir data/mnist
handvae prepare --letters-csv ... --mnist-dir ... --out data/prepared
handvae train --dataset generated/NAME        # a folder written by `handvae generate` or `handvae prepare`
"""

import sys
from typing import Annotated

import typer

from handvae import storage
from handvae.cli_support import INTERRUPTED, ActorCount, ActorGpu, ModelFile, reports_user_errors, with_data_flags
from handvae.errors import DataError, ModelFileError, check_paths
from handvae.labels import CHARSET

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Supervised-VAE handwriting: data, training, generation on Ray."
)


@app.command()
@reports_user_errors
@with_data_flags(dataset=True)
def data(sources):
    """Read and validate every row, then print rows per source, split and class."""
    from handvae.data.sources import plan_sources_folder, read_split, summarize
    from handvae.runtime import init_ray

    plan_sources_folder(sources)  # a data set folder's footers: a bad or empty one fails before Ray starts
    init_ray()
    summary = summarize(read_split(sources, None))
    if sources.is_sample:
        typer.echo("bundled sample (no --letters-csv/--mnist-dir/--prepared/--dataset given)")
    typer.echo(f"{'rows':>8}  {'split':<5}  source")
    for (source, split), rows in sorted(summary.rows_by_source.items()):
        typer.echo(f"{rows:>8}  {split:<5}  {source}")
    typer.echo(f"{summary.total:>8}  total\n")
    typer.echo("class  " + "  ".join(f"{split:>6}" for split in summary.class_counts))
    for label, char in enumerate(CHARSET):
        typer.echo(f"{char:>5}  " + "  ".join(f"{counts[label]:>6}" for counts in summary.class_counts.values()))


@app.command()
@reports_user_errors
@with_data_flags()
def prepare(
    sources,
    out: Annotated[
        str,
        typer.Option(
            "--out",
            help="Folder to write (new, empty, or an earlier `prepare` output with --overwrite); complete or as it was.",
        ),
    ],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing folder.")] = False,
):
    """Convert the raw sources once to parquet shards (one folder per split) that later runs read faster."""
    check_paths(("--out", out))
    from handvae.data.prepare import prepare as prepare_parquet

    if not (sources.letters_csv or sources.mnist_dir):
        raise DataError("prepare needs --letters-csv and/or --mnist-dir")
    manifest = prepare_parquet(sources, out, overwrite=overwrite)
    typer.echo(f"wrote {manifest['rows']} rows to {out}")


@app.command()
@reports_user_errors
@with_data_flags(dataset=True)
def train(
    sources,
    data_feed: Annotated[
        str | None,
        typer.Option(
            "--data-feed", help="auto (default), memory or stream: how workers get the data (docs/training.md)."
        ),
    ] = None,
    preset: Annotated[
        str | None, typer.Option("--preset", help="Named recipe: `handvae` (the default) or `seed` (the notebook's).")
    ] = None,
    config_file: Annotated[
        str | None, typer.Option("--config", help="TOML or JSON file of TrainConfig fields.")
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    learning_rate: Annotated[float | None, typer.Option("--learning-rate")] = None,
    num_workers: Annotated[int | None, typer.Option("--num-workers", help="Ray Train workers (DDP ranks).")] = None,
    use_gpu: Annotated[bool | None, typer.Option("--use-gpu/--no-gpu", show_default=False)] = None,
    bf16: Annotated[
        bool | None, typer.Option("--bf16/--no-bf16", show_default=False, help="bfloat16 autocast on GPU.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    checkpoint_every: Annotated[int | None, typer.Option("--checkpoint-every")] = None,
    max_failures: Annotated[int | None, typer.Option("--max-failures")] = None,
    tensorboard: Annotated[
        bool | None,
        typer.Option("--tensorboard/--no-tensorboard", show_default=False, help="Scalars in RUN/tensorboard."),
    ] = None,
    report: Annotated[
        bool | None,
        typer.Option(
            "--report/--no-report",
            show_default=False,
            help="Evaluation report in RUN/report at the end (on by default).",
        ),
    ] = None,
    run_name: Annotated[str | None, typer.Option("--run-name", help="Same name and storage again: resume.")] = None,
    storage_path: Annotated[str, typer.Option("--storage-path", help="Local folder or URI for run folders.")] = "runs",
):
    """Train the VAE with Ray Train (DDP); the same command again resumes from the latest checkpoint."""
    from dataclasses import fields
    from datetime import datetime

    check_paths(("--config", config_file), ("--storage-path", storage_path), ("--run-name", run_name))
    from handvae.train.config import DEFAULT_PRESET, TrainConfig, resolve_config

    given = locals()  # every option named as a TrainConfig field overrides it (None: not given)
    overrides = {field.name: given[field.name] for field in fields(TrainConfig) if field.name in given}
    config = resolve_config(preset or DEFAULT_PRESET, config_file, overrides)
    run_name = run_name or datetime.now().strftime("train-%Y%m%d-%H%M%S")
    from handvae.train.driver import run_training

    try:
        result = run_training(config, sources, run_name, storage_path)
        if config.report:
            from handvae.evaluate.driver import run_report

            run_report(result.run_dir, sources, use_gpu=config.use_gpu, seed=config.seed)
    except INTERRUPTED:
        raise KeyboardInterrupt(
            f"to resume after the latest checkpoint, run the same command with --run-name {run_name} --storage-path {storage_path}"
        ) from None
    last = result.metrics[-1]
    typer.echo(
        f"done: epoch {last['epoch']}, test accuracy {last['test_accuracy']:.2%}, reconstruction accuracy "
        f"{last['recon_accuracy']:.2%}\nrun folder: {result.run_dir}\nmodel: {result.model_path}"
        + (f"\nreport: {result.run_dir}/report/report.md" if config.report else "")
    )


@app.command()
@reports_user_errors
@with_data_flags()
def evaluate(
    sources,
    model: ModelFile,
    out: Annotated[
        str,
        typer.Option(
            "--out",
            help="Report folder or URI (s3://...): metrics.json, PNG plots, report.md; new, empty, or an earlier report.",
        ),
    ],
    split: Annotated[str, typer.Option("--split", help="train or test.")] = "test",
    num_workers: ActorCount = None,
    use_gpu: ActorGpu = False,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the posterior samples and the choice of styles.")] = 0,
    judge: Annotated[
        str | None,
        typer.Option(
            "--judge", help="A judge file (`handvae train-judge`): also legibility and variety of generated characters."
        ),
    ] = None,
    styles_per_class: Annotated[
        int, typer.Option("--styles-per-class", help="With --judge: styles taken from each class.")
    ] = 10,
):
    """The seed's accuracy figures and plots for a model on a split, as a report folder."""
    check_paths(("--model", model), ("--out", out), ("--judge", judge))
    storage.require(model, "model file", ModelFileError)
    from handvae.evaluate.driver import EvalOptions, run_evaluation

    options = EvalOptions(
        split=split, num_workers=num_workers, use_gpu=use_gpu, seed=seed, judge=judge, styles_per_class=styles_per_class
    )
    from handvae.evaluate.reports import summary

    typer.echo(summary(run_evaluation(model, sources, out, options)))
    typer.echo(f"report: {storage.join(storage.absolute(out), 'report.md')}")


@app.command("train-judge")
@reports_user_errors
@with_data_flags()
def train_judge_command(
    sources,
    out: Annotated[str, typer.Option("--out", help="The judge file to write.")],
    epochs: Annotated[int, typer.Option("--epochs")] = 4,
    seed: Annotated[int, typer.Option("--seed")] = 0,
):
    """Train the separate classifier that judges generated characters, on real training images only."""
    check_paths(("--out", out))
    from handvae.evaluate.train_judge import run_judge_training
    from handvae.model.judge import JudgeTraining

    run_judge_training(sources, out, JudgeTraining(epochs=epochs, seed=seed), log=typer.echo)


@app.command()
@reports_user_errors
@with_data_flags()
def generate(
    sources,
    model: ModelFile,
    out: Annotated[
        str,
        typer.Option(
            "--out",
            help="Data set folder or URI (s3://...): README.md card, data/<run>/*.parquet, sheet.png, manifest.json, _SUCCESS; new, empty, or an earlier generated data set.",
        ),
    ],
    split: Annotated[str, typer.Option("--split", help="The split whose images give the styles.")] = "test",
    style_images: Annotated[
        list[str] | None,
        typer.Option(
            "--style-images", help="Image files of one's own handwriting, one character each (repeat the flag)."
        ),
    ] = None,
    pairing: Annotated[
        str | None,
        typer.Option(
            "--pairing",
            help="own-class: each character in styles of its own real samples, --num-styles of each (default for a data split); blend: the same, each drawn from two real samples of the character blended (new writers, no copies of the records); every-style: every character in every style (default for --style-images, --text).",
        ),
    ] = None,
    num_styles: Annotated[
        int | None,
        typer.Option(
            "--num-styles", help="Styles drawn at random by the seed, per character with own-class (default: all)."
        ),
    ] = None,
    chars: Annotated[str, typer.Option("--chars", help="Characters to draw in each style.")] = CHARSET,
    text: Annotated[
        str | None,
        typer.Option("--text", help="A line of text (0-9, A-Z, spaces) to write in each style, instead of --chars."),
    ] = None,
    samples_per_style: Annotated[
        int, typer.Option("--samples-per-style", help="Draws from each style's posterior.")
    ] = 1,
    randomness: Annotated[
        float, typer.Option("--randomness", help="Scales the posterior's spread; 0 draws the mean style.")
    ] = 1.0,
    average: Annotated[int, typer.Option("--average", help="Posterior draws averaged into one style.")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Same seed and inputs, identical output.")] = 0,
    sharpness: Annotated[
        float | None,
        typer.Option(
            "--sharpness",
            help="Factor on the decoder's logits: 1 soft (the seed), higher crisper (default: the model's recipe).",
        ),
    ] = None,
    class_shift: Annotated[
        bool | None,
        typer.Option(
            "--class-shift/--no-class-shift",
            show_default=False,
            help="Move styles between classes' mean latents (default: the model's recipe).",
        ),
    ] = None,
    detail_sharpness: Annotated[
        float | None,
        typer.Option(
            "--detail-sharpness",
            help="--sharpness of own-class drawings by a model's detail decoder (default: the model's recipe).",
        ),
    ] = None,
    label_probs: Annotated[
        bool,
        typer.Option(
            "--label-probs/--no-label-probs",
            help="Each character's class probabilities by the model's classifier (label_probs); "
            "--no-label-probs leaves the column null and draws faster.",
        ),
    ] = True,
    num_workers: ActorCount = None,
    use_gpu: ActorGpu = False,
    rows_per_file: Annotated[
        int, typer.Option("--rows-per-file", help="Rows per parquet file (whole model calls of 64 styles).")
    ] = 100_000,
):
    """Draw characters in the styles of handwriting samples, as a parquet data set."""
    from handvae.generate.options import GenerateOptions

    check_paths(("--model", model), ("--out", out), *(("--style-images", path) for path in style_images or ()))
    if text is not None and chars != CHARSET:
        raise DataError("give --chars or --text, not both")
    if style_images and not sources.is_sample:
        raise DataError("give --style-images or data flags for the styles, not both")
    storage.require(model, "model file", ModelFileError)
    options = GenerateOptions(
        chars=chars,
        text=text,
        split=split,
        pairing=pairing,
        style_images=tuple(style_images or ()),
        num_styles=num_styles,
        samples_per_style=samples_per_style,
        randomness=randomness,
        average=average,
        seed=seed,
        sharpness=sharpness,
        class_shift=class_shift,
        detail_sharpness=detail_sharpness,
        label_probs=label_probs,
        num_workers=num_workers,
        use_gpu=use_gpu,
        rows_per_file=rows_per_file,
    )
    from handvae.generate.driver import run_generation

    manifest = run_generation(model, sources, out, options)
    typer.echo(
        f"wrote {manifest['rows']:,} images in {manifest['styles']:,} styles to {storage.absolute(out)} (files: {manifest['data_dir']}/, contact sheet: sheet.png)"
    )


@app.command()
@reports_user_errors
@with_data_flags()
def score(
    sources,
    dataset: Annotated[
        str, typer.Option("--dataset", help="A generated data set (`handvae generate --out`): folder or URI.")
    ],
    out: Annotated[str, typer.Option("--out", help="Report folder: metrics.json, report.md, cas.png.")],
):
    """Classification Accuracy Score: a reference classifier trained on the generated data, on real +
    generated, and on real data alone, each with three seeds, tested on the real test split of the data flags;
    and the novelty: the generated characters' distance to the closest real training record, against new writers'."""
    check_paths(("--dataset", dataset), ("--out", out))
    from handvae.score.driver import run_scoring
    from handvae.score.reports import summary

    typer.echo(summary(run_scoring(dataset, sources, out)))
    typer.echo(f"report: {storage.join(storage.absolute(out), 'report.md')}")


def main() -> None:  # pragma: no cover - for `python -m handvae.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
