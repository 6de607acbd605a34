"""The training recipe: one typed config, named presets, a config file and flags on top.

Precedence: preset < config file (TOML or JSON) < command-line flags. The resolved config is
saved with every run and inside every checkpoint.
"""

import json
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from handvae.errors import COUNT_MAX, SEED_MAX, ConfigError, check_int, require
from handvae.model.augment import Augment
from handvae.model.drawing import Drawing
from handvae.model.loss import LossWeights
from handvae.model.vae import VAEConfig

LR_SCHEDULES = ("constant", "cosine")
DATA_FEEDS = ("auto", "memory", "stream")
PAIRINGS = ("self", "same-class", "neighbours")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    """Passes over the training split."""
    batch_size: int = 64
    """Images per optimiser step on each worker."""
    learning_rate: float = 1e-3
    """Adam's step size (the seed uses Adam's default)."""
    num_workers: int = 2
    """Ray Train workers, one DDP rank each (one per GPU with use_gpu)."""
    use_gpu: bool = False
    """One GPU per worker, nccl; otherwise CPU workers with gloo."""
    bf16: bool = False
    """bfloat16 autocast for the forward pass on GPU."""
    seed: int = 0
    """Seeds weights, the per-epoch shuffle and the sampling noise: same seed and workers, same weights."""
    checkpoint_every: int = 1
    """Epochs between checkpoints; the last epoch always gets one."""
    max_failures: int = 2
    """Times a failed worker group is restarted from the latest checkpoint."""
    tensorboard: bool = False
    """Also write the per-epoch figures as TensorBoard scalars in the run folder."""
    report: bool = True
    """At the end, evaluate the final model on the test split into RUN/report (`handvae evaluate`'s report)."""
    lr_schedule: str = "constant"
    """"constant" (the seed), or "cosine": from learning_rate down to 0 over the epochs."""
    class_balance: float = 0.0
    """Each epoch draws its images (with replacement) with weight count(class) ** -class_balance:
    0 keeps the data's mix (the seed: 13 digits to 1 letter), 1 makes every class equally likely."""
    teacher_forcing: float = 0.0
    """Share of training images whose decoder is given the true class instead of the encoder's
    prediction (the seed: 0), so that z carries style rather than identity."""
    pairing: str = "self"
    """What the detail decoder learns to draw from a sample's codes (z and d). "self" (the seed's
    VAE): the sample itself. "same-class" (DAGAN-style pair training): another real training sample
    of the same class, drawn afresh every epoch (`handvae.model.steps.epoch_partners`), so that the decoder
    learns how one writer's character differs from another's instead of redrawing its input;
    own-class generation then draws from a style sample a character it was never trained to copy.
    The style decoder still reconstructs the sample itself, so z stays the style that transfers
    between characters (every-style drawings, legibility and variety are z's). "neighbours": the
    partner is one of the image's `pairing_neighbours` nearest images of its class (pixel distance,
    `handvae.model.steps.nearest_in_class`): a partner drawn from the whole class is nothing the
    image's codes can predict, and the decoder learns the class's mean character (measured:
    docs/results/experiment-log.md); a near one is another writer's take on a similar shape.
    Needs a detail code and the whole training set in memory (partners come from any rank's share)."""
    pairing_neighbours: int = 8
    """With pairing "neighbours": how many of an image's nearest images of its class its partner
    is drawn from, uniformly, each epoch."""
    model: VAEConfig = field(default_factory=VAEConfig)
    """Model sizes."""
    loss: LossWeights = field(default_factory=LossWeights)
    """Loss weights and the KL schedule."""
    augment: Augment = field(default_factory=Augment)
    """Random shifts, rotations and scalings of training images (off in the seed, always off in evaluation)."""
    drawing: Drawing = field(default_factory=Drawing)
    """How generation draws characters with the trained model; saved in the model file."""
    data_feed: str = "auto"
    """How workers get the training data. "memory": each worker holds the whole train and test
    sets (one read, fastest per epoch while they fit); "stream": each worker reads only its share
    of a data set folder every epoch, memory bounded by its buffers (`handvae.data.streaming`);
    "auto": stream a data set folder whose images exceed `handvae.train.driver.IN_MEMORY_LIMIT_BYTES`,
    keep anything smaller, and raw sources, in memory."""

    def __post_init__(self):
        for name in ("epochs", "batch_size", "num_workers", "checkpoint_every"):
            check_int(name, getattr(self, name), 1, COUNT_MAX)
        check_int("max_failures", self.max_failures, 0, 1000)
        check_int("seed", self.seed, 0, SEED_MAX)
        require("", "learning_rate", self.learning_rate, (int, float), lambda v: 0 < v < 1, "a number in (0, 1)")
        for name in ("use_gpu", "bf16", "tensorboard", "report"):
            require("", name, getattr(self, name), bool, lambda v: True, "true or false")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        require("", "class_balance", self.class_balance, (int, float), lambda v: 0 <= v <= 1, "a number in [0, 1]")
        require("", "teacher_forcing", self.teacher_forcing, (int, float), lambda v: 0 <= v <= 1, "a number in [0, 1]")
        if self.data_feed not in DATA_FEEDS:
            raise ConfigError(f"data_feed must be one of {DATA_FEEDS}, got {self.data_feed!r}")
        if self.data_feed == "stream" and self.class_balance:
            raise ConfigError("class_balance draws from the whole training set: it needs data_feed memory (or auto)")
        if self.pairing not in PAIRINGS:
            raise ConfigError(f"pairing must be one of {PAIRINGS}, got {self.pairing!r}")
        if self.pairing != "self" and self.data_feed == "stream":
            raise ConfigError(
                f"pairing {self.pairing} draws partners from the whole training set: it needs data_feed memory (or auto)"
            )
        require("", "pairing_neighbours", self.pairing_neighbours, int, lambda v: v >= 1, "an integer >= 1")
        if self.pairing != "self" and not self.model.detail_latent:
            raise ConfigError(f"pairing {self.pairing} trains the detail decoder: it needs [model] detail_latent > 0")
        if self.bf16 and not self.use_gpu:
            raise ConfigError("bf16 autocast needs use_gpu")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def learning_rate_at(self, epoch: int) -> float:
        """The step size for a 1-based epoch: a function of the epoch alone, so a resume gets it right."""
        if self.lr_schedule == "cosine":
            return self.learning_rate * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / self.epochs))
        return self.learning_rate

    @classmethod
    def from_dict(cls, values: dict[str, Any], base: "TrainConfig | None" = None) -> "TrainConfig":
        """`base` with `values` on top; nested `model` and `loss` tables update field by field."""
        base = base or cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known: {sorted(known)}")
        updates = dict(values)
        for name, kind in (("model", VAEConfig), ("loss", LossWeights), ("augment", Augment), ("drawing", Drawing)):
            if name in updates:
                nested = updates[name]
                if not isinstance(nested, dict):
                    raise ConfigError(f"config key {name!r} must be a table of {[f.name for f in fields(kind)]}")
                allowed = {f.name for f in fields(kind)}
                if set(nested) - allowed:
                    raise ConfigError(f"unknown {name} keys {sorted(set(nested) - allowed)}; known: {sorted(allowed)}")
                updates[name] = _build(replace, getattr(base, name), **nested)
        return _build(replace, base, **updates)


