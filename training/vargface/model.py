"""VarGFaceNet (Yan et al., ICCV-W 2019) in PyTorch.

A layer-for-layer port of the official MXNet symbol (zma-c-137/VarGFaceNet
`VarGFaceNet.py`, identical to insightface `recognition/symbol/vargfacenet.py`):

- every convolution has no bias (MXNet ``no_bias=True``) except the two 1x1
  convolutions of the SE block and the final fully connected layer, which use
  MXNet's default ``no_bias=False``;
- every BatchNorm is affine (the official ``fix_gamma=False``), eps 2e-5 and
  MXNet momentum 0.9, i.e. PyTorch momentum 0.1;
- PReLU has one slope per channel, as MXNet ``LeakyReLU(act_type='prelu')``;
- SE sits in every ``vargnet_block`` (the head's down-sampling block included,
  since the official head calls ``vargnet_block``), never in the
  ``vargnet_branch_merge_block`` that opens each stage.

The input scaling ``(x - 127.5) * 0.0078125`` is the first operation of
``forward``: callers feed raw RGB in 0..255, float32, NCHW, 112x112.
"""

from torch import Tensor, nn

BN_EPS = 2e-5
BN_MOMENTUM = 0.1  # PyTorch convention: MXNet momentum 0.9 == 1 - 0.1
INPUT_MEAN = 127.5
INPUT_SCALE = 0.0078125  # 1 / 128
INPUT_SIZE = 112


