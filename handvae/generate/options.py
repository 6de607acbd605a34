"""What `handvae generate` draws: its options, validated before anything starts. Shared by the
driver and the model actors (`handvae.generate.worker`)."""

from dataclasses import dataclass, field

from handvae.errors import COUNT_MAX, SEED_MAX, ConfigError, check_int
from handvae.labels import CHARSET

PAIRINGS = ("own-class", "blend", "every-style")


@dataclass(frozen=True)
class GenerateOptions:
    chars: str = CHARSET
    """Characters to draw in every style, each of 0-9 and A-Z."""
    text: str | None = None
    """Instead of characters, this line of text (0-9, A-Z and spaces), one image per style and sample."""
    split: str = "test"
    """Which split of the data sources gives the styles."""
    pairing: str | None = None
    """Which characters each style sample is drawn as. "own-class": its own character only, the
    styles taken per character (num_styles of them for each character of `chars`): a data set
    whose characters look like the real ones of their class, what trains classifiers
    (docs/generation.md). "blend": as own-class, each character drawn from the codes of two real
    samples of it blended (`handvae.model.drawing.draw_blends`): a writer who is neither, as new as
    another writer's characters, for a data set that does not copy its records. "every-style": every
    character of `chars` in every style, alphabets in one hand. None: own-class for styles from a
    data split, every-style for style images and text (their samples have no class)."""
    style_images: tuple[str, ...] = ()
    """Image files of a person's handwriting, one character each; used instead of the data sources."""
    num_styles: int | None = None
    """Styles to use, drawn at random (by the seed) from the style samples; all of them by default.
    Own-class: per character; a character with fewer samples in the split has each of them drawn
    more often (further draws from the same style's posterior)."""
    samples_per_style: int = 1
    """Draws from each style's posterior."""
    randomness: float = 1.0
    """Scales the posterior's spread: 0 draws the mean style, 1 the posterior itself."""
    average: int = 1
    """Posterior draws averaged into one style (smoother, less varied)."""
    seed: int = 0
    """Seeds the choice of styles and every draw: the same seed and inputs give identical output."""
    sharpness: float | None = None
    """Factor on the decoder's logits (see `Drawing`); None: as the model's recipe draws."""
    class_shift: bool | None = None
    """Shift styles between classes' mean latents (see `Drawing`); None: as the model's recipe draws."""
    detail_sharpness: float | None = None
    """`sharpness` of the detail decoder's own-class drawings (see `Drawing`); None: as the model's recipe draws."""
    label_probs: bool = True
    """Give each drawn character its `label_probs`, the model's classifier's probabilities of the 36
    classes (teacher soft labels): one more pass of the encoder per character, which every-style
    drawing runs at 0.63x the speed for (docs/results/benchmarks.md); False leaves the column null."""
    num_workers: int | None = None
    """Model actors; by default one per CPU but one (one per GPU with use_gpu)."""
    use_gpu: bool = False
    """One GPU per model actor."""
    styles_per_batch: int = 64
    """Style samples per model call."""
    rows_per_file: int = 100_000
    """Rows per parquet file (rounded down to whole model calls, at least one): each is one write task's share."""
    labels: tuple[int, ...] = field(init=False)

    def __post_init__(self):
        symbols = self.text if self.text is not None else self.chars
        what = "--text" if self.text is not None else "--chars"
        if not symbols:
            raise ConfigError(f"{what} is empty")
        allowed = CHARSET + (" " if self.text is not None else "")
        for position, char in enumerate(symbols):
            if char not in allowed:
                hint = " (the model draws upper-case letters)" if char.upper() in CHARSET else ""
                raise ConfigError(
                    f"{what}: {char!r} at position {position + 1} is not supported; the model draws 0-9 and A-Z{hint}"
                )
        if self.text is not None and not self.text.strip():
            raise ConfigError("--text holds only spaces")
        if self.text is None and len(set(self.chars)) < len(self.chars):
            twice = next(c for c in self.chars if self.chars.count(c) > 1)
            raise ConfigError(
                f"--chars: {twice!r} is given {self.chars.count(twice)} times; give each character once "
                "(to draw more of one, use --samples-per-style)"
            )
        # The sample index is stored as int16; the other counts only need to stay where numpy's and
        # torch's integers do not overflow.
        for flag, value, low, high in (
            ("--samples-per-style", self.samples_per_style, 1, 2**15 - 1),
            ("--average", self.average, 1, 10_000),
            ("styles_per_batch", self.styles_per_batch, 1, 1 << 16),
            ("--rows-per-file", self.rows_per_file, 1, COUNT_MAX),
            ("--seed", self.seed, 0, SEED_MAX),
        ):
            check_int(flag, value, low, high)
        if self.num_styles is not None:
            check_int("--num-styles", self.num_styles, 1, COUNT_MAX)
        if self.num_workers is not None:
            check_int("--num-workers", self.num_workers, 1, COUNT_MAX)
        if not 0.0 <= self.randomness <= 10.0:
            raise ConfigError(f"randomness must be between 0 and 10, got {self.randomness}")
        object.__setattr__(self, "labels", tuple(CHARSET.index(c) for c in symbols if c != " "))
        unlabelled = "--text" if self.text is not None else "--style-images" if self.style_images else None
        if self.pairing is None:
            object.__setattr__(self, "pairing", "every-style" if unlabelled else "own-class")
        elif self.pairing not in PAIRINGS:
            raise ConfigError(f"pairing must be one of {', '.join(PAIRINGS)}, got {self.pairing!r}")
        elif self.blend and (self.randomness != 1.0 or self.average != 1):
            raise ConfigError(
                "--randomness and --average shape draws from a style's posterior; blends are drawn from the posterior means of two samples: leave them out with --pairing blend"
            )
        elif self.pairing != "every-style" and unlabelled:
            raise ConfigError(
                f"pairing {self.pairing} draws each style sample as its own class; the samples of {unlabelled} have none (use every-style)"
            )

    @property
    def own_class(self) -> bool:
        """Each style sample drawn as its own class (own-class, and its blends)."""
        return self.pairing in ("own-class", "blend")

    @property
    def blend(self) -> bool:
        return self.pairing == "blend"

    @property
    def images_per_draw(self) -> int:
        """Images drawn from one posterior draw: each character, the style's own, or the text's one line image."""
        return 1 if self.text is not None or self.own_class else len(self.chars)

    @property
    def per_style(self) -> int:
        """Output rows per style sample."""
        return self.samples_per_style * self.images_per_draw
