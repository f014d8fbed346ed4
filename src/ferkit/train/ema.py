"""Exponential moving average of a model's weights.

Averaging the weights over the last few hundred steps smooths the noise of SGD and
usually evaluates a little better than the raw weights, at the cost of one extra copy of
the model. The decay warms up, (1 + step) / (10 + step) capped at `decay`, so that the
average does not remember the random initialisation in short runs.
"""

from __future__ import annotations

import copy

import torch


class ModelEma:
    """A frozen copy of a model whose floating-point state tracks an EMA of the original.

    Buffers that are not floating point (BatchNorm's `num_batches_tracked`) are copied.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.steps = 0
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        current = model.state_dict()
        for name, average in self.module.state_dict().items():
            value = current[name].detach()
            if average.dtype.is_floating_point:
                average.lerp_(value.to(average.dtype), 1.0 - decay)
            else:
                average.copy_(value)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.steps = int(state["steps"])
