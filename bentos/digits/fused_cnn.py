"""The served form of the digits CNN: every member of the ensemble in one pass, batch norms folded away.

Trained, the ensemble is three ``DigitNet``s run one after another, each eleven small torch calls
(conv, batch norm, ReLU, pool, ...). On 8×8 images a call's fixed cost outweighs its arithmetic, so
one image took ~1.7 ms. Here each batch norm is folded into the convolution before it (eval mode: a
fixed scale and shift), the members' first convolutions become one, their later ones one grouped
convolution each, and their heads one batched product: twelve calls for the whole ensemble, not 33.

The folding reorders float32 arithmetic, so answers agree to rounding error, not bit for bit; a model
serves through this form only if it matches the trained network on probes when it loads.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

TOLERANCE = 1e-5  # largest difference in any probability allowed against the trained network


def _folded(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The convolution's weight and bias with the batch norm after it applied to them."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    return conv.weight * scale[:, None, None, None], (bias - norm.running_mean) * scale + norm.bias


class FusedDigits(nn.Module):
    """``softmax`` probabilities of ``(n, 1, 8, 8)`` images, averaged over the members' softmaxes."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.count = len(members)
        with torch.no_grad():
            layers = [[_folded(net.features[i], net.features[i + 1]) for i in (0, 3, 7)] for net in members]
            for index, name in enumerate(("first", "second", "third")):
                self.register_buffer(f"{name}_weight", torch.cat([layer[index][0] for layer in layers]))
                self.register_buffer(f"{name}_bias", torch.cat([layer[index][1] for layer in layers]))
            heads = [net.head[-1] for net in members]
            self.register_buffer("head_weight", torch.stack([h.weight.t() for h in heads]))  # (m, in, 10)
            self.register_buffer("head_bias", torch.stack([h.bias for h in heads])[:, None, :])  # (m, 1, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.count
        x = functional.relu(functional.conv2d(x, self.first_weight, self.first_bias, padding=1))
        x = functional.relu(functional.conv2d(x, self.second_weight, self.second_bias, padding=1, groups=m))
        x = functional.max_pool2d(x, 2)
        x = functional.relu(functional.conv2d(x, self.third_weight, self.third_bias, padding=1, groups=m))
        x = functional.max_pool2d(x, 2)
        # (m, n, features): each member's own channels, flattened as its head reads them
        features = x.reshape(len(x), m, self.head_weight.shape[1]).transpose(0, 1)
        logits = torch.baddbmm(self.head_bias, features, self.head_weight)  # (m, n, 10)
        return torch.softmax(logits, dim=2).mean(dim=0)


def fused(net: nn.Module, probes: torch.Tensor) -> FusedDigits | None:
    """The fused form of a ``DigitNet`` or ``DigitEnsemble`` if it answers ``probes`` as ``net`` does
    (the same digits, probabilities within ``TOLERANCE``), else None."""
    members = list(getattr(net, "members", [net]))
    try:
        fast = FusedDigits(members).eval()
    except (AttributeError, IndexError, TypeError):  # not the architecture this folds
        return None
    with torch.inference_mode():
        expected = torch.softmax(net.eval()(probes), dim=1)
        got = fast(probes)
    same_digits = torch.equal(expected.argmax(dim=1), got.argmax(dim=1))
    return fast if same_digits and float((expected - got).abs().max()) <= TOLERANCE else None
