"""Batched augmentation: identity at zero strength, shape/dtype/range kept, reproducible."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ferkit.config import AugmentConfig
from ferkit.data.augment import (
    Augmenter,
    camera_degrade,
    equalize,
    mix,
    random_crop,
    random_erase,
    random_flip,
)

LO, HI = -1.5, 2.5  # a normalised range, as the trainer uses


def zero_config(**changes) -> AugmentConfig:
    """Every op off, then `changes` on."""
    off = {
        f.name: 0 for f in dataclasses.fields(AugmentConfig) if f.name not in ("mix_p", "affine_p")
    }
    off.update(resized_crop_scale=1.0, erase_max_area=0.25, affine_p=1.0, mix_p=1.0)
    off.update(changes)
    return AugmentConfig(**off)


def batch(n: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 48, 48, generator=g) * (HI - LO) + LO


def test_zero_strength_is_the_identity():
    x, y = batch(), torch.arange(16) % 7
    out, y_a, y_b, lam = Augmenter(zero_config(), value_range=(LO, HI))(x, y)
    assert torch.equal(out, x) and torch.equal(y_a, y) and torch.equal(y_b, y) and lam == 1.0


ONE_OP_EACH = {
    "crop": zero_config(crop_padding=4),
    "resized_crop": zero_config(resized_crop_scale=0.6),
    "hflip": zero_config(hflip=0.5),
    "vflip": zero_config(vflip=0.5),
    "rotate": zero_config(rotate=20.0),
    "shift": zero_config(shift=0.1),
    "shear": zero_config(shear=10.0),
    "zoom": zero_config(zoom=0.2),
    "erase": zero_config(erase_p=1.0),
    "brightness": zero_config(brightness=0.3),
    "contrast": zero_config(contrast=0.4),
    "camera": zero_config(camera_p=1.0),
    "equalize": zero_config(equalize_p=1.0),
    "mixup": zero_config(mixup_alpha=0.4),
    "cutmix": zero_config(cutmix_alpha=1.0),
    "all": AugmentConfig(erase_p=0.5, brightness=0.2, contrast=0.2, shear=5, shift=0.05,
                         resized_crop_scale=0.8, vflip=0.1, mixup_alpha=0.2, cutmix_alpha=0.2),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ONE_OP_EACH))
def test_each_op_keeps_shape_dtype_range_and_changes_images(name):
    x, y = batch(), torch.arange(16) % 7
    augmenter = Augmenter(ONE_OP_EACH[name], value_range=(LO, HI), seed=1)
    out, y_a, y_b, lam = augmenter(x, y)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= LO - 1e-5 and out.max() <= HI + 1e-5
    assert not torch.equal(out, x)
    assert 0.0 <= lam <= 1.0 and y_a.shape == y_b.shape == y.shape


def test_same_seed_same_batch_and_state_restores():
    config = AugmentConfig(erase_p=0.5, brightness=0.2, mixup_alpha=0.3)
    x, y = batch(), torch.arange(16) % 7
    first = Augmenter(config, value_range=(LO, HI), seed=5)
    second = Augmenter(config, value_range=(LO, HI), seed=5)
    assert torch.equal(first(x, y)[0], second(x, y)[0])
    assert not torch.equal(first(x, y)[0], Augmenter(config, seed=6)(x, y)[0])
    state = first.state_dict()
    expected = first(x, y)[0]
    first.load_state_dict(state)
    assert torch.equal(first(x, y)[0], expected)


def test_flip_probability_one_mirrors_every_image():
    x, g = batch(), torch.Generator().manual_seed(0)
    assert torch.equal(random_flip(x, 1.0, g), x.flip(-1))
    assert torch.equal(random_flip(x, 1.0, g, dim=-2), x.flip(-2))
    assert AugmentConfig().vflip == 0.0  # faces are upright: vertical flips are opt-in


def test_padded_crop_is_a_shift_of_each_image():
    x, g = batch(8), torch.Generator().manual_seed(3)
    out = random_crop(x, 3, g, fill=0.0)
    for image, crop in zip(x, out, strict=True):
        matches = [
            (dy, dx)
            for dy in range(-3, 4)
            for dx in range(-3, 4)
            if torch.equal(crop[:, 3:-3, 3:-3], image[:, 3 + dy : 45 + dy, 3 + dx : 45 + dx])
        ]
        assert len(matches) == 1


def test_affine_fills_uncovered_pixels_with_fill():
    x = torch.full((4, 1, 48, 48), 1.0)
    augmenter = Augmenter(zero_config(zoom=0.5, rotate=45.0), fill=-1.0, seed=2)
    out = augmenter.images(x)
    assert out.min() >= -1.0 - 1e-5 and out.max() <= 1.0 + 1e-5
    assert (out < 0).any()  # some corner became the fill


def test_erasing_covers_at_most_max_area():
    x, g = torch.zeros(32, 1, 48, 48), torch.Generator().manual_seed(0)
    out = random_erase(x, 1.0, 0.2, g, value_range=(1.0, 2.0))
    erased = (out >= 1.0).float().mean(dim=(1, 2, 3))
    assert (erased > 0).all() and (erased <= 0.2 + 0.03).all()


def test_mixup_and_cutmix_return_consistent_targets():
    # Image i is constant i, so the mixed pixels reveal which images were combined.
    n = 12
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 48, 48).clone()
    y = torch.arange(n)
    g = torch.Generator().manual_seed(0)
    out, y_a, y_b, lam = mix(x, y, zero_config(mixup_alpha=0.5), g)
    assert 0 < lam < 1
    expected = lam * y_a.float() + (1 - lam) * y_b.float()
    assert torch.allclose(out[:, 0, 0, 0], expected, atol=1e-5)
    out, y_a, y_b, lam = mix(x, y, zero_config(cutmix_alpha=1.0), g)
    kept = (out == y_a.view(n, 1, 1, 1).float()).float().mean(dim=(1, 2, 3))
    moved = y_a != y_b
    assert torch.allclose(kept[moved], torch.full_like(kept[moved], lam), atol=1e-6)


def test_mix_probability_zero_never_mixes():
    x, y = batch(), torch.arange(16) % 7
    g = torch.Generator().manual_seed(0)
    out, y_a, y_b, lam = mix(x, y, zero_config(mixup_alpha=1.0, mix_p=0.0), g)
    assert torch.equal(out, x) and lam == 1.0 and torch.equal(y_b, y)


def test_equalize_follows_opencv_on_8_bit_faces(faces):
    import cv2

    images = faces(6)
    images[0] = 77  # a constant face stays as it is
    images[1] = images[1] // 4 + 100  # a flat, low-contrast face gets stretched
    x = torch.from_numpy(images).float().unsqueeze(1) / 255 * (HI - LO) + LO
    out = equalize(x, 1.0, torch.Generator().manual_seed(0), value_range=(LO, HI))
    levels = ((out.squeeze(1) - LO) / (HI - LO) * 255).round().numpy()
    expected = np.stack([cv2.equalizeHist(face) for face in images]).astype(np.float64)
    assert np.abs(levels - expected).max() <= 1  # OpenCV rounds the same ratio its own way
    assert levels[1].max() - levels[1].min() > 200


def test_camera_degradation_flattens_and_quantises_but_keeps_shape(faces):
    x = torch.from_numpy(faces(64)).float().unsqueeze(1) / 255 * (HI - LO) + LO
    out = camera_degrade(x, 1.0, torch.Generator().manual_seed(0), value_range=(LO, HI))
    assert out.shape == x.shape and out.min() >= LO - 1e-5 and out.max() <= HI + 1e-5
    assert out.std(dim=(1, 2, 3)).mean() < 0.9 * x.std(dim=(1, 2, 3)).mean()  # contrast drops
    levels = (out - LO) / (HI - LO) * 255
    assert torch.allclose(levels, levels.round(), atol=1e-3)  # 8-bit, as a camera delivers
    kept = camera_degrade(x, 0.0, torch.Generator().manual_seed(0), value_range=(LO, HI))
    assert torch.equal(kept, x)
