"""Training and evaluation steps over in-memory tensors (no Ray)."""

import pytest
import torch

from handvae.model.steps import EVAL_SUMS, TRAIN_SUMS, epoch_figures, evaluate, train_epoch
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
