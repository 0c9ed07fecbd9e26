"""Parameter counts and binary cost-model numbers of the zoo against the seed papers.

Convention unless stated: every nn.Parameter counted once (conv/linear weights, biases, BN
weight and bias; BN running statistics are buffers, not counted) - torchvision's convention,
in which ResNet-50 has 25,557,032 parameters.
"""
from math import isclose

import pytest

import edgecc.zoo as zoo
from edgecc.zoo.cost import binary_cost


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def n_weights(model):
    """Conv and linear weights only (no BN, no biases)."""
    return sum(p.numel() for p in model.parameters() if p.dim() > 1)


@pytest.mark.parametrize("name,expected", [("resnet18", 11_689_512), ("resnet34", 21_797_672),
                                           ("resnet50", 25_557_032)])
def test_resnet_counts(name, expected):
    assert n_params(zoo.get(name)) == expected
    assert n_params(zoo.get(name, variant="v1.5")) == expected  # stride placement moves no weights


def test_reaf_resnet50_88_70_8_4_70():
    # REAF paper Table 5 / thesis: 24.85M, guide: 24.848M. Independent count: ResNet-50 with
    # bottleneck widths 88k -> 3x3 REAF (each of 70k outputs reads 4 of 8 groups of 11k) -> 70k.
    m = zoo.get("reaf_resnet50")
    assert n_params(m) == 24_848_468
    assert round(n_params(m) / 1e6, 3) == 24.848


def test_reaf_resnet50_72_4_3_4_paper_inconsistency():
    # REAF paper Table 1 and Table 5 say 26.11M for REAF-ResNet50 (C=72, 4-3-4). The architecture
    # as tabulated (1x1 -> 72k, 3x3 4-3-4 reading 54k of 72k channels, 1x1 -> 256k) has 26.154M
    # (26.10M even without BN), so the paper's figure cannot be reproduced; we assert what the
    # architecture gives.
    m = zoo.get("reaf_resnet50", width=72, out_width=72, g_i=4, g_m=3)
    assert n_params(m) == 26_154_136


