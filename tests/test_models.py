"""The model zoo: every registered model's contract, the seed CNN layout, the registry's
errors, FLOP counting, and loading torchvision-named ImageNet weights from a local file."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ferkit.errors import ModelError
from ferkit.models.layers import ACTIVATIONS, make_activation
from ferkit.models.pretrained import load_pretrained
from ferkit.models.registry import create_model, list_models, model_options, model_summary
from state_dict_shapes import batch_norm_shapes

# Options that keep the ImageNet-sized networks cheap on a CPU without changing their layout.
CHEAP = {"vgg16": {"fc": 64}}
FAMILIES = {
    "seed_cnn",
    "mini_xception",
    "vgg",
    "resnet18",
    "resnet34",
    "se_resnet18",
    "cbam_resnet18",
    "vgg16",
    "resnet50",
    "efficientnet_lite0",
}


def test_registry_lists_every_family():
    assert FAMILIES <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_forward_shape_finite_and_gradient_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = create_model(name, **CHEAP.get(name, {})).train()
    logits = model(torch.randn(2, 1, 48, 48))
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    without_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert without_grad == []


@pytest.mark.parametrize("name", list_models())
def test_activation_dropout_classes_and_channels_are_options(name):
    with torch.device("meta"):  # structure and shapes only: no weights allocated
        model = create_model(name, num_classes=3, in_chans=3, act="gelu", dropout=0.3).eval()
        logits = model(torch.empty(1, 3, 48, 48))
    assert logits.shape == (1, 3)
    kinds = {type(m) for m in model.modules()}
    assert nn.GELU in kinds and nn.ReLU not in kinds
    assert all(m.p == 0.3 for m in model.modules() if isinstance(m, nn.Dropout))
    assert {"act", "dropout"} <= set(model_options(name))


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_every_activation_trains(act):
    model = create_model("mini_xception", act=act)
    model(torch.randn(2, 1, 48, 48)).sum().backward()
    assert isinstance(make_activation(act), nn.Module)


def test_unknown_activation_is_a_model_error():
    with pytest.raises(ModelError, match="unknown activation 'swish'.*relu"):
        create_model("seed_cnn", act="swish")


def test_unknown_model_suggests_the_closest_name():
    with pytest.raises(ModelError, match="did you mean 'resnet18'"):
        create_model("resnet81")


def test_unknown_option_suggests_the_closest_option():
    with pytest.raises(ModelError, match="'widht' \\(did you mean 'width'\\?\\)"):
        create_model("vgg", widht=0.5)


def _layer(m: nn.Module) -> tuple:
    if isinstance(m, nn.Conv2d):
        return ("conv", m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding)
    if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
        return (type(m).__name__, m.num_features)
    if isinstance(m, nn.Linear):
        return ("dense", m.in_features, m.out_features)
    if isinstance(m, nn.MaxPool2d):
        return ("maxpool", m.kernel_size)
    if isinstance(m, nn.Dropout):
        return ("dropout", m.p)
    return (type(m).__name__,)


def test_seed_cnn_layer_by_layer():
    model = create_model("seed_cnn")
    leaves = [_layer(m) for m in model.modules() if not list(m.children())]

    def conv(a, b):
        return [("conv", a, b, (3, 3), (1, 1), (1, 1)), ("BatchNorm2d", b), ("ReLU",)]

    def dense(a, b):
        return [("dense", a, b), ("BatchNorm1d", b), ("ReLU",), ("dropout", 0.25)]

    expected = [
        *conv(1, 32),
        *conv(32, 64),
        ("maxpool", 2),
        *conv(64, 128),
        ("maxpool", 2),
        *conv(128, 256),
        ("maxpool", 2),
        ("Flatten",),
        *dense(9216, 256),
        *dense(256, 128),
        ("dense", 128, 7),
    ]
    assert leaves == expected
    assert model.features(torch.zeros(2, 1, 48, 48)).shape == (2, 256, 6, 6)


def test_mini_xception_matches_the_published_size():
    # Keras reports 58,423 for 7 classes, counting BatchNorm's 2 × 736 running statistics.
    model = create_model("mini_xception")
    bn_stats = sum(m.num_features * 2 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert sum(p.numel() for p in model.parameters()) + bn_stats == 58_423


def test_model_summary_counts_two_flops_per_multiply_add():
    summary = model_summary("seed_cnn")
    macs = 48 * 48 * 9 * (1 * 32 + 32 * 64) + 24 * 24 * 9 * 64 * 128 + 12 * 12 * 9 * 128 * 256
    macs += 9216 * 256 + 256 * 128 + 128 * 7
    assert summary == {
        "name": "seed_cnn",
        "params": sum(p.numel() for p in create_model("seed_cnn").parameters()),
        "flops": 2 * macs,
    }


@pytest.mark.parametrize("name", ["seed_cnn", "mini_xception", "vgg", "cbam_resnet18"])
def test_channels_last_and_cpu_autocast(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        reference = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        last = model_cl(x.to(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model_cl(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(last, reference, rtol=1e-4, atol=1e-4)
    assert half.shape == (2, 7) and torch.isfinite(half.float()).all()


# ---------------------------------------------------------------- torchvision layouts


def _torchvision_resnet50_shapes() -> dict:
    """Key → shape of torchvision's resnet50().state_dict(), written out from its source."""
    shapes = {"conv1.weight": (64, 3, 7, 7), **batch_norm_shapes("bn1", 64)}
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for block in range(blocks):
            p = f"layer{stage}.{block}"
            shapes[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
            shapes.update(batch_norm_shapes(f"{p}.bn1", planes))
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            shapes.update(batch_norm_shapes(f"{p}.bn2", planes))
            shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            shapes.update(batch_norm_shapes(f"{p}.bn3", planes * 4))
            if block == 0:
                shapes[f"{p}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                shapes.update(batch_norm_shapes(f"{p}.downsample.1", planes * 4))
            inplanes = planes * 4
    return {**shapes, "fc.weight": (1000, 2048), "fc.bias": (1000,)}


def _torchvision_vgg16_shapes() -> dict:
    convs = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256)]
    convs += [(12, 256, 256), (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512)]
    convs += [(24, 512, 512), (26, 512, 512), (28, 512, 512)]
    shapes = {}
    for index, cin, cout in convs:
        shapes[f"features.{index}.weight"] = (cout, cin, 3, 3)
        shapes[f"features.{index}.bias"] = (cout,)
    for index, fin, fout in [(0, 25088, 4096), (3, 4096, 4096), (6, 4096, 1000)]:
        shapes[f"classifier.{index}.weight"] = (fout, fin)
        shapes[f"classifier.{index}.bias"] = (fout,)
    return shapes


