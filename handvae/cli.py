"""The `handvae` command. Thin: parse flags, build configs, call the library, report errors plainly.

    handvae data                                  # summarise the bundled sample
    handvae data --letters-csv "A_Z Handwritten Data.csv" --mnist-dir data/mnist
    handvae prepare --letters-csv ... --mnist-dir ... --out data/prepared
    handvae train --dataset generated/NAME        # a folder written by `handvae generate` or `handvae prepare`
"""

import functools
import sys
from typing import Annotated, Optional

import typer

from handvae import storage
from handvae.config import DEFAULT_PRESET
from handvae.errors import DataError, user_error
from handvae.labels import CHARSET

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Supervised-VAE handwriting: data, training, generation on Ray.")

LettersCsv = Annotated[Optional[str], typer.Option("--letters-csv", help="Kaggle A-Z CSV: a path or URI (s3://, gs://, ...).")]
MnistDir = Annotated[Optional[str], typer.Option("--mnist-dir", help="MNIST root in torchvision's layout (ROOT/MNIST/raw/*-ubyte[.gz]).")]
Download = Annotated[bool, typer.Option("--download", help="Fetch MNIST into --mnist-dir with torchvision (needs a network).")]
Prepared = Annotated[Optional[str], typer.Option("--prepared", help="A folder written by `handvae prepare` (instead of raw sources).")]
Dataset = Annotated[Optional[str], typer.Option("--dataset", help="A folder written by `handvae prepare` or `handvae generate`: a path or URI.")]
SplitSeed = Annotated[int, typer.Option("--split-seed", help="Seed of the letters' 80/20 train/test split.")]


# Ctrl-C: Python's KeyboardInterrupt, or SystemExit where Ray handles the signal (Train's fit() has
# its own SIGINT handler that aborts the run and exits; a ray.get interrupted in Ray's core worker
# raises SystemExit(1)). Nothing else in a command exits the process.
_INTERRUPTED = (KeyboardInterrupt, SystemExit)


