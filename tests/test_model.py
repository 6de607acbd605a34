import pytest
import torch

from handvae.model.vae import VAE, VAEConfig, one_hot_logits


def test_shapes_follow_the_seed_architecture():
    model = VAE(VAEConfig())
    x = torch.rand(5, 1, 28, 28)
    x_recon, z_mean, log_z_var, y_logits, *detail = model(x)
    assert detail == [None, None, None]
    assert x_recon.shape == (5, 1, 28, 28)
    assert z_mean.shape == log_z_var.shape == (5, 64)
    assert y_logits.shape == (5, 36)
    features = 32 * 7 * 7
    assert model.classifier[0].in_features == features and model.classifier[2].out_features == 36
    # The label branch takes the class count (the seed's text says num_latent_var: a typo).
    assert model.label_to_features[0].in_features == 36
    assert model.z_to_features.in_features == 64 and model.z_to_features.out_features == features


def test_decode_applies_softmax_to_the_class_input():
    torch.manual_seed(0)
    model = VAE(VAEConfig(num_filters=4, num_latent=3)).eval()
    z = torch.randn(2, 3)
    logits = torch.randn(2, 36)
    # Softmax is shift-invariant: adding a constant to the logits must not change the image.
    assert torch.allclose(model.decode(z, logits), model.decode(z, logits + 7.0), atol=1e-5)


def test_sample_is_the_reparameterisation():
    mean, log_var = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.0, 2.0 * torch.log(torch.tensor(3.0))]])
    eps = torch.tensor([[0.5, -1.0]])
    assert torch.allclose(VAE.sample(mean, log_var, eps), torch.tensor([[1.0 + 0.5, -2.0 - 3.0]]))
    torch.manual_seed(3)
    fresh = VAE.sample(mean, log_var)
    torch.manual_seed(3)
    assert torch.allclose(fresh, mean + torch.tensor([[1.0, 3.0]]) * torch.randn(1, 2))


def test_gradients_reach_every_parameter():
    model = VAE(VAEConfig(num_filters=4, num_latent=3, detail_latent=2))
    out = model(torch.rand(3, 1, 28, 28))
    sum(part.sum() for part in out).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_the_detail_decoder_reads_z_and_d_but_does_not_train_z():
    torch.manual_seed(0)
    model = VAE(VAEConfig(num_filters=4, num_latent=3, detail_latent=2))
    x, noise = torch.rand(2, 1, 28, 28), torch.randn(2, 5)
    out = model(x, noise)
    assert out.detail_recon.shape == out.x_recon.shape and out.detail_mean.shape == out.detail_log_var.shape == (2, 2)
    z = VAE.sample(out.z_mean, out.log_z_var, noise[:, :3])
    d = VAE.sample(out.detail_mean, out.detail_log_var, noise[:, 3:])
    assert torch.allclose(out.detail_recon, model.decode_detail(z, d, out.y_logits), atol=1e-6)
    assert torch.allclose(out.x_recon, model.decode(z, out.y_logits), atol=1e-6)
    z_only = model(x, noise[:, :3], detail=False)  # what evaluation asks for
    assert torch.allclose(z_only.x_recon, out.x_recon, atol=1e-6) and z_only.detail_recon is None
    # The detail decoder's loss reaches d and its own layers, never z's: z stays the style decoder's.
    out.detail_recon.sum().backward()
    assert model.z_mean.weight.grad is None and model.z_to_features.weight.grad is None
    assert model.detail_mean.weight.grad.abs().sum() > 0 and model.detail_decoder[1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "field,value",
    [
        ("input_size", 30),
        ("num_filters", 0),
        ("num_latent", -1),
        ("num_classes", 2.5),
        ("input_size", True),
        ("detail_latent", -1),
    ],
)
def test_config_rejects_bad_sizes(field, value):
    with pytest.raises(ValueError, match=field):
        VAEConfig(**{field: value})


def test_other_input_sizes_work():
    model = VAE(VAEConfig(input_size=32, num_filters=4))
    assert model(torch.rand(2, 1, 32, 32))[0].shape == (2, 1, 32, 32)


def test_decoder_labels_replace_the_prediction_image_by_image():
    torch.manual_seed(0)
    model = VAE(VAEConfig(num_filters=4, num_latent=3)).eval()
    x, noise = torch.rand(3, 1, 28, 28), torch.zeros(3, 3)
    free, z_mean, _, y_logits = model(x, noise)[:4]
    forced = model(x, noise, decoder_labels=torch.tensor([5, -1, 20])).x_recon
    assert torch.allclose(forced[1], free[1])  # -1: the encoder's prediction, as in the seed
    for i, label in ((0, 5), (2, 20)):
        assert torch.allclose(forced[i], model.decode(z_mean[i : i + 1], one_hot_logits(torch.tensor([label]), 36))[0])
        assert not torch.allclose(forced[i], free[i])
    assert torch.allclose(
        torch.softmax(one_hot_logits(torch.tensor([2]), 4), dim=1), torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    )
