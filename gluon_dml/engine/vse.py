"""The composition of ``train_vse.py``: VSE++ image-caption joint embedding (Faghri, Fleet,
Kiros, Fidler, BMVC 2018).

Data (Karpathy splits or precomputed features, :mod:`gluon_dml.data.captions`), the two encoders
(:mod:`gluon_dml.models.vse`), the VSE0 / VSE++ loss (:mod:`gluon_dml.losses.vse`) and the
cross-modal metrics (:mod:`gluon_dml.metrics.crossmodal`) go through the shared
:class:`~gluon_dml.engine.loop.Engine`; :class:`VSEEngine` only changes the training step (two
inputs, gradient clipping at 2.0 as in the paper's recipe, a frozen backbone run in inference
mode) and the exported model (one symbol per encoder). The best epoch is chosen by the
validation rsum; the test split is evaluated once, with the best parameters, at the end.
"""
import json
import math
import os

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from .. import cli
from .checkpoint import atomic_write_text
from .context import get_contexts, seed_everything
from .logger import Logger
from .loop import Engine, _progress

__all__ = ['run_vse', 'VSEEngine', 'ShuffleBatchSampler', 'CrossModalEvaluator', 'embed_images',
           'embed_captions', 'load_vse_run', 'vse_defaults', 'data_root', 'image_transform',
           'evaluate_vse_run']

_FASHION3 = 'fashion3'


def vse_defaults(data):
    """The settings of the VSE++ paper (ResNet-152, 1024-d, batch 128, Adam 2e-4, 30 epochs with
    the rate divided by 10 after 15, margin 0.2, clipping 2.0); fashion3 trains the small conv
    net from scratch with a smaller joint space, sized for a CPU."""
    base = dict(model='resnet152_v1', embed_dim=1024, batch_size=128, batch_k=1, epochs=30,
                optimizer='adam', lr=2e-4, wd=0.0, steps='15', factor=0.1, eval_batch_size=256,
                finetune=False, max_violation=True, warmup_epochs=0)
    if data == _FASHION3:
        base.update(model='smallconv', finetune=True, embed_dim=256, epochs=6, steps='4', lr=1e-3,
                    batches_per_epoch=250, warmup_epochs=1)
    return base