def reports_user_errors(command):
    """Bad input ends the command with its message on stderr and exit status 2, no traceback;
    Ctrl-C with one `interrupted` line (saying how to go on, where there is a way) and status 130,
    as a shell reports a command that SIGINT ended."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except _INTERRUPTED as exc:
            hint = str(exc) if isinstance(exc, KeyboardInterrupt) else ""
            typer.echo(f"interrupted{f': {hint}' if hint else ''}", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:
            found = user_error(exc)
            if found is None:
                raise
            typer.echo(f"error: {getattr(found, 'message', found)}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _sources(letters_csv, mnist_dir, download, prepared, split_seed, dataset=None):
    from handvae.data.datasets import DataSources
    from handvae.data.kaggle_csv import inspect_csv

    sources = DataSources(
        letters_csv=letters_csv, mnist_dir=mnist_dir, download=download, prepared_dir=prepared, split_seed=split_seed, dataset=dataset
    )
    if letters_csv:
        inspect_csv(letters_csv)  # a missing, unreadable, archived or header-only file fails now, before Ray starts
    return sources


@app.command()
@reports_user_errors
def data(
    letters_csv: LettersCsv = None,
    mnist_dir: MnistDir = None,
    download: Download = False,
    prepared: Prepared = None,
    split_seed: SplitSeed = 0,
    dataset: Dataset = None,
):
    """Read and validate every row, then print rows per source, split and class."""
    from handvae.data.datasets import read_split, summarize
    from handvae.runtime import init_ray

    sources = _sources(letters_csv, mnist_dir, download, prepared, split_seed, dataset)
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
def prepare(
    out: Annotated[str, typer.Option("--out", help="Folder to write (new, empty, or an earlier `prepare` output with --overwrite); complete or as it was.")],
    letters_csv: LettersCsv = None,
    mnist_dir: MnistDir = None,
    download: Download = False,
    split_seed: SplitSeed = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing folder.")] = False,
):
    """Convert the raw sources once to parquet shards (one folder per split) that later runs read faster."""
    from handvae.data.datasets import prepare as prepare_parquet

    if not (letters_csv or mnist_dir):
        raise DataError("prepare needs --letters-csv and/or --mnist-dir")
    manifest = prepare_parquet(_sources(letters_csv, mnist_dir, download, None, split_seed), out, overwrite=overwrite)
    typer.echo(f"wrote {manifest['rows']} rows to {out}")


@app.command()
@reports_user_errors
def train(
    letters_csv: LettersCsv = None,
    mnist_dir: MnistDir = None,
    download: Download = False,
    prepared: Prepared = None,
    split_seed: SplitSeed = 0,
    dataset: Dataset = None,
    data_feed: Annotated[Optional[str], typer.Option("--data-feed", help="auto (default), memory or stream: how workers get the data (README, Training).")] = None,
    preset: Annotated[str, typer.Option("--preset", help="Named recipe: `handvae` (the default) or `seed` (the notebook's).")] = DEFAULT_PRESET,
    config_file: Annotated[Optional[str], typer.Option("--config", help="TOML or JSON file of TrainConfig fields.")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size")] = None,
    learning_rate: Annotated[Optional[float], typer.Option("--learning-rate")] = None,
    num_workers: Annotated[Optional[int], typer.Option("--num-workers", help="Ray Train workers (DDP ranks).")] = None,
    use_gpu: Annotated[Optional[bool], typer.Option("--use-gpu/--no-gpu", show_default=False)] = None,
    bf16: Annotated[Optional[bool], typer.Option("--bf16/--no-bf16", show_default=False, help="bfloat16 autocast on GPU.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option("--checkpoint-every")] = None,
    max_failures: Annotated[Optional[int], typer.Option("--max-failures")] = None,
    tensorboard: Annotated[Optional[bool], typer.Option("--tensorboard/--no-tensorboard", show_default=False, help="Scalars in RUN/tensorboard.")] = None,
    report: Annotated[Optional[bool], typer.Option("--report/--no-report", show_default=False, help="Evaluation report in RUN/report at the end (on by default).")] = None,
    run_name: Annotated[Optional[str], typer.Option("--run-name", help="Same name and storage again: resume.")] = None,
    storage_path: Annotated[str, typer.Option("--storage-path", help="Local folder or URI for run folders.")] = "runs",
):
    """Train the VAE with Ray Train (DDP); the same command again resumes from the latest checkpoint."""
    from datetime import datetime

    from handvae.config import resolve_config
    from handvae.train import run_training

    overrides = dict(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, num_workers=num_workers, use_gpu=use_gpu,
        bf16=bf16, seed=seed, checkpoint_every=checkpoint_every, max_failures=max_failures, tensorboard=tensorboard, report=report,
        data_feed=data_feed,
    )
    config = resolve_config(preset, config_file, overrides)
    sources = _sources(letters_csv, mnist_dir, download, prepared, split_seed, dataset)
    run_name = run_name or datetime.now().strftime("train-%Y%m%d-%H%M%S")
    try:
        result = run_training(config, sources, run_name, storage_path)
    except _INTERRUPTED:
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
def evaluate(
    model: Annotated[str, typer.Option("--model", help="A model file written by `handvae train`.")],
    out: Annotated[str, typer.Option("--out", help="Report folder or URI (s3://...): metrics.json, PNG plots, report.md; new, empty, or an earlier report.")],
    letters_csv: LettersCsv = None,
    mnist_dir: MnistDir = None,
    download: Download = False,
    prepared: Prepared = None,
    split_seed: SplitSeed = 0,
    split: Annotated[str, typer.Option("--split", help="train or test.")] = "test",
    num_workers: Annotated[Optional[int], typer.Option("--num-workers", help="Model actors (default: one per CPU but one).")] = None,
    use_gpu: Annotated[bool, typer.Option("--use-gpu", help="One GPU per model actor.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the posterior samples and the choice of styles.")] = 0,
    judge: Annotated[Optional[str], typer.Option("--judge", help="A judge file (`handvae train-judge`): also legibility and variety of generated characters.")] = None,
    styles_per_class: Annotated[int, typer.Option("--styles-per-class", help="With --judge: styles taken from each class.")] = 10,
):
    """The seed's accuracy figures and plots for a model on a split, as a report folder."""
    from handvae.evaluate import EvalOptions, run_evaluation

    sources = _sources(letters_csv, mnist_dir, download, prepared, split_seed)
    options = EvalOptions(split=split, num_workers=num_workers, use_gpu=use_gpu, seed=seed, judge=judge, styles_per_class=styles_per_class)
    report = run_evaluation(model, sources, out, options)
    typer.echo(
        f"{report['images']:,} {split} images: accuracy {report['accuracy']:.2%}, mean per-class accuracy "
        f"{report['mean_per_class_accuracy']:.2%}, reconstruction accuracy {report['recon_accuracy']:.2%}"
    )
    for source, figures in report["by_source"].items():
        typer.echo(f"  {figures['images']:>7,} images  accuracy {figures['accuracy']:.2%}  {source}")
    if "generation" in report:
        g = report["generation"]
        typer.echo(
            f"generated characters: judge accuracy {g['generated_accuracy_mean']:.2%} (real {g['real_accuracy_mean']:.2%}), "
            f"legibility {g['legibility']:.3f}x, variety {g['variety_mean']:.3f}x"
        )
    typer.echo(f"report: {storage.join(storage.absolute(out), 'report.md')}")


