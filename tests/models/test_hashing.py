"""The HashNet head: tanh(scale * Dense(bits)), the continuation schedule, sign codes."""
import math

import mxnet as mx
import numpy as np
import pytest

from gluon_dml.models.hashing import ScaleSchedule, binarize, get_hash_model


def test_schedule_values_by_hand():
    s = ScaleSchedule()                           # init 1, gamma 0.005, power 0.5, every 200
    assert s(0) == 1.0 and s(199) == 1.0
    assert s(200) == pytest.approx(math.sqrt(2.0))
    assert s(1000) == pytest.approx(math.sqrt(6.0))
    assert ScaleSchedule(2.0, 0.1, 1.0, 1)(10) == pytest.approx(2.0 * 2.0)
    with pytest.raises(ValueError, match='scale schedule'):
        ScaleSchedule(step_size=0)


def test_schedule_stops_at_float32s_largest_number_and_refuses_non_finite_settings():
    # --scale-power 1e6 --scale-step 1 ended in "unexpected OverflowError: math range error"
    # at the first step; --init-scale 1e308 (inf in the float32 head) or nan in a loss of NaN
    s = ScaleSchedule(1.0, 0.005, 1e6, 1)
    assert s(0) == 1.0 and s(1) == ScaleSchedule.MAX_SCALE == float(np.finfo(np.float32).max)
    assert ScaleSchedule(1e38, 1.0, 2.0, 1)(10) == ScaleSchedule.MAX_SCALE
    for bad in (dict(init_scale=float('nan')), dict(gamma=float('inf')), dict(power=float('nan')),
                dict(init_scale=1e308)):
        with pytest.raises(ValueError, match='scale schedule needs finite numbers'):
            ScaleSchedule(**bad)


def test_head_is_tanh_of_scaled_dense_and_scale_reaches_the_hybridized_graph():
    net = get_hash_model('smallconv', 12)
    x = mx.nd.array(np.random.RandomState(0).rand(3, 1, 8, 8))
    z = net.hash(net.backbone(x)).asnumpy()
    for hybrid in (False, True):
        if hybrid:
            net.hybridize(static_alloc=True)
        for scale in (1.0, 4.5):
            net.set_scale(scale)
            np.testing.assert_allclose(net(x).asnumpy(), np.tanh(scale * z), rtol=1e-5, atol=1e-6)
    assert net.get_scale() == 4.5
    assert net.scale.grad_req == 'null'
    # the codes are the sign of the pre-activation, whatever the scale
    np.testing.assert_array_equal(binarize(net(x).asnumpy()), np.where(z >= 0, 1, -1))


def test_scale_is_saved_with_the_parameters(tmp_path):
    net = get_hash_model('smallconv', 8)
    net(mx.nd.zeros((1, 1, 8, 8)))                # deferred initialisation of the conv layers
    net.set_scale(3.25)
    path = str(tmp_path / 'net.params')
    net.save_parameters(path)
    other = get_hash_model('smallconv', 8)
    other.load_parameters(path)
    assert other.get_scale() == 3.25


def test_bits_must_be_positive():
    with pytest.raises(ValueError, match='--bits'):
        get_hash_model('smallconv', 0)
