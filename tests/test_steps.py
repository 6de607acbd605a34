"""Training and evaluation steps over in-memory tensors (no Ray)."""

from dataclasses import replace

import pytest
import torch

from handvae.model.steps import (
    EVAL_SUMS,
    TRAIN_SUMS,
    epoch_figures,
    epoch_partners,
    evaluate,
    nearest_in_class,
    train_epoch,
    train_steps,
)
from handvae.model.vae import VAE, ModelOutput, VAEConfig
from handvae.train.config import TrainConfig


def toy_data(n=96, seed=0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=gen)
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    for c in range(4):  # each class lights up its own band of rows
        images[labels == c, 7 * c : 7 * c + 7, :] = 255
    return images, labels


def test_loss_falls_and_sums_count_every_image():
    torch.manual_seed(0)
    images, labels = toy_data()
    model = VAE(VAEConfig(num_classes=4, num_filters=4, num_latent=2))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    order = torch.arange(len(labels))
    config = TrainConfig(batch_size=32)
    first = train_epoch(model, optimizer, images, labels, order, 1, config)
    for epoch in range(2, 8):
        last = train_epoch(model, optimizer, images, labels, order, epoch, config)
    assert first[0] == last[0] == 96
    figures_first = epoch_figures(first, evaluate(model, images, labels))
    assert last[TRAIN_SUMS.index("recon_loss")] < first[TRAIN_SUMS.index("recon_loss")]
    assert last[TRAIN_SUMS.index("cat_loss")] < first[TRAIN_SUMS.index("cat_loss")]
    assert figures_first["test_accuracy"] > 0.9


def test_evaluate_counts_by_hand():
    """A model whose outputs are fixed: class 1 always, and a reconstruction of all-positive logits."""

    class Fixed(torch.nn.Module):
        def forward(self, x, noise=None, detail=True):
            n = len(x)
            return ModelOutput(
                torch.ones_like(x), torch.zeros(n, 2), torch.zeros(n, 2), torch.tensor([[0.0, 5.0]]).repeat(n, 1)
            )

    images = torch.zeros(3, 28, 28, dtype=torch.uint8)
    images[0, :14] = 255  # half of image 0 is ink
    labels = torch.tensor([1, 0, 1])
    sums = dict(zip(EVAL_SUMS, evaluate(Fixed(), images, labels, batch_size=2).tolist()))
    assert sums["images"] == 3 and sums["correct"] == 2
    assert sums["pixels"] == 3 * 784 and sums["recon_correct_pixels"] == 14 * 28  # only the ink pixels match
    figures = epoch_figures(
        torch.tensor([3.0, 3.0, 3.0, 3.0, 0.0, 0.0], dtype=torch.float64),
        torch.tensor(list(sums.values()), dtype=torch.float64),
    )
    assert figures["test_accuracy"] == pytest.approx(2 / 3)
    assert figures["recon_accuracy"] == pytest.approx(14 * 28 / (3 * 784))
    assert figures["cat_loss"] == 1.0


def test_epoch_partners_are_other_images_of_the_same_class_and_depend_on_seed_and_epoch_alone():
    labels = torch.tensor([3, 0, 3, 1, 0, 3, 2, 0, 3, 1])  # class 2 has one image
    partners = epoch_partners(labels, seed=0, epoch=1)
    assert torch.equal(labels[partners], labels)
    alone = labels == 2
    assert torch.equal(partners[alone], torch.nonzero(alone).flatten())
    assert not (partners[~alone] == torch.arange(len(labels))[~alone]).any()
    assert torch.equal(partners, epoch_partners(labels, seed=0, epoch=1))  # every rank, every resume
    draws = torch.stack([epoch_partners(labels, seed=0, epoch=e) for e in range(1, 41)])
    assert not torch.equal(draws[0], draws[1])
    # Uniform over the other images of the class: image 0 (class 3) meets 2, 5 and 8, each about a third of the time.
    assert sorted(draws[:, 0].unique().tolist()) == [2, 5, 8]
    assert not torch.equal(
        epoch_partners(labels, seed=1, epoch=1), epoch_partners(labels, seed=0, epoch=1)
    ) or not torch.equal(epoch_partners(labels, seed=1, epoch=2), epoch_partners(labels, seed=0, epoch=2))


def test_pair_training_draws_the_partner_with_the_detail_decoder_and_the_image_itself_with_the_style_decoder():
    """Two classes, each with two kinds of image (a band on the left or on the right half): paired,
    the detail decoder cannot tell from an image which of its class's images it is to draw, and
    learns their mean; the style decoder still redraws the image itself."""
    torch.manual_seed(0)
    n = 64
    labels = torch.arange(n) % 2
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    for i in range(n):
        half = (i // 2) % 2  # left or right
        images[i, 14 * labels[i] : 14 * labels[i] + 14, 14 * half : 14 * half + 14] = 255
    config = TrainConfig(
        batch_size=32,
        pairing="same-class",
        model=VAEConfig(num_classes=2, num_filters=4, num_latent=2, detail_latent=2),
    )
    model = VAE(config.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for epoch in range(1, 26):
        partners = epoch_partners(labels, config.seed, epoch)
        order = torch.randperm(n)
        batches = ((images[i], labels[i], images[partners[i]]) for i in order.split(config.batch_size))
        train_steps(model, optimizer, batches, epoch, replace(config, epochs=25))
    model.eval()
    with torch.no_grad():
        x = images[:4].unsqueeze(1).float() / 255
        out = model(x, noise=torch.zeros(4, 4))
    own_band = x > 0.5
    style, detail = out.x_recon.sigmoid(), out.detail_recon.sigmoid()
    assert style[own_band].mean() > 0.8 and style[~own_band].mean() < 0.2
    # The detail decoder: the class's band, both halves about half inked (the mean of the partners), never the image's own half alone.
    for i in range(4):
        c = labels[i]
        band = detail[i, 0, 14 * c : 14 * c + 14]
        assert 0.25 < band[:, :14].mean() < 0.75 and 0.25 < band[:, 14:].mean() < 0.75


def test_neighbour_partners_are_among_the_nearest_other_images_of_the_class():
    # Class 0: images with 1, 2, 4 and 8 inked rows (each one's nearest by pixel distance: the next count); class 1 alone.
    images = torch.zeros(5, 28, 28, dtype=torch.uint8)
    for i, rows in enumerate([1, 2, 4, 8]):
        images[i, :rows] = 255
    labels = torch.tensor([0, 0, 0, 0, 1])
    candidates = nearest_in_class(images, labels, k=2, chunk=3)
    assert candidates.tolist() == [[1, 2], [0, 2], [1, 0], [2, 1], [4, 4]]
    assert nearest_in_class(images, labels, k=4)[0].tolist() == [1, 2, 3, 1]  # 3 others, repeated in turn
    draws = torch.stack([epoch_partners(labels, 0, epoch, candidates) for epoch in range(1, 30)])
    for i in range(5):
        assert set(draws[:, i].tolist()) == set(candidates[i].tolist())  # uniformly among the k
    assert torch.equal(draws[0], epoch_partners(labels, 0, 1, candidates))
