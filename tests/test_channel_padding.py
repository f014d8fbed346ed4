"""Zero-padding conv channels at export: the padded network computes what the original does,
only chains are padded, and `export_onnx` writes the padded graph (fp32 and int8)."""

from __future__ import annotations

import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from ferkit.channel_padding import MULTIPLE, pad_channels
from ferkit.data.store import open_store
from ferkit.export import export_onnx, read_metadata
from ferkit.labels import EMOTIONS
from ferkit.models.checkpoint import Checkpoint
from ferkit.models.registry import create_model
from synthetic_train import learnable_store


def odd_vgg() -> nn.Module:
    """The registered VGG at a width that gives odd channel counts (8/13/26/51), with
    random BatchNorm statistics and affine parameters so no padded value hides behind
    defaults."""
    torch.manual_seed(0)
    net = create_model("vgg", width=0.1, fc=16)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return net.eval()


def conv_channels(net: nn.Module) -> list[int]:
    return [m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d)]


def test_padded_vgg_computes_the_same_and_pads_every_conv():
    net = odd_vgg()
    padded = pad_channels(net)
    assert conv_channels(net) == [8, 8, 13, 13, 26, 26, 51, 51]
    assert conv_channels(padded) == [8, 8, 16, 16, 32, 32, 56, 56]
    x = torch.randn(16, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(padded(x), net(x), rtol=1e-5, atol=1e-5)
        # and the padded channels are exactly zero where the network leaves the convs
        features = padded[: len(net.features)](x)
    assert features.shape[1] == 56
    assert torch.count_nonzero(features[:, 51:]) == 0
    assert conv_channels(net) == [8, 8, 13, 13, 26, 26, 51, 51]  # the original untouched


def test_conv_bias_and_other_activations_stay_exact():
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(1, 5, 3, padding=1, bias=True), nn.SiLU(), nn.AvgPool2d(2),
        nn.Conv2d(5, 9, 3), nn.GELU(), nn.Dropout(0.5), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(36, 7),
    ).eval()  # fmt: skip
    padded = pad_channels(net)
    assert conv_channels(padded) == [8, 16]
    x = torch.randn(4, 1, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(padded(x), net(x), rtol=1e-5, atol=1e-5)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 5, 3, padding=1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(5 * 4 * 4, 7))

    def forward(self, x):
        return self.head(self.conv(x) + x)


@pytest.mark.parametrize(
    "net",
    [
        Residual(),  # not a chain
        nn.Sequential(nn.Conv2d(1, 5, 3), nn.Sigmoid()),  # sigmoid(0) is not 0
        nn.Sequential(nn.Conv2d(1, 5, 3)),  # would change the output's channels
        nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3)),  # nothing to pad
        create_model("resnet18"),
    ],
    ids=["residual", "sigmoid", "conv-output", "already-aligned", "resnet18"],
)
def test_what_cannot_be_padded_exactly_is_left_alone(net):
    assert pad_channels(net) is None


def test_export_writes_the_padded_graph(tmp_path):
    store = learnable_store(tmp_path / "s.h5", per_class=(8, 1, 4))
    with open_store(store) as opened:
        prep = opened.preprocessing()
    net = odd_vgg()
    net.ferkit = Checkpoint(arch="vgg", class_names=EMOTIONS, preprocessing=prep)
    # fp32 parity against the unpadded PyTorch model is checked inside export_onnx
    fp32 = export_onnx(net, tmp_path / "m.onnx", data=store, check_samples=None)
    int8 = export_onnx(net, tmp_path / "m.int8.onnx", int8="static", data=store,
                       check_samples=None, min_agreement=0.0)  # fmt: skip
    assert fp32.max_abs_diff < 1e-5
    for report in (fp32, int8):
        assert report.channels_padded_to == MULTIPLE
        assert read_metadata(report.path)["channels_padded_to"] == MULTIPLE
    graph = onnx.load(str(fp32.path)).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    conv_out = [weights[n.input[1]].shape[0] for n in graph.node if n.op_type == "Conv"]
    assert conv_out == [8, 8, 16, 16, 32, 32, 56, 56]
