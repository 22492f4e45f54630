"""--pool: the pooling heads in the embedding network, trained, saved and reloaded by a run."""
import json

import mxnet as mx
import numpy as np
import pytest

from gluon_dml.models import feature_channels, get_backbone, get_model, pooled_backbone

from ..helpers import run_command, run_script


@pytest.mark.parametrize('name,channels', [('smallconv', 128), ('resnet18_v1', 512),
                                           ('resnet50_v1b', 2048), ('mobilenet1.0', 1024)])
def test_feature_channels_of_the_backbones(name, channels):
    from gluon_dml.models.pooling import spatial_features
    assert feature_channels(spatial_features(get_backbone(name))) == channels


@pytest.mark.parametrize('pool,dim', [('gem', 128), ('rmac', 128), ('netvlad', 64 * 128)])
def test_pooled_backbones_replace_the_average_pooling(pool, dim):
    head = pooled_backbone(get_backbone('smallconv'), pool)
    head.initialize()
    out = head(mx.nd.random.uniform(shape=(2, 1, 28, 28)))
    assert out.shape == (2, dim)
    net = get_model('smallconv', 16, pool=pool)
    assert net(mx.nd.random.uniform(shape=(2, 1, 28, 28))).shape == (2, 16)


def test_a_gem_run_reloads_with_its_pooling(tmp_path):
    run = tmp_path / 'gem'
    run_script('train_margin.py', '--data', 'digits', '--pool', 'gem', '--epochs', '1',
               '--batches-per-epoch', '3', '--no-progress', '--save-dir', run, check=True)
    assert json.load(open(run / 'args.json'))['pool'] == 'gem'
    final = [json.loads(ln) for ln in open(run / 'log.jsonl')][-1]
    run_command('evaluate', run, '--out', tmp_path / 'e.json', check=True)
    assert json.load(open(tmp_path / 'e.json'))['recall@1'] == pytest.approx(final['recall@1'], abs=1e-9)
    params = mx.nd.load(str(run / 'model-0000.params'))
    assert any(k.endswith('_p') or 'gem' in k for k in params), sorted(params)[:5]
    p = [v.asscalar() for k, v in params.items() if 'gem' in k and v.size == 1]
    assert p and np.isfinite(p[0]) and p[0] != 3.0           # the learnable p moved from its start


def test_netvlad_starts_from_k_means_of_training_descriptors_as_the_paper_does():
    import faiss
    from gluon_dml.data import get_dataset
    from gluon_dml.methods.embedding import init_netvlad
    train = get_dataset('digits', split='train')
    net = get_model('smallconv', 16, pool='netvlad')
    spatial, vlad = net.backbone[0], net.backbone[1]
    before = vlad.centers.data().asnumpy().copy()
    init_netvlad(net, train, mx.cpu(), seed=5, images=40)
    # the same 40 images, their descriptors (every position of the 128-channel maps,
    # L2-normalised as the head normalises its input), the same seeded k-means
    pick = np.sort(np.random.RandomState(5).choice(len(train), 40, replace=False))
    with mx.autograd.pause(train_mode=False):
        fmap = spatial(mx.nd.array(train.images[pick])).asnumpy()
    desc = fmap.transpose(0, 2, 3, 1).reshape(-1, 128)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    km = faiss.Kmeans(128, 64, niter=20, seed=5)
    km.cp.min_points_per_centroid = 1
    km.train(np.ascontiguousarray(desc, dtype=np.float32))
    centers = vlad.centers.data().asnumpy()
    np.testing.assert_allclose(centers, km.centroids, atol=1e-5)
    assert not np.allclose(centers, before)
    np.testing.assert_allclose(vlad.assign.weight.data().asnumpy().reshape(64, 128),
                               200 * km.centroids, atol=1e-3)      # w_k = 2 alpha c_k, alpha 100
    # with alpha 100 the soft assignment is nearly the hard one: each descriptor's largest
    # weight is its nearest centre
    logits = desc.dot(vlad.assign.weight.data().asnumpy().reshape(64, 128).T) + \
        vlad.assign.bias.data().asnumpy()
    nearest = ((desc[:, None, :] - km.centroids[None]) ** 2).sum(-1).argmin(1)
    assert (logits.argmax(1) == nearest).mean() > 0.99
