"""The evaluation figures against values worked out by hand (no Ray)."""

import math

import pytest
import torch

from handvae.evaluate.metrics import EvaluationMetrics
from handvae.model.steps import predict
from handvae.model.vae import VAE, VAEConfig


def fixed_model() -> VAE:
    """Every weight zero: the class logits are the classifier's last bias (class 3 wins), the
    reconstruction logits are the last deconvolution's bias (+2 everywhere), and z ~ N(0, I)."""
    model = VAE(VAEConfig(num_filters=2, num_latent=2))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.classifier[2].bias[3] = math.log(35.0)  # softmax: 35/70 for class 3, 1/70 for each other
        model.decoder[3].bias.fill_(2.0)
    return model.eval()


def test_predict_on_a_model_with_known_outputs():
    images = torch.zeros(3, 28, 28, dtype=torch.uint8)
    images[0, :7] = 255  # a quarter of image 0 is ink
    labels = torch.tensor([3, 0, 3])
    out = predict(fixed_model(), images, labels, noise=torch.zeros(3, 2))
    assert out.predicted.tolist() == [3, 3, 3]
    assert out.recon_hits.shape == (3, 28, 28)
    assert out.recon_hits.sum(dim=(1, 2)).tolist() == [7 * 28, 0, 0]  # logit +2 says ink everywhere
    assert out.terms.cat.tolist() == pytest.approx([-math.log(0.5), -math.log(1 / 70), -math.log(0.5)], rel=1e-5)
    bce_ink, bce_paper = math.log1p(math.exp(-2.0)), 2.0 + math.log1p(math.exp(-2.0))
    assert out.terms.recon.tolist() == pytest.approx([(bce_ink + 3 * bce_paper) / 4, bce_paper, bce_paper], rel=1e-5)
    assert out.terms.kl.tolist() == [0.0, 0.0, 0.0]


def test_figures_by_hand():
    metrics = EvaluationMetrics(image_side=2)
    # Two batches, as from two workers: 5 images of classes 0, 1 and 2.
    metrics.update(
        torch.tensor([0, 0, 1]),
        torch.tensor([0, 1, 1]),
        torch.tensor([[[1, 1], [1, 1]], [[1, 0], [0, 0]], [[1, 1], [0, 0]]], dtype=torch.bool),
        torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]),
        ["a.csv", "a.csv", "b"],
    )
    metrics.update(
        torch.tensor([2, 2]),
        torch.tensor([2, 0]),
        torch.tensor([[[1, 1], [1, 0]], [[0, 0], [0, 0]]], dtype=torch.bool),
        torch.tensor([[6.0, 2.0, 8.0], [6.0, 2.0, 8.0]]),
        ["b", "b"],
    )
    figures = metrics.compute()
    assert figures["images"] == 5
    assert figures["accuracy"] == pytest.approx(3 / 5)
    assert figures["per_class_accuracy"] == pytest.approx({"0": 1 / 2, "1": 1.0, "2": 1 / 2})  # absent classes left out
    assert figures["per_class_images"] == {"0": 2, "1": 1, "2": 2}
    assert figures["mean_per_class_accuracy"] == pytest.approx(2 / 3)
    assert figures["per_pixel_recon_accuracy"][0] == pytest.approx([4 / 5, 3 / 5])
    assert figures["per_pixel_recon_accuracy"][1] == pytest.approx([2 / 5, 1 / 5])
    assert figures["recon_accuracy"] == pytest.approx(10 / 20)
    assert figures["loss"] == pytest.approx({"cat": 15 / 5, "recon": 2.0, "kl": 25 / 5})
    assert figures["by_source"]["a.csv"] == {"images": 2, "accuracy": 0.5}
    assert figures["by_source"]["b"] == {"images": 3, "accuracy": pytest.approx(2 / 3)}
    confusion = figures["confusion_matrix"]
    assert len(confusion) == 36 and confusion[0][:3] == [1, 1, 0] and confusion[2][:3] == [1, 0, 1]


def test_nothing_evaluated_is_an_error():
    with pytest.raises(ValueError, match="no images"):
        EvaluationMetrics().compute()