@app.command("train-judge")
@reports_user_errors
def train_judge_command(
    out: Annotated[str, typer.Option("--out", help="The judge file to write.")],
    letters_csv: LettersCsv = None,
    mnist_dir: MnistDir = None,
    download: Download = False,
    prepared: Prepared = None,
    split_seed: SplitSeed = 0,
    epochs: Annotated[int, typer.Option("--epochs")] = 4,
    seed: Annotated[int, typer.Option("--seed")] = 0,
):
    """Train the separate classifier that judges generated characters, on real training images only."""
    from dataclasses import asdict

    from handvae.data.datasets import read_split, to_tensors
    from handvae.judge import JudgeTraining, judge_predictions, per_class_accuracy, save_judge, train_judge
    from handvae.runtime import init_ray

    sources = _sources(letters_csv, mnist_dir, download, prepared, split_seed)
    init_ray()
    train_images, train_labels = to_tensors(read_split(sources, "train"))
    test_images, test_labels = to_tensors(read_split(sources, "test"))
    config = JudgeTraining(epochs=epochs, seed=seed)
    typer.echo(f"training the judge on {len(train_labels):,} real training images")
    judge = train_judge(train_images, train_labels, config, log=typer.echo)
    accuracy = per_class_accuracy(judge_predictions(judge, test_images), test_labels)
    mean = sum(accuracy.values()) / len(accuracy)
    save_judge(out, judge, {"data": sources.describe(), "training": asdict(config), "test_accuracy_mean_over_classes": mean})
    typer.echo(f"judge accuracy on {len(test_labels):,} real test images: {mean:.2%} (mean over classes); wrote {out}")


