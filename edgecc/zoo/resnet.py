"""ResNet-18/34/50 written from the paper (He et al. 2016), parameter names as in torchvision
so a torchvision state_dict loads directly (used as an independent reference in the tests).

variant="v1":   stride on the first 1x1 of a bottleneck (the thesis' FLOPs convention, 3.86 GMACs).
variant="v1.5": stride on the 3x3 (torchvision, the 3DRF paper).
stem="imagenet": 7x7/2 conv + 3x3/2 max pool.  stem="cifar": 3x3/1 conv, no max pool.
"""
from torch import nn

STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}


def conv3x3(cin, cout, stride=1, groups=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


def projection(cin, cout, stride):
    """Shortcut 1x1 conv + BN when the shape changes (option B)."""
    return nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


def make_stem(stem, width=64):
    if stem == "imagenet":
        return nn.Sequential(nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(width),
                             nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1))
    if stem == "cifar":
        return nn.Sequential(nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(width),
                             nn.ReLU(inplace=True))
    raise ValueError(f"unknown stem {stem!r}: expected 'imagenet' or 'cifar'")


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, variant="v1"):
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = projection(cin, planes, stride) if stride != 1 or cin != planes else None

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, variant="v1", middle_conv=None, mid_out=None, out=None):
        """planes: width of the first 1x1; middle_conv(cin, cout, stride) builds the 3x3 (REAF and
        AW variants replace it); mid_out: the 3x3's output width (REAF's C' may differ from C);
        out: block output width (default 4 * planes)."""
        super().__init__()
        if variant not in ("v1", "v1.5"):
            raise ValueError(f"unknown ResNet variant {variant!r}: expected 'v1' or 'v1.5'")
        s1, s3 = (stride, 1) if variant == "v1" else (1, stride)
        mid_out = planes if mid_out is None else mid_out
        out = planes * self.expansion if out is None else out
        self.conv1 = conv1x1(cin, planes, s1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = (middle_conv or conv3x3)(planes, mid_out, s3)
        self.bn2 = nn.BatchNorm2d(mid_out)
        self.conv3 = conv1x1(mid_out, out)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = projection(cin, out, stride) if stride != 1 or cin != out else None

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Generic ResNet: `make_block(cin, stage_index, stride) -> (module, cout)` builds every block."""

    def __init__(self, stage_blocks, make_block, num_classes=1000, stem="imagenet", stem_width=64):
        super().__init__()
        stem_layers = make_stem(stem, stem_width)
        # flatten the stem into torchvision's attribute names
        self.conv1, self.bn1, self.relu = stem_layers[0], stem_layers[1], stem_layers[2]
        self.maxpool = stem_layers[3] if stem == "imagenet" else nn.Identity()
        cin = stem_width
        for s, n in enumerate(stage_blocks):
            blocks = []
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                block, cin = make_block(cin, s, stride)
                blocks.append(block)
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.num_stages = len(stage_blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for s in range(self.num_stages):
            x = getattr(self, f"layer{s + 1}")(x)
        return self.fc(self.avgpool(x).flatten(1))


def resnet(depth, num_classes=1000, stem="imagenet", variant="v1"):
    if depth not in STAGE_BLOCKS:
        raise ValueError(f"unsupported ResNet depth {depth}: expected one of {sorted(STAGE_BLOCKS)}")
    planes = (64, 128, 256, 512)
    block_cls = Bottleneck if depth >= 50 else BasicBlock

    def make_block(cin, s, stride):
        block = block_cls(cin, planes[s], stride, variant=variant)
        return block, planes[s] * block_cls.expansion

    return ResNet(STAGE_BLOCKS[depth], make_block, num_classes, stem)


def resnet18(**kw):
    return resnet(18, **kw)


def resnet34(**kw):
    return resnet(34, **kw)


def resnet50(**kw):
    return resnet(50, **kw)
