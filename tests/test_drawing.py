"""Drawing characters in styles (no Ray): which decoder draws what, and from which noise."""

import torch

from handvae.model.drawing import Drawing, class_probabilities, draw_blends, draw_in_styles
from handvae.model.vae import VAE, VAEConfig, model_inputs, one_hot_logits
from handvae.rng import seeded_normal


def test_own_class_draws_take_the_detail_code_and_other_characters_z_alone():
    torch.manual_seed(0)
    model = VAE(VAEConfig(num_filters=4, num_latent=3, detail_latent=2)).eval()
    images = torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8)
    keys, label = [(7, 1), (7, 2)], torch.tensor([4])
    z_mean, log_z_var, _, detail_mean, detail_log_var = model.encode_with_detail(model_inputs(images, label)[0])
    z = VAE.sample(z_mean, log_z_var, seeded_normal(keys, 3))
    d = VAE.sample(detail_mean, detail_log_var, seeded_normal([(7, 1, 1), (7, 2, 1)], 2))
    as_image = lambda logits, sharpness: logits.mul(sharpness).sigmoid().mul(255).round().to(torch.uint8)[:, 0]  # noqa: E731
    with torch.no_grad():
        own = as_image(model.decode_detail(z, d, one_hot_logits(label.repeat(2), 36)), 2.0)
        styled = as_image(model.decode(z, one_hot_logits(label.repeat(2), 36)), 5.0)
    drawing = Drawing(sharpness=5.0, detail_sharpness=2.0)  # each decoder at its own sharpness
    assert torch.equal(draw_in_styles(model, images, keys, label, drawing, own_class=True)[:, 0, 0], own)
    assert torch.equal(draw_in_styles(model, images, keys, label, drawing)[:, 0, 0], styled)
    assert not torch.equal(own, styled)


def test_a_model_without_a_detail_code_draws_its_own_class_from_z():
    torch.manual_seed(0)
    model = VAE(VAEConfig(num_filters=4, num_latent=3)).eval()
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    keys, labels, drawing = [(0, 1), (0, 2), (0, 3)], torch.tensor([1, 5]), Drawing(sharpness=5.0, class_shift=True)
    own = draw_in_styles(model, images, keys, labels, drawing, samples_per_style=2, own_class=True)
    assert own.shape == (3, 2, 2, 28, 28) and torch.equal(
        own, draw_in_styles(model, images, keys, labels, drawing, samples_per_style=2)
    )


def test_blends_decode_the_codes_between_two_samples_and_keep_the_surer_candidate():
    torch.manual_seed(0)
    model = VAE(VAEConfig(num_filters=4, num_latent=3, detail_latent=2)).eval()
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    partners = torch.randint(0, 256, (3, 2, 28, 28), dtype=torch.uint8)
    labels = torch.tensor([4, 11, 30])
    drawing = Drawing(sharpness=5.0)

    def decoded(x: torch.Tensor) -> torch.Tensor:  # the detail decoder at the posterior means, at sharpness 5
        z, _, _, d, _ = model.encode_with_detail(model_inputs(x, labels)[0])
        logits = model.decode_detail(z, d, one_hot_logits(labels, 36))
        return logits.mul(5.0).sigmoid().mul(255).round().to(torch.uint8)[:, 0]

    with torch.no_grad():
        own, second = decoded(images), decoded(partners[:, 1])
    same = torch.zeros(3, 2)  # share 0: each candidate is the sample's own codes
    assert torch.equal(draw_blends(model, images, partners, labels, same, drawing)[0], own)
    # Candidate 0 the sample itself, candidate 1 all the way to the second partner: the classifier picks.
    shares = torch.tensor([[0.0, 1.0]] * 3)
    with torch.no_grad():
        sure = torch.stack(
            [model.encode(model_inputs(x, labels)[0])[2].softmax(1)[torch.arange(3), labels] for x in (own, second)], 1
        )
    expected = torch.where((sure[:, 1] > sure[:, 0])[:, None, None], second, own)
    drawn, probs = draw_blends(model, images, partners, labels, shares, drawing)
    assert torch.equal(drawn, expected)
    torch.testing.assert_close(probs, class_probabilities(model, expected))  # the chosen ones' probabilities
    half, _ = draw_blends(model, images, partners[:, :1], labels, torch.full((3, 1), 0.5), drawing)
    assert not torch.equal(half, own) and not torch.equal(half, decoded(partners[:, 0]))  # between the two
