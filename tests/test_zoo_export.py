"""Every zoo model runs a forward pass, is exported with torch.export.export, and the
exported program reproduces the eager output."""

import pytest
import torch

import edgecc.zoo as zoo

# small inputs: CIFAR variants at 32x32, ImageNet variants at 64x64
CONFIGS = {
    "resnet18": dict(stem="cifar", num_classes=10), "resnet34": dict(stem="cifar", num_classes=10),
    "resnet50": dict(), "bireal_resnet18": dict(stem="cifar", num_classes=100),
    "bireal_resnet34": dict(stem="cifar", num_classes=100), "nasb_resnet18": dict(stem="cifar", num_classes=10),
    "ua_resnet21": dict(dataset="cifar"), "ua_resnet37": dict(dataset="cifar"), "ua_resnet69": dict(dataset="cifar"),
    "ua_resnet41": dict(dataset="cifar"), "ua_resnet77": dict(dataset="cifar"), "ua_resnet149": dict(dataset="cifar"),
    "reaf_resnet50": dict(), "reaf_plus_mobilenet_v2": dict(stem="cifar", num_classes=100),
    "mobilenet_v2": dict(stem="cifar", num_classes=100), "aw_resnet50": dict(stem="cifar", num_classes=100),
    "dacnn_plain": dict(depth=18, regulators=True), "dacnn_mixed14": dict(), "dacnn_mixed18": dict(regulators=True),
    "vgg11": dict(dataset="cifar", num_classes=10), "vgg16": dict(dataset="cifar", num_classes=10),
    "vgg19": dict(dataset="cifar", num_classes=100), "mobilenet_v1": dict(stem="cifar", num_classes=10, rpw=(4, 0.5)),
}
IMAGENET_INPUT = {"resnet50", "reaf_resnet50"}

def build(name):
    torch.manual_seed(0)
    model = zoo.get(name, **CONFIGS[name]).eval()
    size = 64 if name in IMAGENET_INPUT else 32
    return model, torch.randn(2, 3, size, size)


def test_every_registered_model_has_a_config():
    assert set(zoo.names()) == set(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_forward(name):
    model, x = build(name)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, model.fc.out_features if hasattr(model, "fc") else y.shape[1])
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_torch_export(name):
    model, x = build(name)
    with torch.no_grad():
        expected = model(x)
        program = torch.export.export(model, (x,))
        torch.testing.assert_close(program.module()(x), expected)