@app.command()
@reports_user_errors
def generate(
    model: Annotated[str, typer.Option("--model", help="A model file written by `handvae train`.")],
    out: Annotated[str, typer.Option("--out", help="Data set folder or URI (s3://...): README.md card, data/<run>/*.parquet, sheet.png, manifest.json, _SUCCESS; new, empty, or an earlier generated data set.")],
    letters_csv: LettersCsv = None,
    mnist_dir: MnistDir = None,
    download: Download = False,
    prepared: Prepared = None,
    split_seed: SplitSeed = 0,
    split: Annotated[str, typer.Option("--split", help="The split whose images give the styles.")] = "test",
    style_images: Annotated[Optional[list[str]], typer.Option("--style-images", help="Image files of one's own handwriting, one character each (repeat the flag).")] = None,
    pairing: Annotated[Optional[str], typer.Option("--pairing", help="own-class: each character in styles of its own real samples, --num-styles of each (default for a data split); every-style: every character in every style (default for --style-images, --text).")] = None,
    num_styles: Annotated[Optional[int], typer.Option("--num-styles", help="Styles drawn at random by the seed, per character with own-class (default: all).")] = None,
    chars: Annotated[str, typer.Option("--chars", help="Characters to draw in each style.")] = CHARSET,
    text: Annotated[Optional[str], typer.Option("--text", help="A line of text (0-9, A-Z, spaces) to write in each style, instead of --chars.")] = None,
    samples_per_style: Annotated[int, typer.Option("--samples-per-style", help="Draws from each style's posterior.")] = 1,
    randomness: Annotated[float, typer.Option("--randomness", help="Scales the posterior's spread; 0 draws the mean style.")] = 1.0,
    average: Annotated[int, typer.Option("--average", help="Posterior draws averaged into one style.")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Same seed and inputs, identical output.")] = 0,
    sharpness: Annotated[Optional[float], typer.Option("--sharpness", help="Factor on the decoder's logits: 1 soft (the seed), higher crisper (default: the model's recipe).")] = None,
    class_shift: Annotated[Optional[bool], typer.Option("--class-shift/--no-class-shift", show_default=False, help="Move styles between classes' mean latents (default: the model's recipe).")] = None,
    detail_sharpness: Annotated[Optional[float], typer.Option("--detail-sharpness", help="--sharpness of own-class drawings by a model's detail decoder (default: the model's recipe).")] = None,
    num_workers: Annotated[Optional[int], typer.Option("--num-workers", help="Model actors (default: one per CPU but one).")] = None,
    use_gpu: Annotated[bool, typer.Option("--use-gpu", help="One GPU per model actor.")] = False,
    rows_per_file: Annotated[int, typer.Option("--rows-per-file", help="Rows per parquet file (whole model calls of 64 styles).")] = 100_000,
):
    """Draw characters in the styles of handwriting samples, as a parquet data set."""
    from handvae.generate import GenerateOptions, run_generation

    if text is not None and chars != CHARSET:
        raise DataError("give --chars or --text, not both")
    sources = _sources(letters_csv, mnist_dir, download, prepared, split_seed)
    if style_images and not sources.is_sample:
        raise DataError("give --style-images or data flags for the styles, not both")
    options = GenerateOptions(
        chars=chars, text=text, split=split, pairing=pairing, style_images=tuple(style_images or ()), num_styles=num_styles,
        samples_per_style=samples_per_style, randomness=randomness, average=average, seed=seed, sharpness=sharpness, class_shift=class_shift,
        detail_sharpness=detail_sharpness, num_workers=num_workers, use_gpu=use_gpu, rows_per_file=rows_per_file,
    )
    manifest = run_generation(model, sources, out, options)
    typer.echo(f"wrote {manifest['rows']:,} images in {manifest['styles']:,} styles to {storage.absolute(out)} (files: {manifest['data_dir']}/, contact sheet: sheet.png)")


@app.command()
@reports_user_errors
def score(
    dataset: Annotated[str, typer.Option("--dataset", help="A generated data set (`handvae generate --out`): folder or URI.")],
    out: Annotated[str, typer.Option("--out", help="Report folder: metrics.json, report.md, cas.png.")],
    letters_csv: LettersCsv = None,
    mnist_dir: MnistDir = None,
    download: Download = False,
    prepared: Prepared = None,
    split_seed: SplitSeed = 0,
):
    """Classification Accuracy Score: a reference classifier trained on the generated data, on real +
    generated, and on real data alone, each with three seeds, tested on the real test split of the data flags."""
    from handvae.score import points, run_scoring

    report = run_scoring(dataset, _sources(letters_csv, mnist_dir, download, prepared, split_seed), out)
    gains = sorted(s["augmentation_gain"] for s in report["by_seed"])
    typer.echo(
        f"CAS {report['cas']:.2%} ({report['cas_over_real']:.3f}x of real {report['trained_on']['real']['mean_per_class_accuracy']:.2%}); "
        f"real + generated {report['trained_on']['real+generated']['mean_per_class_accuracy']:.2%} "
        f"({points(report['augmentation_gain'])} points, {points(gains[0])} to {points(gains[-1])} by seed; "
        f"letters {points(report['augmentation_gain_letters'])}); means over {len(gains)} seeds of the reference classifier"
    )
    typer.echo(f"report: {storage.join(storage.absolute(out), 'report.md')}")


def main() -> None:  # pragma: no cover - for `python -m handvae.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
