"""The evaluation job's worker side: the model actor that maps batches of records to per-image results.
Torch, numpy and Ray's actor base only: each actor imports this module, and nothing of the driver's
reporting (torchmetrics, matplotlib) comes with it.
"""

import numpy as np
import torch

from handvae.data.records import order_keys
from handvae.inference import ModelActor
from handvae.model.steps import predict
from handvae.rng import seeded_normal


class Evaluator(ModelActor):
    """Maps batches of records to per-image results."""

    def __init__(self, model_path: str, use_gpu: bool, seed: int):
        super().__init__(model_path, use_gpu)
        self.seed = seed

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keys = order_keys(batch["source"], batch["row"])
        noise = seeded_normal([(self.seed, int(k)) for k in keys], self.model.config.num_latent)
        images = torch.tensor(batch["image"], device=self.device)
        labels = torch.tensor(batch["label"], device=self.device).long()
        out = predict(self.model, images, labels, noise.to(self.device))
        losses = torch.stack([out.terms.cat, out.terms.recon, out.terms.kl], dim=1)
        return {
            "label": batch["label"],
            "predicted": out.predicted.cpu().numpy().astype(np.uint8),
            # 1 bit a pixel on the way back to the driver
            "recon_hits": np.packbits(out.recon_hits.cpu().numpy().reshape(len(keys), -1), axis=1),
            "losses": losses.cpu().numpy(),
            "source": batch["source"],
            "order_key": keys,
            "image": batch["image"],
        }
