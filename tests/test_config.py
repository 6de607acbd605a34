import re
from dataclasses import replace

import pytest
import torch

from handvae.errors import ConfigError
from handvae.model.augment import Augment
from handvae.model.drawing import Drawing
from handvae.model.loss import LossWeights
from handvae.model.steps import epoch_order
from handvae.model.vae import VAEConfig
from handvae.train.config import PRESETS, TrainConfig, resolve_config


def test_seed_preset_is_the_notebook_recipe():
    seed = PRESETS["seed"]
    assert (seed.epochs, seed.batch_size, seed.learning_rate) == (10, 64, 1e-3)
    assert seed.loss == LossWeights(cat_weight=0.1, kl_step=0.001) and seed.model == VAEConfig()
    assert seed.drawing == Drawing(sharpness=1.0, class_shift=False)
    assert resolve_config("seed") == seed


def test_the_default_recipe_trains_as_the_seed_and_draws_crisper():
    default = resolve_config()
    assert default == PRESETS["handvae"]
    seed_like = replace(
        default,
        epochs=10,
        batch_size=64,
        lr_schedule="constant",
        model=VAEConfig(),
        loss=LossWeights(),
        drawing=Drawing(),
    )
    assert seed_like == PRESETS["seed"]
    assert default.model == VAEConfig(detail_latent=64)  # the seed's z and decoder, and a detail code beside them
    assert default.loss.kl_weight(15) == 0.01 == PRESETS["seed"].loss.kl_weight(10)  # held at the seed's final weight
    assert default.batch_size * default.num_workers == 64  # images per optimiser step, as in the seed


def test_file_overrides_preset_and_flags_override_file(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text("epochs = 4\nbatch_size = 128\n[model]\nnum_latent = 16\n[loss]\nkl_step = 0.01\n")
    config = resolve_config("seed", str(path), {"epochs": 7, "seed": None})
    assert config.epochs == 7 and config.batch_size == 128 and config.seed == 0
    assert config.model == VAEConfig(num_latent=16) and config.loss == LossWeights(cat_weight=0.1, kl_step=0.01)
    (tmp_path / "recipe.json").write_text('{"batch_size": 32}')
    assert resolve_config(config_file=str(tmp_path / "recipe.json")).batch_size == 32


def test_round_trip_through_a_dict():
    config = TrainConfig(epochs=3, model=VAEConfig(num_filters=8), augment=Augment(max_shift=2.0), class_balance=0.5)
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_cosine_schedule_is_a_function_of_the_epoch():
    assert TrainConfig(learning_rate=0.002).learning_rate_at(7) == 0.002
    cosine = TrainConfig(learning_rate=0.002, epochs=4, lr_schedule="cosine")
    assert [cosine.learning_rate_at(e) for e in (1, 2, 3, 4)] == pytest.approx(
        [0.002, 0.001 + 0.001 * 2**-0.5, 0.001, 0.001 - 0.001 * 2**-0.5]
    )


def test_class_balance_evens_out_what_an_epoch_draws():
    labels = torch.tensor([0] * 900 + [1] * 100)
    natural = epoch_order(labels, TrainConfig(), epoch=1)
    assert sorted(natural.tolist()) == list(range(1000))  # a permutation: every image once
    balanced = epoch_order(labels, TrainConfig(class_balance=1.0), epoch=1)
    assert len(balanced) == 1000 and 400 < int((labels[balanced] == 1).sum()) < 600
    half = epoch_order(labels, TrainConfig(class_balance=0.5), epoch=1)
    assert 180 < int((labels[half] == 1).sum()) < 320  # weights 1/30 vs 1/10: a quarter are class 1
    assert torch.equal(balanced, epoch_order(labels, TrainConfig(class_balance=1.0), epoch=1))  # same on every rank
    assert not torch.equal(balanced, epoch_order(labels, TrainConfig(class_balance=1.0), epoch=2))


@pytest.mark.parametrize(
    "values,message",
    [
        ({"epochs": 0}, "epochs must be an integer in \\[1, 1,000,000,000\\]"),
        ({"batch_size": 2.5}, "batch_size must be an integer in \\[1, 1,000,000,000\\]"),
        ({"learning_rate": 0}, "learning_rate must be a number in"),
        ({"bf16": True}, "bf16 autocast needs use_gpu"),
        ({"use_gpu": "yes"}, "use_gpu must be true or false"),
        ({"epochz": 3}, "unknown config keys \\['epochz'\\]"),
        # Faults are the tests' (HANDVAE_FAULT_INJECTION), not a recipe's.
        ({"fail_once_at_epoch": 3}, "unknown config keys \\['fail_once_at_epoch'\\]"),
        ({"model": {"num_filters": 0}}, "VAEConfig.num_filters must be an integer in \\[1, 4096\\]"),
        ({"model": {"filters": 8}}, "unknown model keys \\['filters'\\]"),
        ({"loss": {"kl_step": -1}}, "LossWeights.kl_step must be a finite number >= 0"),
        ({"loss": {"kl_max": "big"}}, "LossWeights.kl_max must be a finite number >= 0"),
        ({"lr_schedule": "linear"}, "lr_schedule must be one of"),
        ({"class_balance": 1.5}, "class_balance must be a number in \\[0, 1\\]"),
        ({"teacher_forcing": -0.1}, "teacher_forcing must be a number in"),
        ({"augment": {"max_rotation": 90}}, "Augment.max_rotation must be a number in"),
    ],
)
def test_bad_values_are_config_errors_that_name_the_field(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(values)


def test_bad_files_and_presets(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve_config("fast")
    with pytest.raises(ConfigError, match="config file not found"):
        resolve_config(config_file=str(tmp_path / "absent.toml"))
    (tmp_path / "bad.toml").write_text("epochs = = 3")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        resolve_config(config_file=str(tmp_path / "bad.toml"))


@pytest.mark.parametrize(
    "values,message",
    [
        ({"pairing": "other"}, "pairing must be one of ('self', 'same-class', 'neighbours')"),
        ({"pairing": "neighbours", "pairing_neighbours": 0}, "pairing_neighbours must be an integer >= 1"),
        (
            {"pairing": "same-class", "data_feed": "stream"},
            "pairing same-class draws partners from the whole training set",
        ),
        ({"pairing": "same-class", "model": {"detail_latent": 0}}, "pairing same-class trains the detail decoder"),
    ],
)
def test_pairing_settings_that_cannot_work_are_refused(values, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainConfig.from_dict(values, base=PRESETS["handvae"])
    assert TrainConfig.from_dict({"pairing": "same-class"}, base=PRESETS["handvae"]).pairing == "same-class"
    assert PRESETS["handvae"].pairing == PRESETS["seed"].pairing == "self"
