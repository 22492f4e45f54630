"""Every registered loss is reachable from the command line with its paper defaults, hybridizes,
and has its own parameters trained and checkpointed."""
import os

import mxnet as mx
import numpy as np
import pytest

from gluon_dml import cli
from gluon_dml.engine import CheckpointManager
from gluon_dml.losses import get_loss, list_losses
from gluon_dml.losses.factory import loss_family

from ..helpers import loss_from_args, parse, run_script

EXPECTED = {'arcface', 'binomial', 'contrastive', 'cosface', 'lifted', 'margin', 'multi_similarity',
            'nca', 'npair', 'proxy_anchor', 'proxy_nca', 'quadruplet', 'ranked_list', 'triplet',
            'triplet_center'}


def _args(*argv):
    return parse('margin', '--data', 'digits', *argv)


def test_every_loss_of_the_issue_is_registered():
    assert EXPECTED <= set(list_losses())


@pytest.mark.parametrize('name', sorted(n for n in list_losses() if loss_family(n) == 'embedding'))
def test_build_from_flags_and_train_step_hybridized(name):
    args = _args('--loss', name, '--batch-k', '4', '--batch-size', '16')
    loss = loss_from_args(args, num_classes=4, embed_dim=8)
    assert isinstance(args.loss_options, dict) and args.loss_options   # recorded in args.json
    loss.initialize()
    loss.hybridize()
    rng = np.random.RandomState(0)
    x = mx.nd.array(rng.randn(16, 8))
    y = mx.nd.array(np.repeat(np.arange(4), 4))
    x.attach_grad()
    mx.random.seed(0)
    with mx.autograd.record():
        out = loss(x, y)
    out.backward()
    assert out.shape == (1,) and np.isfinite(out.asscalar())
    assert np.all(np.isfinite(x.grad.asnumpy())) and np.abs(x.grad.asnumpy()).sum() > 0


def test_loss_options_from_the_command_line():
    args = _args('--loss', 'triplet', '--mining', 'semihard', '--margin', '0.3')
    loss = loss_from_args(args, 4, 8)
    assert args.loss_options['mining'] == 'semihard' and args.loss_options['margin'] == 0.3
    assert type(loss).__name__ == 'TripletLoss'
    args = _args('--loss', 'multi_similarity')
    loss_from_args(args, 4, 8)
    assert (args.loss_options['alpha'], args.loss_options['beta'], args.loss_options['lam'],
            args.loss_options['epsilon']) == (2.0, 50.0, 0.5, 0.1)
    args = _args('--loss', 'npair')
    loss_from_args(args, 4, 8)
    assert args.loss_options['l2_reg'] == 0.002
    with pytest.raises(cli.UserError, match='--beta-per-class is an option of the margin loss'):
        _args('--loss', 'triplet', '--beta-per-class')
    with pytest.raises(ValueError, match='Unknown loss'):
        get_loss('no_such_loss')


def test_loss_parameters_are_trained_and_checkpointed(tmp_path):
    run_script('train_margin.py', '--data', 'digits', '--loss', 'proxy_anchor', '--epochs', '2', '--batches-per-epoch',
               '5', '--no-progress', '--save-dir', tmp_path, check=True)
    mgr = CheckpointManager(str(tmp_path))
    names = sorted(n for n in os.listdir(mgr.dir) if n.startswith('e'))
    assert names == ['e0002-b00000', 'e0003-b00000']
    p1 = mx.nd.load(os.path.join(mgr.dir, names[0], 'loss.params'))
    p2 = mx.nd.load(os.path.join(mgr.dir, names[1], 'loss.params'))
    (key,) = [k for k in p1 if 'proxies' in k]
    assert p1[key].shape == (5, 64)
    assert np.abs(p1[key].asnumpy() - p2[key].asnumpy()).max() > 1e-4   # trained between epochs
    assert os.path.exists(os.path.join(mgr.dir, names[1], 'loss_trainer.states'))