def test_aw_resnet50():
    # thesis Table 7.2: 25.72M; eq 7.17 per bottleneck: 2C^2/r + 2C(1/r + 1), r = 16.
    extra = sum(n * (2 * c * c // 16 + 2 * c // 16 + 2 * c) for c, n in ((64, 3), (128, 4), (256, 6), (512, 3)))
    assert extra == 165_208  # the thesis' "adds 0.165M"
    m = zoo.get("aw_resnet50")
    assert n_params(m) == 25_557_032 + extra
    assert round(n_params(m) / 1e6, 2) == 25.72


def test_mobilenet_v2_and_reaf_plus():
    assert n_params(zoo.get("mobilenet_v2")) == 3_504_872  # Sandler et al.; REAF paper 3.50M
    plus = zoo.get("reaf_plus_mobilenet_v2")  # g_O = 2: one extra BN (2 x hidden) per block
    assert round(n_params(plus) / 1e6, 2) == 3.52  # REAF paper Table 7


def test_dacnn_plain():
    # DACNN paper Table 2: 0.164M for shallow plain DACNNs (3 to 9 layers). DACNN-3 = conv 3->128,
    # one shared 128x128 3x3 layer, FC 128->100: 3456 + 147456 + 12900 + 2 BN x 256 = 164,324.
    m3 = zoo.get("dacnn_plain", depth=3)
    assert n_params(m3) == 164_324
    # Depth adds only per-layer BN parameters: the shared weight is stored once.
    for depth in (5, 9, 14, 18, 34):
        assert n_params(zoo.get("dacnn_plain", depth=depth)) - n_params(m3) == 256 * (depth - 3)
    # Paper inconsistency: Table 2 grows by ~128 per layer (0.164 at 9 layers, 0.168 at 34), i.e.
    # it counts one BN parameter per channel, but the text says each layer has its own (affine) BN.
    # With BN weight and bias, DACNN-34 has 0.172M.
    assert round(n_params(zoo.get("dacnn_plain", depth=34)) / 1e6, 3) == 0.172


def test_dacnn_mixed():
    # DACNN paper Table 3/6: Mixed DACNN-14 4.73M, Mixed DACNN-18 4.90M. Convention that
    # matches 4.73: conv and FC weights only (BN and biases not counted).
    m14 = zoo.get("dacnn_mixed14")
    assert n_weights(m14) == 4_734_656
    assert round(n_weights(m14) / 1e6, 2) == 4.73
    # Mixed-18 (ResNet-18 template: 4 shared + 3 transition 3x3 + 3 shortcut 1x1 + stem + FC)
    # gives 4.907M weights, 4.916M with BN: the paper's 4.90 is 0.15% below what its own
    # description gives (its ResNet-18 baseline, 11.13M, is likewise below the usual 11.22M).
    m18 = zoo.get("dacnn_mixed18")
    assert n_weights(m18) == 4_906_688
    assert isclose(n_weights(m18) / 1e6, 4.90, rel_tol=0.002)


def test_vgg_and_mobilenet_v1_counts():
    # 3DRF paper Table 3: VGG16 CIFAR-10 14.73M, CIFAR-100 34.02M, ImageNet 138.36M;
    # MobileNet CIFAR-10 3.22M, ImageNet 4.23M (CIFAR-100 3.32M: ours 3.31M, see below).
    assert n_params(zoo.get("vgg16")) == 138_357_544
    assert round(n_params(zoo.get("vgg16", dataset="cifar", num_classes=10)) / 1e6, 2) == 14.73
    assert round(n_params(zoo.get("vgg16", dataset="cifar", num_classes=100, classifier="three_fc")) / 1e6, 2) == 34.02
    assert n_params(zoo.get("mobilenet_v1")) == 4_231_976
    assert round(n_params(zoo.get("mobilenet_v1", stem="cifar", num_classes=10)) / 1e6, 2) == 3.22
    # 3.22M (10 classes) + 90 x 1025 FC parameters = 3.309M; the paper's 3.32M is inconsistent with its 3.22M.
    assert n_params(zoo.get("mobilenet_v1", stem="cifar", num_classes=100)) == 3_217_226 + 90 * 1025
    assert n_params(zoo.get("vgg11")) == 132_863_336
    assert n_params(zoo.get("vgg19")) == 143_667_240


# Thesis Table 5.4 (ImageNet, 224x224) and 5.5 (CIFAR-100, 32x32): storage Mbit, FLOPs
TABLE_5_4 = [("bireal_resnet18", {}, 33.18, 1.64e8), ("bireal_resnet34", {}, 43.28, 1.93e8),
             ("ua_resnet21", {}, 32.63, 1.46e8), ("ua_resnet37", {}, 32.24, 1.28e8),
             ("ua_resnet69", {}, 32.16, 1.14e8), ("ua_resnet41", {}, 42.61, 1.64e8),
             ("ua_resnet77", {}, 41.53, 1.44e8)]
TABLE_5_5 = [("bireal_resnet18", dict(stem="cifar", num_classes=100), 18.18, 1.67e7),
             ("ua_resnet21", dict(dataset="cifar"), 18.07, 1.53e7), ("ua_resnet37", dict(dataset="cifar"), 17.57, 1.42e7),
             ("ua_resnet69", dict(dataset="cifar"), 17.63, 1.38e7), ("ua_resnet41", dict(dataset="cifar"), 27.64, 2.28e7),
             ("ua_resnet77", dict(dataset="cifar"), 27.94, 2.24e7), ("ua_resnet149", dict(dataset="cifar"), 26.35, 2.08e7)]




@pytest.mark.parametrize("name,kw,mbit,flops", [
    pytest.param(*row) for row in TABLE_5_4 + TABLE_5_5])
def test_binary_cost_tables_5_4_5_5(name, kw, mbit, flops):
    # cost model: 32 bits per full-precision weight (first conv, FC, 1x1 downsample/transition),
    # 1 bit per binary weight, BN and FC bias not counted; FLOPs = fp MACs + binary MACs / 64.
    size = (3, 32, 32) if kw else (3, 224, 224)
    cost = binary_cost(zoo.get(name, **kw), size)
    assert round(cost["storage_bits"] / 1e6, 2) == mbit
    assert f"{cost['flops']:.2e}" == f"{flops:.2e}"


def test_ua_depths_and_conv_counts():
    for depth in (21, 37, 69, 41, 77, 149):
        m = zoo.get(f"ua_resnet{depth}", dataset="cifar")
        assert m.depth == depth
        columns, blocks = {21: (3, 4), 37: (4, 4), 69: (5, 4), 41: (3, 9), 77: (4, 9), 149: (5, 9)}[depth]
        n_binary = sum(1 for mod in m.modules() if type(mod).__name__ == "BinaryConv2d")
        assert n_binary == blocks * (2 ** columns - 1)


def test_registry_rejects_unknown_name():
    from edgecc.errors import InputError
    with pytest.raises(InputError, match="resnet50"):
        zoo.get("resnet51")
