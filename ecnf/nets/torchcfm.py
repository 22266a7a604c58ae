r"""TorchCFM's UNet behind ECNF's :py:`(x, t)` convention, for imported checkpoints.

TorchCFM (Tong et al. 2023, https://github.com/atong01/conditional-flow-matching, MIT
licence) releases CIFAR-10 flows as state dicts of its
:py:`torchcfm.models.unet.unet.UNetModelWrapper`, whose forward is :py:`model(t, x)`. ECNF
does not keep a copy of that network: :class:`TorchCFMUNet` builds TorchCFM's own class and
only swaps the arguments, so the imported weights run exactly as they were trained.

TorchCFM uses the same time convention as ECNF (noise at :math:`t = 0`, data at
:math:`t = 1`) and images in :math:`[-1, 1]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from .._checks import check_positive_int
from .embeddings import prepare_inputs

__all__ = ["TORCHCFM_CIFAR10", "TorchCFMUNet", "TorchCFMUNetConfig"]


def _unet_wrapper_class() -> type[nn.Module]:
    try:
        from torchcfm.models.unet.unet import UNetModelWrapper
    except ImportError as error:  # pragma: no cover - torchcfm is in requirements.txt
        raise ImportError(
            "this checkpoint holds TorchCFM's UNet, which needs the torchcfm package: "
            "pip install 'ecnf[torchcfm]' (or pip install torchcfm)"
        ) from error
    return UNetModelWrapper


@dataclass
class TorchCFMUNetConfig:
    r"""The arguments of TorchCFM's :py:`UNetModelWrapper`, under their own names.

    The defaults are the configuration of TorchCFM's released CIFAR-10 models
    (``examples/images/cifar10/compute_fid.py``): 35.75 M parameters. Class-conditional
    and :py:`learn_sigma` variants are not supported: their forward needs more than
    :py:`(x, t)`.

    Arguments:
        data_shape: The image shape :math:`(C, H, W)` (TorchCFM's :py:`dim`).
        num_channels: Channels at full resolution.
        num_res_blocks: Residual blocks per level.
        channel_mult: Channel multiplier of each level.
        attention_resolutions: Comma-separated resolutions with self-attention, e.g.
            :py:`"16"` or :py:`"16,8"`.
        num_heads, num_head_channels, num_heads_upsample: Attention heads (a positive
            :py:`num_head_channels` fixes the channels per head instead of the count).
        dropout: Dropout inside residual blocks (inactive when sampling).
        use_scale_shift_norm, resblock_updown, use_new_attention_order: As in TorchCFM.
    """

    arch: ClassVar[str] = "torchcfm_unet"

    data_shape: tuple[int, ...] = (3, 32, 32)
    num_channels: int = 128
    num_res_blocks: int = 2
    channel_mult: tuple[float, ...] = (1, 2, 2, 2)
    attention_resolutions: str = "16"
    num_heads: int = 4
    num_head_channels: int = 64
    num_heads_upsample: int = -1
    dropout: float = 0.1
    use_scale_shift_norm: bool = False
    resblock_updown: bool = False
    use_new_attention_order: bool = False

    def __post_init__(self):
        shape = tuple(self.data_shape)
        if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
            raise ValueError(f"data_shape must be an image shape (C, H, W), got {shape!r}")
        self.data_shape = shape
        for name in ("num_channels", "num_res_blocks", "num_heads"):
            check_positive_int(name, getattr(self, name))
        for name in ("num_head_channels", "num_heads_upsample"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value == 0 or value < -1:
                raise ValueError(f"{name} must be a positive int or -1, got {value!r}")
        mult = tuple(self.channel_mult)
        if not mult or not all(isinstance(m, int | float) and m > 0 for m in mult):
            raise ValueError(f"channel_mult must be positive numbers, got {self.channel_mult!r}")
        self.channel_mult = mult
        size = shape[-1]
        try:
            resolutions = [int(r) for r in str(self.attention_resolutions).split(",")]
        except ValueError:
            resolutions = []
        if not resolutions or any(not 0 < r <= size for r in resolutions):
            # TorchCFM attends at downsampling factor size // r (28 // 16 = 1 for MNIST)
            raise ValueError(
                "attention_resolutions must be comma-separated resolutions between 1 and the "
                f"image size {size}, got {self.attention_resolutions!r}"
            )
        self.attention_resolutions = ",".join(map(str, resolutions))
        if not 0 <= float(self.dropout) < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        self.dropout = float(self.dropout)
        for name in ("use_scale_shift_norm", "resblock_updown", "use_new_attention_order"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")


#: The configuration of TorchCFM's released CIFAR-10 flows (OT-CFM, I-CFM and FM).
TORCHCFM_CIFAR10 = TorchCFMUNetConfig()


class TorchCFMUNet(nn.Module):
    r"""TorchCFM's :py:`UNetModelWrapper`, called as :py:`forward(x, t)`.

    The wrapped network is :py:`self.net`, so a TorchCFM state dict loads into it
    unchanged (:func:`ecnf.importers.read_torchcfm` does that).
    """

    def __init__(self, config: TorchCFMUNetConfig):
        super().__init__()
        self.config = config
        self.net = _unet_wrapper_class()(
            dim=config.data_shape,
            num_channels=config.num_channels,
            num_res_blocks=config.num_res_blocks,
            channel_mult=list(config.channel_mult),
            attention_resolutions=config.attention_resolutions,
            num_heads=config.num_heads,
            num_head_channels=config.num_head_channels,
            num_heads_upsample=config.num_heads_upsample,
            dropout=config.dropout,
            use_scale_shift_norm=config.use_scale_shift_norm,
            resblock_updown=config.resblock_updown,
            use_new_attention_order=config.use_new_attention_order,
        )

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        t = prepare_inputs(x, torch.as_tensor(t), self.config.data_shape)
        return self.net(t, x)