@pytest.mark.parametrize(
    ("name", "expected"),
    [("resnet50", _torchvision_resnet50_shapes()), ("vgg16", _torchvision_vgg16_shapes())],
)
def test_transfer_models_keep_torchvision_names_and_shapes(name, expected):
    with torch.device("meta"):
        model = create_model(name, num_classes=1000, in_chans=3)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected


def test_resnet50_loads_imagenet_weights_summing_rgb_filters(tmp_path):
    torch.manual_seed(0)
    imagenet = create_model("resnet50", num_classes=1000, in_chans=3)
    imagenet.layer4[2].bn3.running_mean.uniform_()
    file = tmp_path / "resnet50-imagenet.pth"
    torch.save(imagenet.state_dict(), file)

    model = create_model("resnet50", pretrained=str(file), upscale=64).eval()
    source = imagenet.state_dict()
    torch.testing.assert_close(model.conv1.weight, source["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(model.layer3[5].conv2.weight, source["layer3.5.conv2.weight"])
    torch.testing.assert_close(
        model.layer4[2].bn3.running_mean, source["layer4.2.bn3.running_mean"]
    )
    assert model.fc.weight.shape == (7, 2048)
    with torch.no_grad():
        assert model(torch.randn(1, 1, 48, 48)).shape == (1, 7)


def test_vgg16_loading_skips_only_the_mismatched_head(tmp_path):
    imagenet = create_model("vgg16", num_classes=1000, in_chans=3, fc=64)
    file = tmp_path / "vgg16.pth"
    torch.save({"state_dict": imagenet.state_dict()}, file)  # nested, as training scripts do
    model = create_model("vgg16", fc=64)
    skipped = load_pretrained(
        model, file, input_conv="features.0.weight", head="classifier.", origin="torchvision's"
    )
    assert skipped == ["classifier.6.weight", "classifier.6.bias"]
    torch.testing.assert_close(
        model.features[0].weight, imagenet.features[0].weight.sum(1, keepdim=True)
    )
    torch.testing.assert_close(model.classifier[3].weight, imagenet.classifier[3].weight)


def test_foreign_weights_list_missing_and_unexpected_keys(tmp_path):
    file = tmp_path / "other.pth"
    torch.save({"backbone.conv.weight": torch.zeros(8, 3, 3, 3)}, file)
    with torch.device("meta"):  # the checks need shapes only
        with pytest.raises(ModelError, match=r"other\.pth.*missing \(\d+\).*unexpected \(1\)"):
            create_model("resnet50", pretrained=str(file))
        with pytest.raises(ModelError, match="never downloads"):
            create_model("resnet50", pretrained=str(tmp_path / "absent.pth"))


def test_upscale_resizes_inside_the_model():
    seen = []
    with torch.device("meta"):
        model = create_model("resnet50", upscale=96).eval()
        model.conv1.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape))
        model(torch.empty(1, 1, 48, 48))
    assert seen == [(1, 1, 96, 96)]