def _build(factory, *args, **kwargs):
    """Model and loss configs validate themselves with ValueError; report those as config errors too."""
    try:
        return factory(*args, **kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


PRESETS: dict[str, TrainConfig] = {
    # The seed notebook's recipe: batch 64, 10 epochs, Adam, 0.1 * cat + recon + epoch * 0.001 * kl,
    # characters drawn as the decoder's Bernoulli means.
    "seed": TrainConfig(),
    # The default (docs/results/recipes.md): the seed's objective with 64 images per optimiser step over
    # the default 2 workers (as the seed's single process steps), 15 epochs with a cosine learning
    # rate and the KL weight held at the seed's final 0.01; characters drawn crisp (sharpness 5) and
    # moved between classes' mean latents. A 64-number detail code draws each sample's own character
    # as written (a z that kept as much would draw every other character in the shape of the
    # sample's own). Measured on the real data: held-out letters 86% (seed 82%), generated
    # characters 0.97x as legible and 0.82x as varied as real ones (seed 1.0x, 0.47x), and the
    # generated data set trains a classifier to 0.996x of the real data (seed 0.800x).
    "handvae": TrainConfig(
        epochs=15,
        batch_size=32,
        lr_schedule="cosine",
        model=VAEConfig(detail_latent=64),
        loss=LossWeights(kl_max=0.01),
        drawing=Drawing(sharpness=5.0, class_shift=True),
    ),
}
DEFAULT_PRESET = "handvae"


def resolve_config(
    preset: str = DEFAULT_PRESET, config_file: str | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """Preset, then the file, then flags (None values in overrides mean "not given")."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; presets: {sorted(PRESETS)}")
    config = PRESETS[preset]
    if config_file:
        config = TrainConfig.from_dict(load_config_file(config_file), base=config)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    return TrainConfig.from_dict(given, base=config) if given else config


def load_config_file(path: str) -> dict[str, Any]:
    file = Path(path)
    if file.is_dir():
        raise ConfigError(f"{path}: a folder, expected a TOML or JSON config file")
    if not file.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        if file.suffix == ".json":
            values = json.loads(file.read_text())
        else:
            values = tomllib.loads(file.read_text())
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {'JSON' if file.suffix == '.json' else 'TOML'}: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a table of config keys")
    return values
