"""The VSE++ encoders: variable-length captions give the same encoding as one-at-a-time
encoding, padding never matters, outputs are unit vectors, hybridized == imperative, a frozen
backbone gets no gradient."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from gluon_dml.data.captions import pad_captions
from gluon_dml.models.vse import SpatialConvNet, get_vse_model


def _captions(rng, n=7, vocab=30):
    lengths = rng.randint(3, 12, size=n)
    lengths[0] = 12                     # the longest
    lengths[1] = 3                      # <start> w <end>
    return [[1] + list(rng.randint(4, vocab, size=l - 2)) + [2] for l in lengths]


@pytest.fixture(scope='module')
def net():
    mx.random.seed(0)
    return get_vse_model('smallconv', 30, embed_size=32, word_dim=16)


def test_batch_equals_one_at_a_time(net):
    caps = _captions(np.random.RandomState(0))
    tokens, lengths = pad_captions(caps)
    batch = net.text(mx.nd.array(tokens, dtype='int32'), mx.nd.array(lengths)).asnumpy()
    for i, c in enumerate(caps):
        alone = net.text(mx.nd.array([c], dtype='int32'), mx.nd.array([len(c)])).asnumpy()
        np.testing.assert_allclose(batch[i], alone[0], rtol=1e-5, atol=1e-6)


def test_padding_content_and_extra_padding_do_not_matter(net):
    caps = _captions(np.random.RandomState(1))
    tokens, lengths = pad_captions(caps)
    ref = net.text(mx.nd.array(tokens, dtype='int32'), mx.nd.array(lengths)).asnumpy()
    noisy = tokens.copy()
    for i, l in enumerate(lengths.astype(int)):
        noisy[i, l:] = np.random.RandomState(i).randint(4, 30, size=tokens.shape[1] - l)
    wide = np.concatenate([noisy, np.full((len(caps), 5), 7, np.int32)], axis=1)
    out = net.text(mx.nd.array(wide, dtype='int32'), mx.nd.array(lengths)).asnumpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    # and the length does matter: reading one token earlier changes the encoding
    short = net.text(mx.nd.array(tokens, dtype='int32'), mx.nd.array(lengths - 1)).asnumpy()
    assert np.abs(short - ref).max() > 1e-3


def test_hybridized_equals_imperative_and_unit_norm():
    mx.random.seed(1)
    net = get_vse_model('smallconv', 30, embed_size=32, word_dim=16)
    caps = _captions(np.random.RandomState(2))
    tokens, lengths = pad_captions(caps)
    images = mx.nd.array(np.random.RandomState(3).rand(4, 1, 28, 84))
    a_img = net.image(images).asnumpy()
    a_txt = net.text(mx.nd.array(tokens, dtype='int32'), mx.nd.array(lengths)).asnumpy()
    net.hybridize(static_alloc=True)
    b_img, b_txt = [o.asnumpy() for o in net(images, mx.nd.array(tokens, dtype='int32'),
                                             mx.nd.array(lengths))]
    np.testing.assert_allclose(b_img, a_img, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b_txt, a_txt, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(b_img, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(b_txt, axis=1), 1, rtol=1e-5)


def test_spatial_conv_net_keeps_left_from_right():
    mx.random.seed(2)
    net = SpatialConvNet()
    net.initialize()
    x = np.zeros((2, 1, 28, 84), np.float32)
    x[0, :, :, :28] = 1            # item on the left
    x[1, :, :, 56:] = 1            # the same item on the right
    out = net(mx.nd.array(x)).asnumpy()
    assert out.shape == (2, 3 * 10 * 128)
    assert np.abs(out[0] - out[1]).max() > 1e-3


def test_precomputed_features_and_frozen_backbone():
    net = get_vse_model('ignored', 20, embed_size=8, word_dim=4, precomputed=True)
    assert net.image.backbone is None
    assert net.image(mx.nd.ones((3, 50))).shape == (3, 8)
    with pytest.raises(ValueError, match='--use-pretrained'):
        get_vse_model('mobilenet0.25', 20, embed_size=8, word_dim=4)
    # a GluonCV backbone trained with --finetune gets gradients
    tuned = get_vse_model('mobilenet0.25', 20, embed_size=8, word_dim=4, finetune=True)
    assert not tuned.frozen_backbone
    assert all(p.grad_req == 'write' for p in tuned.image.backbone.collect_params().values()
               if 'running' not in p.name)