def batch_norm_2d(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class SeparableConv(nn.Module):
    """Official `separable_conv2d`: a 3x3 variable group convolution with
    `group_base` input channels per group widening to `in*factor` channels,
    BN, PReLU; then a 1x1 convolution to `out_channels`, BN and optionally PReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        factor: int,
        group_base: int,
        pointwise_activation: bool = True,
    ):
        super().__init__()
        if in_channels % group_base != 0:
            raise ValueError(f"{in_channels} channels do not split into groups of {group_base}")
        wide_channels = in_channels * factor
        self.group_conv = nn.Conv2d(
            in_channels,
            wide_channels,
            kernel_size=3,
            stride=stride,
            padding=1,
            groups=in_channels // group_base,
            bias=False,
        )
        self.group_bn = batch_norm_2d(wide_channels)
        self.group_act = nn.PReLU(wide_channels)
        self.pointwise_conv = nn.Conv2d(wide_channels, out_channels, kernel_size=1, bias=False)
        self.pointwise_bn = batch_norm_2d(out_channels)
        self.pointwise_act = nn.PReLU(out_channels) if pointwise_activation else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.group_act(self.group_bn(self.group_conv(x)))
        x = self.pointwise_bn(self.pointwise_conv(x))
        if self.pointwise_act is not None:
            x = self.pointwise_act(x)
        return x


class SqueezeExcite(nn.Module):
    """Official `se_block`: global average pool, 1x1 conv to C/ratio (bias),
    PReLU, 1x1 conv back to C (bias), sigmoid, channel-wise rescale."""

    def __init__(self, channels: int, ratio: int):
        super().__init__()
        reduced = channels // ratio
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, reduced, kernel_size=1, bias=True)
        self.act = nn.PReLU(reduced)
        self.expand = nn.Conv2d(reduced, channels, kernel_size=1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        return x * scale


class NormalBlock(nn.Module):
    """Official `vargnet_block`: two separable convs (no activation after the
    second pointwise), SE, plus the identity, or plus a separable-conv shortcut
    when the shape changes (`dim_match=False`, used by the head), then PReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        factor: int,
        group_base: int,
        se_ratio: int,
        dim_match: bool = True,
    ):
        super().__init__()
        if dim_match and (stride != 1 or in_channels != out_channels):
            raise ValueError("an identity shortcut needs stride 1 and equal channel counts")
        self.shortcut = (
            None
            if dim_match
            else SeparableConv(
                in_channels, out_channels, stride, factor, group_base, pointwise_activation=False
            )
        )
        self.sep1 = SeparableConv(in_channels, out_channels, stride, factor, group_base)
        self.sep2 = SeparableConv(
            out_channels, out_channels, 1, factor, group_base, pointwise_activation=False
        )
        self.se = SqueezeExcite(out_channels, se_ratio)
        self.out_act = nn.PReLU(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        y = self.se(self.sep2(self.sep1(x)))
        return self.out_act(y + shortcut)


class DownsampleBlock(nn.Module):
    """Official `vargnet_branch_merge_block`: two parallel stride-2 separable
    convs summed, PReLU, a third separable conv; plus a stride-2 separable-conv
    shortcut; PReLU. No SE."""

    def __init__(self, in_channels: int, out_channels: int, factor: int, group_base: int):
        super().__init__()

        def separable(cin: int, stride: int) -> SeparableConv:
            return SeparableConv(
                cin, out_channels, stride, factor, group_base, pointwise_activation=False
            )

        self.shortcut = separable(in_channels, 2)
        self.branch1 = separable(in_channels, 2)
        self.branch2 = separable(in_channels, 2)
        self.merge_act = nn.PReLU(out_channels)
        self.sep2 = separable(out_channels, 1)
        self.out_act = nn.PReLU(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.merge_act(self.branch1(x) + self.branch2(x))
        return self.out_act(self.sep2(y) + self.shortcut(x))


class Head(nn.Module):
    """Official `add_head_block` with head_pooling=False: 3x3 stride-1 conv,
    BN, PReLU, then a stride-2 normal block with factor 1 and a separable-conv
    shortcut. 3x112x112 -> C x 56 x 56."""

    def __init__(self, channels: int, group_base: int, se_ratio: int):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn = batch_norm_2d(channels)
        self.act = nn.PReLU(channels)
        self.block = NormalBlock(
            channels, channels, stride=2, factor=1, group_base=group_base,
            se_ratio=se_ratio, dim_match=False,
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(self.act(self.bn(self.conv(x))))


class Embedding(nn.Module):
    """Official `add_emb_block`: 1x1 conv to `last_channels`, BN, PReLU;
    7x7 grouped conv (no padding) with `group_base` channels per group, BN;
    1x1 conv to last_channels/2, BN, PReLU; FC (with bias) to emb_size; BN
    (affine, the official `fc1`)."""

    def __init__(self, in_channels: int, last_channels: int, emb_size: int, group_base: int):
        super().__init__()
        half = last_channels // 2
        self.expand_conv = nn.Conv2d(in_channels, last_channels, kernel_size=1, bias=False)
        self.expand_bn = batch_norm_2d(last_channels)
        self.expand_act = nn.PReLU(last_channels)
        self.spatial_conv = nn.Conv2d(
            last_channels, last_channels, kernel_size=7,
            groups=last_channels // group_base, bias=False,
        )
        self.spatial_bn = batch_norm_2d(last_channels)
        self.pointwise_conv = nn.Conv2d(last_channels, half, kernel_size=1, bias=False)
        self.pointwise_bn = batch_norm_2d(half)
        self.pointwise_act = nn.PReLU(half)
        self.fc = nn.Linear(half, emb_size, bias=True)
        self.fc_bn = nn.BatchNorm1d(emb_size, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: Tensor) -> Tensor:
        x = self.expand_act(self.expand_bn(self.expand_conv(x)))
        x = self.spatial_bn(self.spatial_conv(x))
        x = self.pointwise_act(self.pointwise_bn(self.pointwise_conv(x)))
        return self.fc_bn(self.fc(x.flatten(1)))


class VarGFaceNet(nn.Module):
    """Raw 0..255 RGB NCHW 112x112 in, un-normalised `emb_size` embedding out."""

    def __init__(
        self,
        emb_size: int = 512,
        multiplier: float = 1.25,
        factor: int = 2,
        group_base: int = 8,
        se_ratio: int = 4,
        units: tuple[int, int, int] = (3, 7, 4),
        filter_list: tuple[int, int, int, int] = (32, 64, 128, 256),
        last_channels: int = 1024,
    ):
        super().__init__()
        self.emb_size = emb_size
        channels = [int(f * multiplier) for f in filter_list]
        self.head = Head(channels[0], group_base, se_ratio)
        # Stages 2, 3, 4 of the official code: one down-sampling block, then
        # units-1 normal blocks with identity shortcuts.
        self.stages = nn.Sequential(
            *(
                nn.Sequential(
                    DownsampleBlock(channels[i], channels[i + 1], factor, group_base),
                    *(
                        NormalBlock(
                            channels[i + 1], channels[i + 1], 1, factor, group_base, se_ratio
                        )
                        for _ in range(units[i] - 1)
                    ),
                )
                for i in range(len(units))
            )
        )
        self.embedding = Embedding(channels[-1], last_channels, emb_size, group_base)

    def forward(self, x: Tensor) -> Tensor:
        x = (x - INPUT_MEAN) * INPUT_SCALE
        return self.embedding(self.stages(self.head(x)))
