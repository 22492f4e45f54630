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
