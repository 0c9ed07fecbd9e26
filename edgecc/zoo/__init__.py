"""Model zoo of the seed papers' architectures (PyTorch, random init, exportable with torch.export).

    edgecc.zoo.names()              -> sorted list of registered model names
    edgecc.zoo.get(name, **kw)      -> a fresh nn.Module; kw go to the family's builder
                                       (num_classes, stem/dataset, variant, widths, ...)
"""
from functools import partial

from . import aw, bireal, dacnn, mobilenet, nasb, reaf, resnet, ua, vgg

_REGISTRY = {
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "resnet50": resnet.resnet50,
    "bireal_resnet18": bireal.bireal_resnet18,
    "bireal_resnet34": bireal.bireal_resnet34,
    "nasb_resnet18": nasb.nasb_resnet18,
    **{f"ua_resnet{d}": partial(ua.ua_resnet, d) for d in sorted(ua.LAYOUTS)},
    "reaf_resnet50": reaf.reaf_resnet50,
    "reaf_plus_mobilenet_v2": reaf.reaf_plus_mobilenet_v2,
    "mobilenet_v2": reaf.mobilenet_v2,
    "aw_resnet50": aw.aw_resnet50,
    "dacnn_plain": dacnn.dacnn_plain,
    "dacnn_mixed14": dacnn.dacnn_mixed14,
    "dacnn_mixed18": dacnn.dacnn_mixed18,
    "vgg11": vgg.vgg11,
    "vgg16": vgg.vgg16,
    "vgg19": vgg.vgg19,
    "mobilenet_v1": mobilenet.mobilenet_v1,
}


def names():
    return sorted(_REGISTRY)


def get(name, **kw):
    try:
        builder = _REGISTRY[name]
    except KeyError:
        from ..errors import InputError
        raise InputError(f"unknown zoo model {name!r}; available: {', '.join(names())}") from None
    return builder(**kw)
