"""Issue 32's screen of generators: train candidate recipes and draw candidate data sets in one
process on a GPU, and give each the novelty and the usefulness that `handvae score` gives.

Two steps, the first here (it reads the real data with the product's readers, Ray included), the
second wherever torch and a GPU are (no Ray: the model, the drawing, the novelty and the reference
classifier are pure torch):

    python experiments/generator_sweep.py export --mnist-dir ../shared/data/mnist \
        --letters-csv "../shared/data/az_letters/A_Z Handwritten Data.csv" --out sweep/real.npz
    python experiments/generator_sweep.py sweep --arrays sweep/real.npz --out sweep/results.json

A research script, not a benchmark: training is one process at the recipe's global batch (the
2 workers' 2 x 32) rather than DDP, and the reference classifier trains on the GPU, so its figures
are close to `handvae score`'s, not the same; what a candidate earns here is checked with the
README's commands (docs/results/recipes.md). `--quick` runs everything small, to check the script
on a CPU.

Candidate data sets, each 2,000 drawings of every class in styles of real training samples of
that class (what `handvae generate --split train --num-styles 2000` draws):
- redraw: the product's own-class drawing (`draw_in_styles`, own_class=True);
- interp-T[@K]: the codes (z, d) of the style sample A moved a share t ~ U(T) of the way to those
  of B, one of A's K (default 8) nearest samples of its class in code space; decoded by the detail
  decoder (`handvae.model.drawing.draw_blends`, what `handvae generate --pairing blend` draws);
- mix-T: the same with B any sample of A's class (the product's blend, with other random draws);
- delta-L: A's codes plus L x (codes of C - codes of D), C and D two samples of A's class
  (the intra-class differences of Delta-encoder, Schwartz et al. 2018);
- prior: z drawn from N(class mean, I), decoded by the style decoder (a CVAE's sampling);
- gauss-L: codes (z, d) drawn from a Gaussian per class fitted to its samples' codes, its
  covariance shrunk a share L towards the within-class covariance pooled over the 36 classes (the
  digits' 6,000 writers of each teach the letters how writers vary, as DAGAN's shared generator
  does); decoded by the detail decoder (a two-stage VAE's learned prior, Dai & Wipf 2019);
- flow-T: a class-conditional flow-matching model of the codes (an MLP trained on every class's
  codes, class-balanced), its ODE run from noise level T to 0: T=1 samples the learned prior,
  T<1 regenerates the style sample's code noised to T (SDEdit / "real guidance" in code space);
any of them with "+sure": for interp and mix, the surer of two blends by the VAE's own classifier
(the product's rule); for the others, drawn 1.5x over, keeping each class's draws the classifier
gives their class with the highest probability (dropping draws no class claims confidently).
`--drawn DIR` keeps each candidate's drawings whole, for `experiments/augment_share.py`.
"""

import argparse
import functools
import json
import os
import time
from dataclasses import replace

import numpy as np
import torch

from handvae import rng
from handvae.labels import NUM_CLASSES
from handvae.model.drawing import Drawing, draw_blends, draw_in_styles
from handvae.model.steps import (
    epoch_order,
    epoch_partners,
    latent_means,
    nearest_in_class,
    train_epoch,
    train_steps,
)
from handvae.model.vae import VAE, model_inputs, one_hot_logits
from handvae.score.cas import REFERENCE, summarize, train_and_test, training_sets
from handvae.score.novelty import measure_novelty
from handvae.train.config import resolve_config

PER_CLASS = 2000


def export(args) -> None:
    from handvae.data.sources import DataSources, keyed_tensors, read_split
    from handvae.runtime import init_ray

    init_ray()
    real = DataSources(letters_csv=args.letters_csv, mnist_dir=args.mnist_dir)
    train_images, train_labels, train_keys = keyed_tensors(read_split(real, "train"))
    test_images, test_labels, _ = keyed_tensors(read_split(real, "test"))
    np.savez_compressed(
        args.out,
        train_images=train_images.numpy(),
        train_labels=train_labels.numpy().astype(np.int16),
        train_keys=train_keys.numpy(),
        test_images=test_images.numpy(),
        test_labels=test_labels.numpy().astype(np.int16),
    )
    print(f"{args.out}: {len(train_labels)} train, {len(test_labels)} test images")


