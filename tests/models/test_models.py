"""Backbones and the embedding network."""
import mxnet as mx
import numpy as np
import pytest

from gluon_dml.models import EmbeddingNet, SmallConvNet, get_backbone, get_model


@pytest.mark.parametrize('shape', [(5, 1, 28, 28), (5, 1, 8, 8)])
def test_smallconv_embeddings_are_unit_vectors(shape):
    net = get_model('smallconv', 64)
    net.hybridize()
    z = net(mx.nd.random.uniform(shape=shape)).asnumpy()
    assert z.shape == (5, 64)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)


def test_smallconv_architecture():
    net = SmallConvNet()
    convs = [b for b in net._children.values() if isinstance(b, mx.gluon.nn.Conv2D)]
    pools = [b for b in net._children.values() if isinstance(b, mx.gluon.nn.MaxPool2D)]
    bns = [b for b in net._children.values() if isinstance(b, mx.gluon.nn.BatchNorm)]
    assert [c._channels for c in convs] == [32, 64, 128]
    assert [c._kwargs['kernel'] for c in convs] == [(3, 3)] * 3
    assert len(pools) == 2 and len(bns) == 3


def _relu_then_pool(channels, pool_last):
    """The small conv net in the textbook order: conv, batch norm, ReLU, then the pooling."""
    nn = mx.gluon.nn
    seq = nn.HybridSequential()
    with seq.name_scope():
        for i, c in enumerate(channels):
            seq.add(nn.Conv2D(c, kernel_size=3, padding=1, use_bias=False), nn.BatchNorm(),
                    nn.Activation('relu'))
            if i < len(channels) - 1 or pool_last:
                seq.add(nn.MaxPool2D(pool_size=2, strides=2))
        seq.add(nn.GlobalAvgPool2D(), nn.Flatten())
    return seq


def _train_step(net, x):
    """Outputs, gradients and the batch norms' running statistics after one training pass."""
    x = x.copy()
    x.attach_grad()
    with mx.autograd.record():
        out = net(x)
        loss = (out * mx.nd.arange(out.shape[1]).reshape((1, -1))).sum()   # unequal head gradients
    loss.backward()
    params = net.collect_params()
    grads = [p.grad().asnumpy() for p in params.values() if p.grad_req != 'null']
    stats = [p.data().asnumpy() for p in params.values() if p.grad_req == 'null']
    return out.asnumpy(), x.grad.asnumpy(), grads, stats


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('channels,pool_last', [((32, 64, 128), False), ((16, 16, 16, 16), True)])
def test_smallconv_pools_before_relu_and_is_the_textbook_net(tmp_path, channels, pool_last,
                                                             hybridize):
    """Pooling before the ReLU is the conv, batch norm, ReLU, pooling net: a parameter file of the
    textbook order loads into SmallConvNet (the same child indices), and outputs, input and
    weight gradients and batch-norm statistics agree, in training and in inference mode."""
    net = SmallConvNet(channels=channels, pool_last=pool_last)
    kinds = [type(b).__name__ for b in net._children.values()]
    assert kinds[:4] == ['Conv2D', 'BatchNorm', 'MaxPool2D', 'Activation']
    mx.random.seed(5)
    ref = _relu_then_pool(channels, pool_last)
    ref.initialize(mx.init.Xavier(magnitude=2))
    x = mx.nd.random.normal(shape=(6, 1, 28, 28))
    ref(x)
    ref.save_parameters(str(tmp_path / 'textbook.params'))
    net.load_parameters(str(tmp_path / 'textbook.params'))
    if hybridize:
        net.hybridize(static_alloc=True)
        ref.hybridize(static_alloc=True)
    got, want = _train_step(net, x), _train_step(ref, x)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-7)
    assert len(got[2]) == len(want[2]) == 3 * len(channels)   # conv weight, gamma, beta
    for g, w in zip(got[2] + got[3], want[2] + want[3]):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
    assert np.abs(got[1]).max() > 0 and all(np.abs(g).max() > 0 for g in got[2])
    np.testing.assert_allclose(net(x).asnumpy(), ref(x).asnumpy(), rtol=1e-5, atol=1e-6)


def test_unnormalised_option():
    net = get_model('smallconv', 16, normalize=False)
    z = net(mx.nd.random.uniform(shape=(4, 1, 28, 28))).asnumpy()
    assert not np.allclose(np.linalg.norm(z, axis=1), 1.0)


@pytest.mark.parametrize('name', ['resnet18_v1', 'resnet18_v1b', 'mobilenetv2_0.25'])
def test_gluoncv_backbones(name):
    net = get_model(name, 32)
    net.hybridize()
    with mx.autograd.train_mode():     # batch statistics: deep untrained nets vanish in inference mode
        z = net(mx.nd.random.uniform(shape=(2, 3, 64, 64))).asnumpy()
    assert z.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)


def test_backbone_errors():
    with pytest.raises(ValueError, match='Unknown backbone'):
        get_backbone('resnet_does_not_exist')
    with pytest.raises(ValueError, match='no pretrained weights'):
        get_backbone('smallconv', pretrained=True)
    assert isinstance(EmbeddingNet(SmallConvNet(), 8), mx.gluon.HybridBlock)


def _weights(net):
    net(mx.nd.random.uniform(shape=(2, 1, 28, 28)))           # finish the deferred initialisation
    return {n: p.data().asnumpy() for n, p in net.collect_params().items()
            if n.endswith('weight') and p.data().ndim > 1}


def test_fan_in_initialisation_is_uniform_within_one_over_sqrt_fan_in():
    mx.random.seed(3)
    weights = _weights(get_model('smallconv', 64, init_name='fan-in'))
    assert len(weights) == 4                                  # three convolutions and the Dense
    for name, w in weights.items():
        bound = 1.0 / np.sqrt(np.prod(w.shape[1:]))
        assert np.abs(w).max() <= bound, name
        assert np.abs(w).max() > 0.9 * bound, name            # spread over the whole interval
        assert abs(np.mean(np.abs(w)) - bound / 2) < 0.1 * bound, name   # uniform: mean |w| = b/2


def test_xavier_default_differs_from_fan_in_and_unknown_names_fail():
    mx.random.seed(3)
    xavier = _weights(get_model('smallconv', 64))
    dense = [w for n, w in xavier.items() if 'dense' in n][0]
    # Xavier magnitude 3 over (fan_in + fan_out) / 2 = 96: bound sqrt(3 / 96)
    assert np.sqrt(3 / 96.0) * 0.9 < np.abs(dense).max() <= np.sqrt(3 / 96.0)
    with pytest.raises(ValueError, match='Unknown initialisation'):
        get_model('smallconv', 8, init_name='orthogonal')
