"""Drawn distributions: a picture's ink as an exact 2D density, named for training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from scipy import stats

from ecnf import TrainConfig, fit
from ecnf.data import (
    DRAWN_PREFIX,
    Drawing,
    dataset_classes,
    load_drawing,
    make_stream,
    points_from_image,
    sample_toy,
    sample_toy_labelled,
    save_drawing,
    text_image,
)
from ecnf.data.drawn import DRAWING_HALF_WIDTH, ink_of


def disk_picture(size=(600, 400), box=(150, 50, 450, 350)) -> Image.Image:
    image = Image.new("L", size, 255)
    ImageDraw.Draw(image).ellipse(box, fill=0)
    return image


def polar_pvalues(x: torch.Tensor, radius: float) -> tuple[float, float]:
    """KS p-values of r^2 / R^2 and of the angle against U(0, 1): both are uniform exactly
    when the points are uniform on the disk of radius R about the origin."""
    x = x.double()
    r2 = (x**2).sum(1) / radius**2
    angle = (torch.atan2(x[:, 1], x[:, 0]) + math.pi) / (2 * math.pi)
    return stats.kstest(r2.numpy(), "uniform").pvalue, stats.kstest(angle.numpy(), "uniform").pvalue


def test_a_filled_disk_gives_points_uniform_on_that_disk():
    # The disk fills its crop, so it is centred with radius DRAWING_HALF_WIDTH. Under
    # uniformity r^2 / R^2 and the angle are U(0, 1); the seed is fixed, so the p-values
    # are too (multinomial and uniform draws from a CPU generator do not vary by CPU).
    x = points_from_image(disk_picture(), 5000, generator=torch.Generator().manual_seed(0))
    p_radius, p_angle = polar_pvalues(x, DRAWING_HALF_WIDTH)
    assert p_radius > 0.01 and p_angle > 0.01, (p_radius, p_angle)
    assert x.mean(0).abs().max() < 0.1
    # the same test has the power to reject a disk whose ink fades towards the rim
    fading = np.asarray(disk_picture(), dtype=np.float64)
    yy, xx = np.mgrid[: fading.shape[0], : fading.shape[1]]
    r = np.hypot(xx - 300, yy - 200) / 150
    faded = np.where(fading < 128, np.clip(1 - 0.5 * r, 0, 1), 0.0)  # ink, 1 at the centre
    y = Drawing.from_image(1 - faded).sample(5000, generator=torch.Generator().manual_seed(0))
    assert polar_pvalues(y, DRAWING_HALF_WIDTH)[0] < 1e-6


def test_density_is_in_proportion_to_the_ink():
    # two squares side by side, the left at full ink and the right at half ink
    image = np.ones((40, 100))
    image[10:30, 10:40] = 0.0
    image[10:30, 60:90] = 0.5
    x = points_from_image(image, 20000, generator=torch.Generator().manual_seed(1))
    left = float((x[:, 0] < 0).double().mean())
    # binomial standard error sqrt(p (1 - p) / n) = 0.0033; 4 of them
    assert abs(left - 2 / 3) < 0.014
    # the squares keep their aspect: both 20 pixels high over a crop 80 wide
    assert x[:, 1].abs().max() <= DRAWING_HALF_WIDTH * 20 / 80 + 1e-6


def test_ink_is_opacity_on_a_transparent_canvas_and_darkness_on_an_opaque_one():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # a red stroke counts fully
    rgba[1, 1] = (0, 0, 0, 128)
    assert ink_of(rgba).round(2).tolist() == [[1.0, 0.0], [0.0, 0.5]]
    rgb = np.full((1, 2, 3), 255, dtype=np.uint8)
    rgb[0, 0] = 0
    assert ink_of(rgb).tolist() == [[1.0, 0.0]]
    assert ink_of(Image.fromarray(rgba, "RGBA")).round(2).tolist() == [[1.0, 0.0], [0.0, 0.5]]


def test_a_typed_word_becomes_a_cloud_of_its_letters():
    x = points_from_image(text_image("IO"), 4000, generator=torch.Generator().manual_seed(0))
    # the word is wider than high, centred, and has a hole in the O (no points there)
    width, height = (x.max(0).values - x.min(0).values).tolist()
    assert width > 1.1 * height
    assert abs(float(x[:, 1].mean())) < 0.3
    o = points_from_image(text_image("O"), 4000, generator=torch.Generator().manual_seed(0))
    centre = (o.max(0).values + o.min(0).values) / 2
    assert centre.abs().max() < 0.1
    assert ((o - centre).norm(dim=1) < 0.3 * DRAWING_HALF_WIDTH).sum() == 0


def test_a_saved_drawing_samples_the_same_density_by_name(tmp_path):
    picture = disk_picture()
    name = save_drawing(picture, tmp_path)
    assert name.startswith(DRAWN_PREFIX) and name == save_drawing(picture, tmp_path)
    assert len(list(tmp_path.iterdir())) == 1  # content-addressed: saved once
    stored = load_drawing(name)
    direct = Drawing.from_image(picture)
    # the PNG quantises ink to 1/255; the disk's interior is exact
    assert stored.ink.shape == direct.ink.shape
    assert np.abs(stored.ink / stored.ink.max() - direct.ink / direct.ink.max()).max() <= 1 / 255
    g = torch.Generator().manual_seed(3)
    assert torch.equal(
        sample_toy(name, 100, generator=g), stored.sample(100, generator=g.manual_seed(3))
    )
    x = sample_toy(name, 5000, generator=torch.Generator().manual_seed(0))
    assert min(polar_pvalues(x, DRAWING_HALF_WIDTH)) > 0.01


def test_training_on_a_drawing_by_name(tmp_path):
    name = save_drawing(text_image("o"), tmp_path / "drawings")
    stream = make_stream(name, seed=0)
    assert torch.equal(stream.next_batch(8), make_stream(name, seed=0).next_batch(8))
    config = TrainConfig(
        data=name, iterations=5, batch_size=32, out_dir=str(tmp_path / "run"), sample_every=0
    )
    result = fit(config, overwrite=True)
    assert result.checkpoint.exists()


@pytest.mark.parametrize(
    ("picture", "message"),
    [
        (np.ones((50, 50)), "empty"),
        (np.zeros((50, 50, 2)), "shape"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.full((4, 4), 2.0), r"\[0, 1\]"),
    ],
)
def test_bad_pictures_are_refused_by_name(picture, message):
    with pytest.raises(ValueError, match=message):
        Drawing.from_image(picture)


def test_missing_or_foreign_drawing_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        sample_toy(f"drawn:{tmp_path / 'gone.png'}", 4)
    foreign = tmp_path / "notes.png"
    foreign.write_text("not a picture")
    with pytest.raises(ValueError, match="not a picture"):
        sample_toy(f"drawn:{foreign}", 4)
    with pytest.raises(ValueError, match="drawn:<file>"):
        sample_toy("hearts", 4)
    with pytest.raises(ValueError, match="text is empty"):
        text_image("   ")


# ---- strokes of different colours are classes


def two_colour_picture() -> Image.Image:
    """A red bar (10 x 160 px) above a blue square (60 x 60 px), on white."""
    image = Image.new("RGB", (200, 200), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([20, 20, 179, 29], fill=(220, 30, 30))
    draw.rectangle([70, 100, 129, 159], fill=(30, 30, 220))
    return image


def test_colours_become_classes_with_their_share_of_the_ink(tmp_path):
    picture = two_colour_picture()
    name = save_drawing(picture, tmp_path, colours=True)
    drawing = load_drawing(name)
    assert drawing.class_names == ("colour #1818d8", "colour #d81818")  # by ink, blue first
    g = torch.Generator().manual_seed(0)
    x, y = drawing.sample_labelled(20_000, generator=g)
    assert torch.equal(x, drawing.sample(20_000, generator=torch.Generator().manual_seed(0)))
    # each colour's share of the points is its share of the ink
    ink = ink_of(picture)
    blue = ink[100:160, 70:130].sum() / (ink[100:160, 70:130].sum() + ink[20:30, 20:180].sum())
    share = float((y == 0).float().mean())
    assert abs(share - blue) < 5 * math.sqrt(blue * (1 - blue) / 20_000)
    # and each class lies where its colour was: the square below, the bar above
    assert x[y == 0, 1].max() < x[y == 1, 1].min()
    assert float(x[y == 1, 1].std()) < 0.2 and float(x[y == 0, 0].std()) > 0.5
    # the same points come out of the labelled toy sampler by name
    g = torch.Generator().manual_seed(3)
    named_x, named_y = sample_toy_labelled(name, 500, generator=g)
    again_x, again_y = drawing.sample_labelled(500, generator=torch.Generator().manual_seed(3))
    assert torch.equal(named_x, again_x) and torch.equal(named_y, again_y)
    assert dataset_classes(name) == drawing.class_names


def test_one_colour_and_blended_edges_are_not_classes(tmp_path):
    # black strokes, downsampled so their edges blend into greys: still one class
    big = Image.new("RGB", (400, 400), "white")
    ImageDraw.Draw(big).ellipse([50, 50, 350, 350], outline=(0, 0, 0), width=30)
    small = big.resize((97, 97), Image.Resampling.LANCZOS)
    name = save_drawing(small, tmp_path, colours=True)
    drawing = load_drawing(name)
    assert drawing.labels is None and drawing.class_names == () and not dataset_classes(name)
    # a grey drawing saved without colours is the same greyscale file as before
    assert name == save_drawing(small, tmp_path)
    with pytest.raises(ValueError, match="one colour, so no classes"):
        drawing.sample_labelled(4)
    with pytest.raises(ValueError, match="no class labels"):
        make_stream(name, labels=True)
    # the blended edge of a coloured stroke goes with its stroke
    picture = two_colour_picture().resize((77, 77), Image.Resampling.LANCZOS)
    coloured = Drawing.from_image(picture, colours=True)
    assert len(coloured.colours) == 2
    assert set(np.unique(coloured.labels[coloured.ink > 0]).tolist()) == {0, 1}
