"""Image files: style images in any polarity, alpha or JPEG, turned into the training data's form; PNGs out."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from handvae.data.images import encode_pngs, load_style_image
from handvae.errors import DataError


def handwritten_l(path, ink=0, paper=255, mode="L", size=(90, 140)):
    """A thick 'L' drawn in `ink` on `paper`, off-centre in a tall image."""
    image = Image.new(mode, size, paper)
    pen = ImageDraw.Draw(image)
    pen.rectangle([20, 20, 34, 110], fill=ink)
    pen.rectangle([20, 96, 70, 110], fill=ink)
    image.save(path)
    return path


def assert_like_training_data(image):
    assert image.shape == (28, 28) and image.dtype == np.uint8
    assert image.max() >= 200 and image[0].max() == image[-1].max() == image[:, 0].max() == image[:, -1].max() == 0
    rows, cols = np.nonzero(image > 50)
    assert 18 <= max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 <= 21  # scaled into a 20x20 box
    weights = image.astype(float)
    ys, xs = np.indices(image.shape)
    centre = ((ys * weights).sum() / weights.sum(), (xs * weights).sum() / weights.sum())
    assert centre == pytest.approx((14, 14), abs=1.0)  # centred by mass, as MNIST is


def test_dark_ink_on_light_paper_becomes_white_on_black(tmp_path):
    image = load_style_image(str(handwritten_l(tmp_path / "l.png")))
    assert_like_training_data(image)
    # The L's foot is at the bottom: the lower rows hold more ink than the upper ones.
    assert image[16:].sum() > image[:12].sum()


def test_light_ink_on_dark_jpeg_and_transparent_png(tmp_path):
    assert_like_training_data(load_style_image(str(handwritten_l(tmp_path / "l.jpg", ink=230, paper=20))))
    rgba = handwritten_l(tmp_path / "alpha.png", ink=(0, 0, 0, 255), paper=(0, 0, 0, 0), mode="RGBA")
    assert_like_training_data(load_style_image(str(rgba)))


def test_unreadable_missing_and_blank_images_are_named(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(DataError, match="notes.png: not a readable image"):
        load_style_image(str(tmp_path / "notes.png"))
    with pytest.raises(DataError, match="absent.png: image file not found"):
        load_style_image(str(tmp_path / "absent.png"))
    Image.new("L", (50, 50), 240).save(tmp_path / "blank.png")
    with pytest.raises(DataError, match="blank.png: no character found"):
        load_style_image(str(tmp_path / "blank.png"))


@pytest.mark.parametrize("shape", [(3, 28, 28), (2, 28, 84), (1, 1, 1)])
def test_encode_pngs_decode_to_the_same_pixels(shape):
    images = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    images[0, : shape[1] // 2] = 0  # a black stretch, as in real characters, as well as noise
    pngs = encode_pngs(images)
    assert len(pngs) == shape[0]
    for png, image in zip(pngs, images):
        with Image.open(io.BytesIO(png)) as decoded:
            assert (decoded.format, decoded.mode, decoded.size) == ("PNG", "L", (shape[2], shape[1]))
            np.testing.assert_array_equal(np.asarray(decoded), image)
