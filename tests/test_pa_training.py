"""PA fine-tuning on the real sklearn digits keeps accuracy far above chance (10%), and
the bundled trained state_dicts (written by benchmarks/pa_digits.py) load and classify."""
import pytest
import torch

from edgecc.compiler.quant.calibration import calibrate, constrain_
from edgecc.compiler.quant.convert import binary_layers, pa_convert
from edgecc.errors import InputError
from edgecc.zoo import digits as D


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    return D.load_digits_split()


def test_pa_finetune_tiny_model(data):
    xtr, ytr, xte, yte = data
    torch.manual_seed(0)
    fmodel = D.train(D.DigitsResNet(width=8), xtr, ytr, epochs=6, lr=5e-3, seed=0)
    float_acc = D.accuracy(fmodel, xte, yte)
    assert float_acc > 0.85
    q = pa_convert(fmodel, 4, 5)
    calibrate(q, [xtr[:256]])
    D.train(q, xtr, ytr, epochs=4, lr=2e-3, seed=0, after_step=constrain_)
    assert D.accuracy(q, xte, yte) > 0.75
    for layer in binary_layers(q).values():           # endpoints stayed ordered and positive
        v = layer.aq.v.detach()
        assert v[0] > 0 and bool((v[1:] > v[:-1]).all())


@pytest.mark.parametrize("kind", ["float", "pa45", "pa23"])
def test_bundled_models(data, kind):
    path = D.bundled_path(kind)
    if not path.exists():
        pytest.skip(f"{path} not generated yet (python -m benchmarks.pa_digits)")
    assert path.stat().st_size < 1 << 20
    model = D.load_bundled(kind)
    assert not model.training
    _, _, xte, yte = data
    assert D.accuracy(model, xte, yte) > 0.9


def test_bundled_kind_is_checked():
    with pytest.raises(InputError, match="'pa99'"):
        D.load_bundled("pa99")