class ShuffleBatchSampler(object):
    """Batches of ``batch_size`` distinct indices of a shuffled permutation of ``0..n-1`` (the
    last incomplete batch is dropped); ``num_batches`` caps an epoch. The batches of an epoch
    depend only on ``(seed, epoch)``."""

    def __init__(self, n, batch_size, seed=0, num_batches=None):
        if n < batch_size:
            raise ValueError('The training split has %d captions, fewer than --batch-size %d.'
                             % (n, batch_size))
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.num_batches = min(num_batches or n // batch_size, n // batch_size)
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        perm = np.random.RandomState((self.seed * 7919 + self.epoch) % (2 ** 32)).permutation(self.n)
        for b in range(self.num_batches):
            yield perm[b * self.batch_size:(b + 1) * self.batch_size].tolist()

    def __len__(self):
        return self.num_batches


class VSEEngine(Engine):
    """The shared loop with the VSE step: ``data`` is the image batch, ``label`` the padded
    captions and their lengths (cut to the batch's longest caption); the loss takes the two
    embeddings; the gradients' global norm is clipped to ``grad_clip`` before the update."""

    def __init__(self, *args, grad_clip=2.0, warmup_epochs=0, **kwargs):
        super().__init__(*args, **kwargs)
        self.grad_clip, self.warmup_epochs = grad_clip, int(warmup_epochs)
        self._epoch = 1
        self.warmup_loss = None
        if self.warmup_epochs and getattr(self.loss, 'max_violation', False):
            from ..losses.vse import VSELoss
            self.warmup_loss = VSELoss(self.loss.margin, max_violation=False)
            if self.hybridize:
                self.warmup_loss.hybridize(static_alloc=True)

    def _train_epoch(self, epoch, first_batch):
        self._epoch = epoch
        return super()._train_epoch(epoch, first_batch)

    def current_loss(self):
        """The loss of this epoch: VSE0's sum during the ``warmup_epochs`` first epochs of a
        VSE++ run (the warm-up of VSE-infinity, Chen et al. CVPR 2021, against the collapse of
        max-violation training from scratch), else the run's loss."""
        if self.warmup_loss is not None and self._epoch <= self.warmup_epochs:
            return self.warmup_loss
        return self.loss

    def _embed_batch(self, images, tokens, lengths):
        if getattr(self.net, 'frozen_backbone', False):
            feats = self.net.image.backbone(images)          # inference mode, no gradient
            with autograd.record():
                return self.net.image.project(feats), self.net.text(tokens, lengths)
        with autograd.record():
            return self.net.image(images), self.net.text(tokens, lengths)

    def _step(self, data, label):
        tokens, lengths = label
        tokens = tokens[:, :int(lengths.max().asscalar())]
        parts = [gluon.utils.split_and_load(x, self.ctx, even_split=False)
                 for x in (data, tokens, lengths)]
        ims, caps = [], []
        for x, t, l in zip(*parts):
            im, cap = self._embed_batch(x, t, l)
            ims.append(im.as_in_context(self.ctx[0]))
            caps.append(cap.as_in_context(self.ctx[0]))
        with autograd.record():
            im = ims[0] if len(ims) == 1 else mx.nd.concat(*ims, dim=0)
            cap = caps[0] if len(caps) == 1 else mx.nd.concat(*caps, dim=0)
            loss = self.current_loss()(im, cap)
        loss.backward()
        value = float(loss.mean().asscalar())
        if not math.isfinite(value):
            return value
        if self.grad_clip:
            for c in self.ctx:
                grads = [p.grad(c) for p in self.net.collect_params().values()
                         if p.grad_req != 'null']
                gluon.utils.clip_global_norm(grads, self.grad_clip, check_isfinite=False)
        self.trainer.step(1)
        return value

    def _finish(self):
        """Export the best encoders for deployment: PREFIX-image-symbol.json / -0000.params and
        PREFIX-text-symbol.json / -0000.params."""
        best = os.path.join(self.run_dir, 'best.params')
        if not self.hybridize or not os.path.exists(best):
            return
        self.net.load_parameters(best, ctx=self.ctx)
        x = self.train_set[0][0]
        self.net.image(mx.nd.zeros((1,) + tuple(x.shape), ctx=self.ctx[0]))
        self.net.text(mx.nd.ones((1, 2), ctx=self.ctx[0]), mx.nd.array([2], ctx=self.ctx[0]))
        for part in ('image', 'text'):
            getattr(self.net, part).export(os.path.join(self.run_dir, '%s-%s' % (self.export_prefix, part)))
        if self.logger:
            self.logger.info('Exported %s-image-* and %s-text-* (symbol + params) in %s'
                             % (self.export_prefix, self.export_prefix, self.run_dir))


# ---------------------------------------------------------------------------------------------
# embedding and evaluation
# ---------------------------------------------------------------------------------------------

def embed_images(net, cset, ctx, batch_size=256, progress=False):
    """(N, D) float32 embeddings of the split's images, in order."""
    ctx = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    out, n = [], cset.num_images
    for a in _progress(range(0, n, batch_size), (n + batch_size - 1) // batch_size, 'images', progress):
        batch = np.stack([cset.image(i) for i in range(a, min(n, a + batch_size))])
        out.append(net.image(mx.nd.array(batch, ctx=ctx[0])).asnumpy())
    return np.concatenate(out).astype(np.float32)


def embed_captions(net, vocab, token_lists, ctx, batch_size=256, progress=False):
    """(M, D) float32 embeddings of captions given as token lists, in order."""
    from ..data.captions import pad_captions
    ctx = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    out, m = [], len(token_lists)
    for a in _progress(range(0, m, batch_size), (m + batch_size - 1) // batch_size, 'captions', progress):
        tokens, lengths = pad_captions([vocab.encode(t) for t in token_lists[a:a + batch_size]])
        out.append(net.text(mx.nd.array(tokens, ctx=ctx[0], dtype='int32'),
                            mx.nd.array(lengths, ctx=ctx[0])).asnumpy())
    return np.concatenate(out).astype(np.float32)


class CrossModalEvaluator(object):
    """``evaluator(net, ctx, epoch) -> {'i2t_r1': .., ..., 'rsum': ..}`` on a :class:`CaptionSet`
    (with COCO's 1K-fold means when ``coco_folds``)."""

    def __init__(self, cset, vocab, batch_size=256, coco_folds=False, progress=False):
        self.cset, self.vocab, self.batch_size = cset, vocab, batch_size
        self.coco_folds, self.progress = coco_folds, progress

    def embed(self, net, ctx):
        return (embed_images(net, self.cset, ctx, self.batch_size, self.progress),
                embed_captions(net, self.vocab, self.cset.captions, ctx, self.batch_size, self.progress))

    def __call__(self, net, ctx, epoch=None):
        from ..metrics.crossmodal import crossmodal_metrics
        img, cap = self.embed(net, ctx)
        return crossmodal_metrics(img, cap, coco_folds=self.coco_folds)


# ---------------------------------------------------------------------------------------------
# data location, run folder
# ---------------------------------------------------------------------------------------------

def data_root(args):
    """``--data-path``; for fashion3 without one, the set is built (once) into MXNet's data
    folder with ``examples/make_fashion_captions.py``."""
    if args.get('data_path') if isinstance(args, dict) else args.data_path:
        return args['data_path'] if isinstance(args, dict) else args.data_path
    get = (lambda k, d=None: args.get(k, d)) if isinstance(args, dict) else (
        lambda k, d=None: getattr(args, k, d))
    if get('data') != _FASHION3:
        raise cli.UserError('--data %s needs --data-path DIR: the folder holding the Karpathy '
                            'split file (e.g. dataset_flickr30k.json) and the images, or '
                            '{split}_ims.npy + {split}_caps.txt.' % get('data'))
    from ..data.base import data_home
    n, seed = int(get('fashion3_train', 10000)), int(get('fashion3_seed', 0))
    root = os.path.join(data_home(), 'datasets', 'fashion3-train%d-seed%d' % (n, seed))
    build_fashion3(root, n, seed)
    return root


def build_fashion3(root, num_train=10000, seed=0):
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        'examples', 'make_fashion_captions.py')
    spec = importlib.util.spec_from_file_location('make_fashion_captions', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build(root, num_train, seed)


def image_transform(data):
    from ..data.captions import GreyTransform, ImageNetTransform
    return GreyTransform() if data == _FASHION3 else ImageNetTransform()


def _load_split(args, root, split):
    from ..data.captions import load_caption_set
    return load_caption_set(args['data'], root, split, image_transform(args['data']),
                            in_memory=args['data'] == _FASHION3)


def _is_coco(data):
    return str(data).lower().startswith('coco')


def run_vse(args):
    """Train (or resume) the run described by ``args``; returns (engine, test metrics)."""
    from ..data.captions import CaptionPairs, Vocabulary, is_precomputed
    from ..losses.vse import VSELoss
    from ..models.vse import get_vse_model

    root = data_root(args)
    args.data_path = root
    args.precomputed = is_precomputed(root, args.data)
    if (not args.precomputed and args.model.lower() not in ('smallconv', 'small_conv', 'convnet')
            and not args.use_pretrained and not args.finetune):
        raise cli.UserError('The %s backbone would stay frozen (no --finetune) with random weights; '
                            'pass --use-pretrained (frozen ImageNet features, the VSE++ default) '
                            'and/or --finetune.' % args.model)
    if args.warmup_epochs < 0 or args.grad_clip < 0 or args.margin < 0:
        raise cli.UserError('--warmup-epochs, --grad-clip and --margin must not be negative.')
    run_dir = cli.prepare_run(args)
    logger = Logger(run_dir, sinks=cli.viz_sinks(args))
    ctx = get_contexts(args.gpus)
    seed_everything(args.seed)
    a = vars(args)
    train, val = _load_split(a, root, 'train'), _load_split(a, root, args.val_split)
    vocab_path = os.path.join(run_dir, 'vocab.json')
    if args.resume and os.path.exists(vocab_path):
        vocab = Vocabulary.load(vocab_path)
    else:
        vocab = Vocabulary.build(train.captions, args.min_word_count)
        vocab.save(vocab_path)
    args.vocab_size = len(vocab)
    cli.write_args(args)
    logger.info('%s: %d training images (%d captions), %d %s images; vocabulary %d words (seen >= %d '
                'times in training); loss %s; run folder %s'
                % (args.data, train.num_images, len(train), val.num_images, args.val_split,
                   len(vocab), args.min_word_count, 'VSE++ (max violation)' if args.max_violation
                   else 'VSE0 (sum of violations)', run_dir))
    try:
        net = get_vse_model(args.model, len(vocab), args.embed_dim, args.word_dim, args.finetune,
                            args.use_pretrained, args.precomputed, args.num_layers, ctx=ctx)
    except ValueError as err:
        raise cli.UserError(str(err)) from None
    loss = VSELoss(args.margin, args.max_violation)
    pairs = CaptionPairs(train, vocab, args.max_len, train=True, seed=args.seed)
    sampler = ShuffleBatchSampler(len(pairs), args.batch_size, args.seed, args.batches_per_epoch)
    evaluator = CrossModalEvaluator(val, vocab, args.eval_batch_size, coco_folds=_is_coco(args.data))
    engine = VSEEngine(net, loss, pairs, sampler, evaluator, run_dir, ctx, args.epochs,
                       optimizer=args.optimizer, lr=args.lr, wd=args.wd, momentum=args.momentum,
                       steps=args.steps_list, factor=args.factor, seed=args.seed, logger=logger,
                       best_metric='rsum', hybridize=not args.disable_hybridize,
                       num_workers=args.num_workers, log_interval=args.log_interval,
                       progress=not args.no_progress, export_prefix=args.save_model_prefix,
                       grad_clip=args.grad_clip, warmup_epochs=args.warmup_epochs)
    engine.fit(resume=args.resume)
    logger.close()
    test = {}
    if args.test_split:
        test_set = _load_split(a, root, args.test_split)
        net.load_parameters(os.path.join(run_dir, 'best.params'), ctx=ctx)
        test = CrossModalEvaluator(test_set, vocab, args.eval_batch_size,
                                   coco_folds=_is_coco(args.data))(net, ctx)
        test.update(split=args.test_split, params='best.params',
                    best_epoch=json.load(open(os.path.join(run_dir, 'best.json')))['epoch'])
        atomic_write_text(os.path.join(run_dir, 'eval-%s.json' % args.test_split),
                          json.dumps(test, indent=1))
        logger.info('%s split, best epoch %d: %s' % (args.test_split, test['best_epoch'], ' '.join(
            '%s=%.2f' % (k, v) for k, v in test.items() if isinstance(v, float))))
    logger.info('done: best %s rsum = %.2f; run folder %s' % (args.val_split, engine.best, run_dir))
    return engine, test


def load_vse_run(run_dir, ctx, which='best'):
    """(args dict, net, vocabulary, parameters path) of a VSE run folder."""
    from ..data.captions import Vocabulary
    from ..models.vse import get_vse_model
    from .run import load_trained_net

    def build(args, ctx):   # args.json records the size of the run's vocab.json
        finetune = bool(args.get('finetune'))
        return get_vse_model(args['model'], args['vocab_size'], args['embed_dim'], args['word_dim'],
                             finetune, False if finetune else bool(args.get('use_pretrained')),
                             bool(args.get('precomputed')), args.get('num_layers', 1), ctx=ctx)
    args, net, params = load_trained_net(run_dir, ctx, which, build=build, method='vse')
    return args, net, Vocabulary.load(os.path.join(run_dir, 'vocab.json')), params


def evaluate_vse_run(a):
    """``eval/evaluate.py`` for a VSE run: i2t / t2i recall of a split; ``--save-embeddings``
    writes image_embeddings (N, D), caption_embeddings (5N, D, in image order) and image_ids."""
    ctx = get_contexts(a.gpus)
    args, net, vocab, params = load_vse_run(a.run_dir, ctx, a.checkpoint)
    root = a.data_path or data_root(args)
    cset = _load_split(args, root, a.split)
    ev = CrossModalEvaluator(cset, vocab, a.batch_size, coco_folds=_is_coco(args['data']),
                             progress=True)
    img, cap = ev.embed(net, ctx)
    from ..metrics.crossmodal import crossmodal_metrics
    metrics = crossmodal_metrics(img, cap, coco_folds=_is_coco(args['data']))
    metrics.update(run_dir=a.run_dir, split=a.split, params=params, data=args['data'],
                   num_images=int(cset.num_images), num_captions=int(len(cset)))
    out = a.out or os.path.join(a.run_dir, 'eval-%s.json' % a.split)
    with open(out, 'w') as f:
        json.dump(metrics, f, indent=1)
    cli.print_metrics(metrics, digits=2)
    print('written: %s' % out)
    if a.save_embeddings:
        np.savez(a.save_embeddings, image_embeddings=img, caption_embeddings=cap,
                 image_ids=np.array([str(i) for i in cset.image_ids]),
                 captions=np.array(cset.raw))
        print('written: %s' % a.save_embeddings)
    return metrics
