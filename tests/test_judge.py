"""The separate judge of generated characters: inputs, training, distances, the assessment, its file."""

import pytest
import torch

from handvae.errors import ModelFileError
from handvae.formats.model_file import load_judge, save_judge
from handvae.model.drawing import Drawing
from handvae.model.judge import (
    Judge,
    JudgeTraining,
    assess_generation,
    judge_inputs,
    mean_pairwise_distance,
    train_judge,
)
from handvae.model.vae import VAE, VAEConfig


def test_inputs_are_scaled_to_a_peak_of_one():
    images = torch.zeros(2, 28, 28, dtype=torch.uint8)
    images[0, 3, 4], images[1, 5, 5] = 100, 255
    x = judge_inputs(images)
    assert x.shape == (2, 1, 28, 28) and x[0, 0, 3, 4] == 1.0 and x[1, 0, 5, 5] == 1.0
    assert judge_inputs(torch.zeros(1, 28, 28)).abs().sum() == 0  # a blank image stays blank


def test_mean_pairwise_distance_by_hand():
    images = torch.zeros(3, 28, 28, dtype=torch.uint8)
    images[1, 0, 0] = 255  # distance 1 from image 0
    images[2, 0, :4] = 255  # distance 2 from image 0, sqrt(3) from image 1
    assert mean_pairwise_distance(images) == pytest.approx((1 + 2 + 3**0.5) / 3)


def test_the_judge_learns_and_its_file_round_trips(tmp_path):
    labels = torch.arange(400) % 4
    images = torch.zeros(400, 28, 28, dtype=torch.uint8)
    for c in range(4):  # each class a bar in its own place
        images[labels == c, 4 + 5 * c : 7 + 5 * c, 4:24] = 255
    judge = train_judge(images, labels, JudgeTraining(epochs=2, batch_size=32), log=lambda line: None)
    assert (judge(judge_inputs(images)).argmax(1) == labels).float().mean() > 0.95
    save_judge(str(tmp_path / "judge.pt"), judge, {"note": "toy"})
    loaded, metadata = load_judge(str(tmp_path / "judge.pt"))
    assert metadata == {"note": "toy"} and torch.equal(loaded(judge_inputs(images)), judge(judge_inputs(images)))
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(ModelFileError, match="not a readable judge file"):
        load_judge(str(tmp_path / "bad.pt"))


def test_a_judge_file_on_s3_round_trips_and_an_older_judge_file_still_loads(s3_bucket, tmp_path):
    """The judge shares the model files' contract: read and written through storage (a URI too), and
    judge files written before it ({"format", "state", "metadata"}) still load."""
    torch.manual_seed(0)
    judge, x = Judge().eval(), judge_inputs(torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8))
    save_judge(f"{s3_bucket}/judges/judge.pt", judge, {"note": "on s3"})
    loaded, metadata = load_judge(f"{s3_bucket}/judges/judge.pt")
    assert metadata == {"note": "on s3"} and torch.equal(loaded(x), judge(x))
    with pytest.raises(ModelFileError, match="judges/absent.pt: judge file not found"):
        load_judge(f"{s3_bucket}/judges/absent.pt")
    torch.save(
        {"format": "handvae.judge", "state": judge.state_dict(), "metadata": {"note": "old"}}, tmp_path / "old.pt"
    )
    old, metadata = load_judge(str(tmp_path / "old.pt"))
    assert metadata == {"note": "old"} and torch.equal(old(x), judge(x))


def test_assessment_compares_generated_with_real_per_character():
    class Always3(Judge):
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.full((len(x),), 3), 36).float()

    torch.manual_seed(0)
    model = VAE(VAEConfig(num_filters=4, num_latent=3)).eval()
    real = {
        3: torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8),
        7: torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8),
    }
    figures = assess_generation(model, Always3(), real, {3: 1.0, 7: 0.5}, styles_per_class=2, seed=0, drawing=Drawing())
    assert figures["styles"] == 4 and figures["generated_images"] == 4 * 36
    assert figures["generated_accuracy"]["3"] == 1.0 and figures["generated_accuracy"]["7"] == 0.0
    assert figures["real_accuracy_mean"] == 0.75 and figures["generated_accuracy_mean"] == 0.5
    assert figures["legibility"] == pytest.approx(0.5 / 0.75)
    assert set(figures["variety"]) == {"3", "7"} and all(v > 0 for v in figures["variety"].values())
