import pytest

from handvae.config import PRESETS, ConfigError, TrainConfig, resolve_config
from handvae.loss import LossWeights
from handvae.model import VAEConfig


def test_seed_preset_is_the_notebook_recipe():
    seed = PRESETS["seed"]
    assert (seed.epochs, seed.batch_size, seed.learning_rate) == (10, 64, 1e-3)
    assert seed.loss == LossWeights(cat_weight=0.1, kl_step=0.001) and seed.model == VAEConfig()
    assert resolve_config() == seed


def test_file_overrides_preset_and_flags_override_file(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text("epochs = 4\nbatch_size = 128\n[model]\nnum_latent = 16\n[loss]\nkl_step = 0.01\n")
    config = resolve_config("seed", str(path), {"epochs": 7, "seed": None})
    assert config.epochs == 7 and config.batch_size == 128 and config.seed == 0
    assert config.model == VAEConfig(num_latent=16) and config.loss == LossWeights(cat_weight=0.1, kl_step=0.01)
    (tmp_path / "recipe.json").write_text('{"batch_size": 32}')
    assert resolve_config(config_file=str(tmp_path / "recipe.json")).batch_size == 32


def test_round_trip_through_a_dict():
    config = TrainConfig(epochs=3, model=VAEConfig(num_filters=8))
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "values,message",
    [
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"batch_size": 2.5}, "batch_size must be an integer >= 1"),
        ({"learning_rate": 0}, "learning_rate must be a number in"),
        ({"bf16": True}, "bf16 autocast needs use_gpu"),
        ({"use_gpu": "yes"}, "use_gpu must be true or false"),
        ({"fail_once_at_epoch": 11}, "fail_once_at_epoch must be an epoch 1-10"),
        ({"epochz": 3}, "unknown config keys \\['epochz'\\]"),
        ({"model": {"num_filters": 0}}, "VAEConfig.num_filters must be a positive integer"),
        ({"model": {"filters": 8}}, "unknown model keys \\['filters'\\]"),
        ({"loss": {"kl_step": -1}}, "LossWeights.kl_step must be a number >= 0"),
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