def train_model(config, images, labels, device, log) -> VAE:
    """The recipe, one process: epochs of `train_epoch` at the 2 workers' global batch, the class
    latent means in the last epoch, pair partners as the Ray worker draws them."""
    config = replace(config, batch_size=config.batch_size * config.num_workers)
    rng.seed_global(config.seed)
    model = VAE(config.model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    candidates = (
        nearest_in_class(images.cpu(), labels.cpu(), config.pairing_neighbours)
        if config.pairing == "neighbours"
        else None
    )
    for epoch in range(1, config.epochs + 1):
        rng.seed_training_step(config.seed, epoch, 0)
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate_at(epoch)
        order = epoch_order(labels.cpu(), config, epoch).to(device)
        last = epoch == config.epochs
        sums = (
            torch.zeros(NUM_CLASSES, config.model.num_latent + 1, dtype=torch.float64, device=device) if last else None
        )
        if config.pairing == "self":
            figures = train_epoch(model, optimizer, images, labels, order, epoch, config, sums)
        else:
            partners = epoch_partners(labels.cpu(), config.seed, epoch, candidates).to(device)
            batches = ((images[i], labels[i], images[partners[i]]) for i in order.split(config.batch_size))
            figures = train_steps(model, optimizer, batches, epoch, config, sums)
        if last:
            model.class_latent_means.copy_(latent_means(sums))
        log(f"  epoch {epoch}: recon {figures[2] / figures[0]:.4f}, detail recon {figures[4] / figures[0]:.4f}")
    return model.eval()


def style_indices(labels: torch.Tensor, seed: int, per_class: int) -> torch.Tensor:
    """For each class, per_class style samples spread as evenly as can be over its samples."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(NUM_CLASSES):
        members = torch.nonzero(labels == c).flatten()
        ranked = members[torch.randperm(len(members), generator=generator)]
        chosen.append(ranked.repeat(-(-per_class // len(members)))[:per_class])
    return torch.cat(chosen)


@torch.no_grad()
def codes(model: VAE, images: torch.Tensor, batch: int = 8192) -> torch.Tensor:
    """(N, latent + detail): posterior means of z and d."""
    out = []
    for s in range(0, len(images), batch):
        x, _ = model_inputs(images[s : s + batch], torch.zeros(1))
        z, _, _, d, _ = model.encode_with_detail(x)
        out.append(torch.cat([z, d], dim=1))
    return torch.cat(out)


@torch.no_grad()
def decode_codes(model: VAE, code: torch.Tensor, labels: torch.Tensor, sharpness: float) -> torch.Tensor:
    latent = model.config.num_latent
    out = []
    for s in range(0, len(code), 8192):
        c, y = code[s : s + 8192], one_hot_logits(labels[s : s + 8192], model.config.num_classes)
        logits = model.decode_detail(c[:, :latent], c[:, latent:], y)
        out.append(logits.mul(sharpness).sigmoid().mul(255).round().to(torch.uint8).squeeze(1))
    return torch.cat(out)


@torch.no_grad()
def draw(
    model: VAE,
    strategy: str,
    sure: bool,
    images,
    labels,
    all_codes,
    neighbours,
    flows,
    styles,
    generator,
    drawing: Drawing,
):
    """uint8 images (len(styles), 28, 28) drawn by `strategy` in the styles of training samples `styles`."""
    device = images.device
    y = labels[styles]
    if strategy == "redraw":
        keys = [(0, int(i), k) for k, i in enumerate(styles.tolist())]  # each draw its own noise
        out = []
        for s in range(0, len(styles), 4096):
            part = styles[s : s + 4096]
            for c in y[s : s + 4096].unique().tolist():
                pick = (y[s : s + 4096] == c).nonzero().flatten()
                drawn = draw_in_styles(
                    model,
                    images[part[pick]],
                    [keys[s + j] for j in pick.tolist()],
                    torch.tensor([c]),
                    drawing,
                    own_class=True,
                )[:, 0, 0]
                out.append((s + pick.cpu(), drawn))
        result = torch.empty(len(styles), 28, 28, dtype=torch.uint8)
        for index, drawn in out:
            result[index] = drawn
        return result.to(device)
    if strategy == "prior":
        z = torch.randn(len(styles), model.config.num_latent, generator=generator).to(device)
        z = z + model.class_latent_means[y]
        logits = model.decode(z, one_hot_logits(y, model.config.num_classes))
        return logits.mul(drawing.sharpness).sigmoid().mul(255).round().to(torch.uint8).squeeze(1)
    kind, value = strategy.split("-")
    if kind in ("interp", "mix"):  # the product's blend (`draw_blends`), with the sweep's partners
        shares, _, near = value.partition("@")
        low, high = (float(v) for v in shares.split(":"))
        count, candidates = len(styles), 2 if sure else 1
        if kind == "interp":
            pool = neighbours(int(near or 8))[styles]
            b = pool.gather(1, torch.randint(pool.shape[1], (count, candidates), generator=generator).to(device))
        else:
            b = random_same_class(labels, y.repeat_interleave(candidates), generator).view(count, candidates)
        t = low + (high - low) * torch.rand(count, candidates, generator=generator)
        step = 4096
        return torch.cat(
            [
                draw_blends(
                    model,
                    images[styles[s : s + step]],
                    images[b[s : s + step]],
                    y[s : s + step],
                    t[s : s + step],
                    drawing,
                )[0]
                for s in range(0, count, step)
            ]
        ).to(device)
    code_a = all_codes[styles]
    if kind == "gauss":
        code = sample_class_gaussians(all_codes, labels, y, float(value), generator)
    elif kind == "flow":
        code = flows().sample(y, float(value), code_a, generator)
    elif kind == "delta":
        scale = float(value)
        c, d = (random_same_class(labels, y, generator) for _ in range(2))
        code = code_a + scale * (all_codes[c] - all_codes[d])
    else:
        raise ValueError(strategy)
    return decode_codes(model, code, y, drawing.detail_sharpness)


def sample_class_gaussians(all_codes, labels, wanted, shrink: float, generator) -> torch.Tensor:
    """One code per entry of `wanted` from N(mean of its class, (1 - shrink) S_c + shrink S_pooled)."""
    dim = all_codes.shape[1]
    covariances, means = [], []
    for c in range(NUM_CLASSES):
        members = all_codes[labels == c].double()
        means.append(members.mean(0))
        covariances.append(torch.cov(members.T))
    pooled = torch.stack(covariances).mean(0)
    out = torch.empty(len(wanted), dim, device=all_codes.device)
    noise = torch.randn(len(wanted), dim, generator=generator, dtype=torch.float64).to(all_codes.device)
    for c in wanted.unique().tolist():
        at = torch.nonzero(wanted == c).flatten()
        covariance = (1 - shrink) * covariances[c] + shrink * pooled
        factor = torch.linalg.cholesky(covariance + 1e-6 * torch.eye(dim, dtype=torch.float64, device=pooled.device))
        out[at] = (means[c] + noise[at] @ factor.T).float()
    return out


class CodeFlow(torch.nn.Module):
    """Class-conditional flow matching on standardised codes: x_t = (1 - t) x_0 + t e, v = e - x_0."""

    def __init__(self, dim: int, hidden: int = 512):
        super().__init__()
        self.label = torch.nn.Embedding(NUM_CLASSES, 64)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim + 64 + 32, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, dim),
        )
        self.register_buffer("frequencies", torch.exp(torch.linspace(0, 6, 16)))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def velocity(self, x, t, y):
        angle = t[:, None] * self.frequencies
        return self.net(torch.cat([x, self.label(y), angle.sin(), angle.cos()], dim=1))

    @classmethod
    @torch.enable_grad()  # called while drawing, under no_grad
    def fit(cls, all_codes, labels, steps: int, log, batch: int = 1024, seed: int = 0) -> "CodeFlow":
        torch.manual_seed(seed)
        flow = cls(all_codes.shape[1]).to(all_codes.device)
        flow.mean.copy_(all_codes.mean(0))
        flow.std.copy_(all_codes.std(0).clamp_min(1e-4))
        x = (all_codes - flow.mean) / flow.std
        weights = (1.0 / torch.bincount(labels, minlength=NUM_CLASSES).float())[labels]  # class-balanced
        optimizer = torch.optim.AdamW(flow.parameters(), lr=1e-3, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        for step in range(steps):
            pick = torch.multinomial(weights, batch, replacement=True)
            x0, y = x[pick], labels[pick]
            t = torch.rand(batch, device=x.device)
            e = torch.randn_like(x0)
            loss = (flow.velocity((1 - t[:, None]) * x0 + t[:, None] * e, t, y) - (e - x0)).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if step % 1000 == 999:
                log(f"  code flow step {step + 1}: loss {loss.item():.4f}")
        return flow.eval()

    @torch.no_grad()
    def sample(self, y, level: float, start, generator, steps: int = 40) -> torch.Tensor:
        """Codes of classes y: from noise (level 1) or from `start` noised to `level`, by Euler steps."""
        e = torch.randn(start.shape, generator=generator).to(start.device)
        x = (1 - level) * (start - self.mean) / self.std + level * e
        times = torch.linspace(level, 0, max(2, round(steps * level)) + 1, device=start.device)
        for t, after in zip(times[:-1], times[1:]):
            x = x + (after - t) * self.velocity(x, t.expand(len(x)), y)
        return x * self.std + self.mean


def random_same_class(labels: torch.Tensor, wanted: torch.Tensor, generator) -> torch.Tensor:
    by_class = torch.argsort(labels.cpu(), stable=True)
    counts = torch.bincount(labels.cpu(), minlength=NUM_CLASSES)
    starts = counts.cumsum(0) - counts
    w = wanted.cpu()
    offset = (torch.rand(len(w), generator=generator) * counts[w]).long()
    return by_class[starts[w] + offset].to(labels.device)


@torch.no_grad()
def confidence(model: VAE, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    out = []
    for s in range(0, len(images), 8192):
        x, _ = model_inputs(images[s : s + 8192], torch.zeros(1))
        out.append(model.encode(x)[2].softmax(1).gather(1, labels[s : s + 8192, None].long()).squeeze(1))
    return torch.cat(out)


def sweep(args) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    arrays = np.load(args.arrays)
    train = (
        torch.from_numpy(arrays["train_images"]),
        torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        torch.from_numpy(arrays["train_keys"]),
    )
    test = (torch.from_numpy(arrays["test_images"]), torch.from_numpy(arrays["test_labels"].astype(np.int64)))
    if args.quick:  # a CPU check of the script: 200 images a class at most
        keep = torch.cat([torch.nonzero(train[1] == c).flatten()[:200] for c in range(NUM_CLASSES)])
        train = tuple(t[keep] for t in train)
    per_class = 50 if args.quick else PER_CLASS
    started = time.perf_counter()
    log = lambda line: print(f"[{time.perf_counter() - started:6.0f}s] {line}", flush=True)  # noqa: E731
    images, labels = train[0].to(device), train[1].to(device)
    seeds = tuple(args.seeds)
    reference = replace(REFERENCE, epochs=args.reference_epochs)
    if args.quick:
        reference = replace(reference, epochs=1, images_per_epoch=2048)

    def trained(name: str, train_set) -> list[dict[str, float]]:
        runs = [train_and_test(train_set, test, replace(reference, seed=s), device) for s in seeds]
        log(f"  {name}: {np.mean([np.mean(list(r.values())) for r in runs]):.4f} mean per-class accuracy")
        return runs

    real_runs: list[dict[str, float]] = []  # trained when a first candidate passes the gate
    results, samples = {}, {}
    for recipe, model, drawing in models(args, images, labels, device, log):
        all_codes = codes(model, images)
        neighbours = functools.cache(lambda k, all_codes=all_codes: nearest_codes(all_codes, labels, k))
        flows = functools.cache(
            lambda all_codes=all_codes: CodeFlow.fit(all_codes, labels, 300 if args.quick else args.flow_steps, log)
        )
        for candidate in args.candidates:
            name = f"{recipe}/{candidate}"
            strategy, variant = candidate.split("/")
            sharpness, sure = float(variant[1:].removesuffix("+sure")), variant.endswith("+sure")
            drawn_as = replace(drawing, detail_sharpness=sharpness, sharpness=sharpness)
            generator = torch.Generator().manual_seed(2)
            blend = strategy.startswith(("interp", "mix"))  # "+sure": the surer of two blends, as the product draws
            filtered = sure and not blend
            styles = style_indices(labels.cpu(), 2, int(per_class * (1.5 if filtered else 1))).to(device)
            drawn = draw(
                model, strategy, sure, images, labels, all_codes, neighbours, flows, styles, generator, drawn_as
            )
            if filtered:  # each class's most confidently recognised draws
                p = confidence(model, drawn, labels[styles])
                keep = torch.cat(
                    [
                        (members := torch.nonzero(labels[styles] == c).flatten())[
                            p[members].argsort(descending=True)[:per_class]
                        ]
                        for c in range(NUM_CLASSES)
                    ]
                )
                styles, drawn = styles[keep], drawn[keep]
            generated = (drawn.cpu(), labels[styles].cpu())
            novelty = {
                k: v.to_dict() for k, v in measure_novelty((*generated, train[2][styles.cpu()]), train, test).items()
            }
            n = novelty
            log(
                f"{name}: novelty {n['digits']['ratio']:.2f}x / {n['letters']['ratio']:.2f}x, own sample "
                f"{n['digits']['nearest_is_own_sample']:.0%} / {n['letters']['nearest_is_own_sample']:.0%}, "
                f"spread {n['digits']['spread']:.2f} / {n['letters']['spread']:.2f}"
            )
            samples[name.replace("/", "_")] = drawn[:: max(1, len(drawn) // 720)].cpu().numpy()
            if args.drawn:
                os.makedirs(args.drawn, exist_ok=True)
                np.savez(
                    os.path.join(args.drawn, name.replace("/", "_") + ".npz"),
                    images=generated[0].numpy(),
                    labels=generated[1].numpy(),
                )
            if args.samples:
                np.savez_compressed(args.samples, **samples)
            results[name] = {"novelty": novelty}
            if min(n["digits"]["ratio"], n["letters"]["ratio"]) >= args.novelty_gate:
                sets = training_sets((train[0], train[1]), generated)
                real_runs = real_runs or trained("real", sets["real"])
                runs = {"generated": trained("generated", sets["generated"])}
                runs["real+generated"] = trained("real+generated", sets["real+generated"])
                figures = summarize({**runs, "real": real_runs}, seeds, reference)
                results[name].update({k: figures[k] for k in SCORE_FIGURES}, by_seed=figures["by_seed"])
                log(
                    f"{name}: CAS {figures['cas_over_real']:.3f}x, gain {figures['augmentation_gain'] * 100:+.2f} "
                    f"(digits {figures['augmentation_gain_digits'] * 100:+.2f}, "
                    f"letters {figures['augmentation_gain_letters'] * 100:+.2f})"
                )
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)


SCORE_FIGURES = ("cas_over_real", "augmentation_gain", "augmentation_gain_digits", "augmentation_gain_letters")


def models(args, images, labels, device, log):
    """(name, model, its drawing) of each --model file, or of each --recipes recipe trained here."""
    from handvae.formats.model_file import load_model_and_metadata

    for spec in args.model or []:
        name, path = spec.split("=", 1)
        model, metadata = load_model_and_metadata(path, map_location=device)
        yield name, model.eval(), Drawing.from_metadata(metadata)
    for recipe in args.recipes if not args.model else []:
        config = replace(resolve_config(), pairing={"default": "self"}.get(recipe, recipe), data_feed="memory")
        if args.quick:
            config = replace(config, epochs=2)
        log(f"training {recipe}")
        yield recipe, train_model(config, images, labels, device, log), config.drawing


def nearest_codes(all_codes: torch.Tensor, labels: torch.Tensor, k: int = 8) -> torch.Tensor:
    """(N, k): each sample's k nearest samples of its class in code space, never itself."""
    neighbours = torch.empty(len(labels), k, dtype=torch.long, device=all_codes.device)
    for c in range(NUM_CLASSES):
        members = torch.nonzero(labels == c).flatten()
        distance = torch.cdist(all_codes[members], all_codes[members])
        distance.fill_diagonal_(float("inf"))
        found = distance.topk(min(k, len(members) - 1), largest=False).indices
        neighbours[members] = members[found[:, torch.arange(k, device=all_codes.device) % found.shape[1]]]
    return neighbours


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export")
    e.add_argument("--mnist-dir", required=True)
    e.add_argument("--letters-csv", required=True)
    e.add_argument("--out", required=True)
    s = sub.add_parser("sweep")
    s.add_argument("--arrays", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--model", nargs="*", help="NAME=PATH of trained model files, instead of training --recipes")
    s.add_argument("--recipes", nargs="+", default=["default", "neighbours"])
    s.add_argument(
        "--candidates",
        nargs="+",
        default=[
            "redraw/s1",
            "redraw/s1+sure",
            "interp-0.3:0.7/s5+sure",
            "mix-0.3:0.7/s5+sure",
            "delta-0.5/s5+sure",
            "prior/s5+sure",
        ],
        help="STRATEGY/sSHARPNESS[+sure]",
    )
    s.add_argument("--seeds", nargs="+", type=int, default=[0])
    s.add_argument("--reference-epochs", type=int, default=REFERENCE.epochs, help="the reference classifier's epochs")
    s.add_argument("--novelty-gate", type=float, default=0.0, help="score only candidates this new (both parts)")
    s.add_argument("--samples", help="also save every 1/720 of each candidate's drawings here (.npz)")
    s.add_argument("--drawn", help="also save each candidate's whole drawn set here (NAME.npz)")
    s.add_argument("--flow-steps", type=int, default=6000, help="training steps of the flow-T candidates' model")
    s.add_argument("--quick", action="store_true")
    a = p.parse_args()
    export(a) if a.command == "export" else sweep(a)


if __name__ == "__main__":
    main()
