import math

import pytest
import torch

from handvae.model.loss import LossTerms, LossWeights, kl_divergence, loss_terms, total_loss
from handvae.model.vae import ModelOutput


def test_kl_by_hand():
    # Per element: -0.5 * (1 + lv - m^2 - e^lv), summed over latents, one value per image.
    mean = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    log_var = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    by_hand = [-0.5 * ((1 + 0 - 1 - 1) + (1 + math.log(2.0) - 0 - 2)), -0.5 * ((1 + 0 - 0 - 1) + (1 + 0 - 4 - 1))]
    assert kl_divergence(mean, log_var).tolist() == pytest.approx(by_hand)
    assert kl_divergence(torch.zeros(4, 3), torch.zeros(4, 3)).tolist() == [0.0] * 4
    batch = loss_terms(
        torch.zeros(2, 1, 1, 1),
        torch.tensor([0, 1]),
        ModelOutput(torch.zeros(2, 1, 1, 1), mean, log_var, torch.zeros(2, 2)),
    )
    assert batch.kl.item() == pytest.approx(sum(by_hand) / 2)  # the seed's: sum over the batch / batch size


def test_terms_by_hand():
    x = torch.tensor([[[[1.0, 0.0]]]])  # one 1x2 "image"
    recon_logits = torch.tensor([[[[0.0, math.log(3.0)]]]])
    y = torch.tensor([1])
    y_logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax = [1/4, 3/4]
    terms = loss_terms(x, y, ModelOutput(recon_logits, torch.zeros(1, 2), torch.zeros(1, 2), y_logits))
    assert terms.cat.item() == pytest.approx(-math.log(0.75))
    # Pixel 1: target 1, p = 0.5 -> log 2; pixel 2: target 0, p = 0.75 -> -log 0.25; mean over pixels.
    assert terms.recon.item() == pytest.approx((math.log(2.0) - math.log(0.25)) / 2)
    assert terms.kl.item() == 0.0
    assert terms.detail_recon.item() == terms.detail_kl.item() == 0.0  # no detail code
    # The detail decoder's terms are the same sums over its own reconstruction and posterior.
    detail = loss_terms(
        x,
        y,
        ModelOutput(
            recon_logits,
            torch.zeros(1, 2),
            torch.zeros(1, 2),
            y_logits,
            recon_logits * 0,
            torch.ones(1, 3),
            torch.zeros(1, 3),
        ),
    )
    assert detail.detail_recon.item() == pytest.approx(math.log(2.0))
    assert detail.detail_kl.item() == pytest.approx(1.5)


def test_per_image_terms_average_to_the_batch_terms():
    torch.manual_seed(0)
    x, recon = torch.rand(5, 1, 4, 4), torch.randn(5, 1, 4, 4)
    y, y_logits, mean, log_var = torch.randint(0, 3, (5,)), torch.randn(5, 3), torch.randn(5, 2), torch.randn(5, 2)
    out = ModelOutput(recon, mean, log_var, y_logits, recon.flip(0), mean.flip(0), log_var.flip(0))
    batch = loss_terms(x, y, out)
    each = loss_terms(x, y, out, per_image=True)
    for name in ("cat", "recon", "kl", "detail_recon", "detail_kl"):
        assert getattr(each, name).shape == (5,)
        assert getattr(each, name).mean().item() == pytest.approx(getattr(batch, name).item(), rel=1e-6)
    # Image 2 alone gives its own per-image terms.
    alone = loss_terms(x[2:3], y[2:3], ModelOutput(*(part[2:3] for part in out)))
    assert each.recon[2].item() == pytest.approx(alone.recon.item(), rel=1e-6)


def test_total_uses_the_seed_schedule():
    terms = LossTerms(
        cat=torch.tensor(2.0),
        recon=torch.tensor(0.5),
        kl=torch.tensor(100.0),
        detail_recon=torch.tensor(0.0),
        detail_kl=torch.tensor(0.0),
    )
    assert total_loss(terms, LossWeights(), epoch=1).item() == pytest.approx(0.1 * 2 + 0.5 + 1 * 0.001 * 100)
    assert total_loss(terms, LossWeights(), epoch=10).item() == pytest.approx(0.2 + 0.5 + 10 * 0.001 * 100)
    assert total_loss(terms, LossWeights(cat_weight=1.0, kl_step=0.0), epoch=3).item() == pytest.approx(2.5)
    capped = LossWeights(kl_step=0.002, kl_max=0.005)
    assert [capped.kl_weight(e) for e in (1, 2, 3, 10)] == pytest.approx([0.002, 0.004, 0.005, 0.005])
    assert total_loss(terms, capped, epoch=10).item() == pytest.approx(0.2 + 0.5 + 0.005 * 100)
    # A detail code adds its reconstruction and its KL at a constant weight, whatever the epoch.
    detailed = LossTerms(**{**vars(terms), "detail_recon": torch.tensor(0.25), "detail_kl": torch.tensor(50.0)})
    assert total_loss(detailed, capped, epoch=10).item() == pytest.approx(0.2 + 0.5 + 0.005 * 100 + 0.25 + 0.0003 * 50)


def test_bad_weights_and_epoch_are_rejected():
    with pytest.raises(ValueError, match="cat_weight"):
        LossWeights(cat_weight=-1)
    with pytest.raises(ValueError, match="kl_step"):
        LossWeights(kl_step=float("nan"))
    with pytest.raises(ValueError, match="epoch"):
        total_loss(LossTerms(*[torch.tensor(0.0)] * 5), LossWeights(), epoch=0)
