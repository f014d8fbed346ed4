"""Grad-CAM: heatmaps in [0, 1] at face size, the layer it explains, chosen targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ferkit.errors import ConfigError, ModelError
from ferkit.evaluate.explain import gradcam
from ferkit.models.checkpoint import Checkpoint
from ferkit.models.registry import create_model


def ferkit_model(arch: str):
    torch.manual_seed(0)
    model = create_model(arch).eval()
    model.ferkit = Checkpoint(arch=arch)  # what load_model attaches: class names, preprocessing
    return model


@pytest.mark.parametrize(
    ("arch", "layer"),
    [("seed_cnn", "features.14"), ("mini_xception", "blocks.3"), ("resnet18", "layer4.1.act")],
)
def test_heatmaps_of_the_last_feature_map(arch, layer, faces):
    model = ferkit_model(arch)
    heat, probs, used = gradcam(model, faces(2))
    assert used == layer
    assert heat.shape == (2, 48, 48) and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() <= 1 + 1e-6
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    assert not model.training  # the model's mode is restored


def test_targets_change_the_map_and_layers_can_be_chosen(faces):
    model = ferkit_model("mini_xception")
    batch = faces(1)
    maps = [gradcam(model, batch, targets=[k])[0][0] for k in range(7)]
    assert any(not np.allclose(maps[0], other) for other in maps[1:])
    _, _, used = gradcam(model, batch, layer="blocks.1")
    assert used == "blocks.1"
    with pytest.raises(ConfigError, match="no layer 'blocks.9'"):
        gradcam(model, batch, layer="blocks.9")
    with pytest.raises(ValueError, match="2 targets for 1 faces"):
        gradcam(model, batch, targets=[0, 1])


def test_a_model_without_ferkit_metadata_is_refused(faces):
    with pytest.raises(ModelError, match="load_model"):
        gradcam(create_model("mini_xception"), faces(1))
