import pytest
import torch

from handvae.errors import ModelFileError
from handvae.formats.model_file import load_model, load_model_and_metadata, save_model
from handvae.model.vae import VAE, VAEConfig


def test_round_trip_rebuilds_from_the_file_alone(tmp_path):
    config = VAEConfig(num_filters=8, num_latent=5)
    model = VAE(config)
    save_model(tmp_path / "m.pt", model, metadata={"epoch": 3})
    loaded, metadata = load_model_and_metadata(tmp_path / "m.pt")
    assert loaded.config == config and metadata == {"epoch": 3} and not loaded.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"], "no temporary file is left behind"


def test_saves_the_module_inside_a_wrapper(tmp_path):
    wrapper = torch.nn.Module()
    wrapper.module = VAE(VAEConfig(num_filters=4))
    save_model(tmp_path / "m.pt", wrapper)
    assert load_model(tmp_path / "m.pt").config.num_filters == 4


def test_round_trip_through_a_uri(tmp_path):
    """A cluster's training run writes model.pt to its storage URI (s3://...); jobs load it from there."""
    uri = f"file://{tmp_path}/run/model.pt"  # the same pyarrow filesystem code path as s3://
    save_model(uri, VAE(VAEConfig(num_filters=4)), metadata={"epoch": 2})
    model, metadata = load_model_and_metadata(uri)
    assert model.config.num_filters == 4 and metadata == {"epoch": 2}
    with pytest.raises(ModelFileError, match="not found"):
        load_model(f"file://{tmp_path}/run/absent.pt")
    with pytest.raises(ModelFileError, match="nope://bucket/model.pt: cannot read the model file"):
        load_model("nope://bucket/model.pt")


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "absent.pt")


def test_corrupt_file(tmp_path):
    path = tmp_path / "m.pt"
    save_model(path, VAE(VAEConfig(num_filters=4)))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="not a readable"):
        load_model(path)


def test_arbitrary_pickles_are_not_executed(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pwned')",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ModelFileError):
        load_model(path)


def test_foreign_dict_and_wrong_shapes(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(ModelFileError, match="not a handvae model"):
        load_model(tmp_path / "foreign.pt")
    save_model(tmp_path / "m.pt", VAE(VAEConfig(num_filters=4)))
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["model_config"]["num_filters"] = 8
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(ModelFileError, match="shape"):
        load_model(tmp_path / "m.pt")
    payload["model_config"]["num_filters"] = -1
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(ModelFileError, match="invalid model_config"):
        load_model(tmp_path / "m.pt")


def test_a_file_without_class_latent_means_loads_with_zeros(tmp_path):
    torch.manual_seed(0)
    model = VAE(VAEConfig(num_filters=2, num_latent=2))
    save_model(tmp_path / "m.pt", model)
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    del payload["model_state"]["class_latent_means"]  # as files written before the buffer existed
    torch.save(payload, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt")
    assert loaded.class_latent_means.abs().sum() == 0
    assert torch.equal(loaded.z_mean.weight, model.z_mean.weight)
    payload["model_state"]["class_latent_means"] = torch.zeros(3, 3)
    torch.save(payload, tmp_path / "wrong.pt")
    with pytest.raises(ModelFileError, match=r"class_latent_means has shape \(3, 3\)"):
        load_model(tmp_path / "wrong.pt")


def test_a_training_state_saved_with_the_retired_fault_drill_field_still_resumes(tmp_path):
    """Checkpoints from before faults moved out of the recipe carry `fail_once_at_epoch: null`."""
    from handvae.formats.checkpoints import TrainingState, load_training_state
    from handvae.train.config import TrainConfig

    config = TrainConfig(model=VAEConfig(num_filters=4, num_latent=3))
    model = VAE(config.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    saved = {**config.to_dict(), "fail_once_at_epoch": None}
    TrainingState(model.state_dict(), optimizer.state_dict(), 1, [{"epoch": 1}], saved, 0).save(str(tmp_path))
    state = load_training_state(str(tmp_path))
    assert TrainConfig.from_dict(state.config) == config and "fail_once_at_epoch" not in state.config
