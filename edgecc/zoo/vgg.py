"""VGG-11/16/19 (Simonyan & Zisserman 2015), ImageNet and CIFAR variants.

ImageNet: no BN (torchvision-style default), 7x7 adaptive pool, 4096-4096-classes classifier.
CIFAR: BN after every conv, classifier "one_fc" (512 -> classes, the 3DRF paper's CIFAR-10
VGG16 with 14.73M) or "three_fc" (512 -> 4096 -> 4096 -> classes, its CIFAR-100 VGG16 with
34.02M). `config` overrides the layer list (ints = 3x3 conv widths, "M" = 2x2 max pool).
"""
from torch import nn

CONFIGS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"),
}


def make_features(config, batch_norm):
    layers, cin = [], 3
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers.append(nn.Conv2d(cin, item, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(item))
        layers.append(nn.ReLU(inplace=True))
        cin = item
    return nn.Sequential(*layers), cin


class VGG(nn.Module):
    def __init__(self, depth=16, num_classes=1000, dataset="imagenet", batch_norm=None, classifier=None,
                 config=None):
        super().__init__()
        if config is None:
            if depth not in CONFIGS:
                raise ValueError(f"unsupported VGG depth {depth}: expected one of {sorted(CONFIGS)}")
            config = CONFIGS[depth]
        if dataset not in ("imagenet", "cifar"):
            raise ValueError(f"unknown dataset {dataset!r}: expected 'imagenet' or 'cifar'")
        imagenet = dataset == "imagenet"
        batch_norm = (not imagenet) if batch_norm is None else batch_norm
        classifier = ("three_fc" if imagenet else "one_fc") if classifier is None else classifier
        self.features, c = make_features(config, batch_norm)
        self.pool = nn.AdaptiveAvgPool2d(7 if imagenet else 1)
        flat = c * (49 if imagenet else 1)
        if classifier == "one_fc":
            self.classifier = nn.Linear(flat, num_classes)
        elif classifier == "three_fc":
            self.classifier = nn.Sequential(nn.Linear(flat, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                                            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                                            nn.Linear(4096, num_classes))
        else:
            raise ValueError(f"unknown VGG classifier {classifier!r}: expected 'one_fc' or 'three_fc'")
        self.config = tuple(config)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def vgg11(**kw):
    return VGG(11, **kw)


def vgg16(**kw):
    return VGG(16, **kw)


def vgg19(**kw):
    return VGG(19, **kw)
