"""``train_vse.py``: VSE++ image-caption joint embedding (Faghri, Fleet, Kiros, Fidler, BMVC 2018).

Data (Karpathy splits or precomputed features, :mod:`gluon_dml.data.captions`), the two encoders
(:mod:`gluon_dml.models.vse`), the VSE0 / VSE++ loss (:mod:`gluon_dml.losses.vse`) and the
cross-modal metrics (:mod:`gluon_dml.metrics.crossmodal`) go through the shared engine;
:class:`VSEEngine` changes the step through the public hooks (two inputs, a frozen backbone run
in inference mode, gradient clipping at 2.0 as in the paper's recipe) and the exported model (one
symbol per encoder). The best epoch is chosen by the validation rsum; the test split is evaluated
once, with the best parameters, at the end.
"""
import json
import os
import warnings

import mxnet as mx
from mxnet import autograd, gluon
import numpy as np

from ..config import check_float
from ..data import ShuffledBatchSampler, get_dataset
from ..data.base import data_home
from ..data.captions import (KARPATHY_FILES, CaptionPairs, GreyTransform, ImageNetTransform,
                             Vocabulary, is_precomputed, pad_captions, tokenize)
from ..data.fashion3 import build
from ..engine.checkpoint import atomic_write_text
from ..engine.loop import Engine, _progress
from ..errors import UserError
from ..fileio import atomic_savez, atomic_write_json
from ..losses.options import str2bool
from ..losses.vse import VSELoss
from ..metrics.crossmodal import crossmodal_metrics
from ..models.vse import get_vse_model
from .base import Encoders, Method

__all__ = ['VSEMethod', 'VSEEngine', 'CrossModalEvaluator', 'embed_images', 'embed_captions',
           'data_root', 'image_transform']

_FASHION3 = 'fashion3'


class VSEEngine(Engine):
    """The engine with the VSE step: ``data`` is the image batch, ``label`` the padded captions
    and their lengths (cut to the batch's longest caption); the loss takes the two embeddings;
    the gradients' global norm is clipped to ``grad_clip`` before the update."""

    def __init__(self, *args, grad_clip=2.0, warmup_epochs=0, **kwargs):
        super().__init__(*args, **kwargs)
        self.grad_clip, self.warmup_epochs = grad_clip, int(warmup_epochs)
        self.warmup_loss = None
        if self.warmup_epochs and getattr(self.loss, 'max_violation', False):
            self.warmup_loss = VSELoss(self.loss.margin, max_violation=False)
            if self.config.hybridize:
                self.warmup_loss.hybridize(static_alloc=True)

    def current_loss(self):
        """The loss of this epoch: VSE0's sum during the ``warmup_epochs`` first epochs of a
        VSE++ run (the warm-up of VSE-infinity, Chen et al. CVPR 2021, against the collapse of
        max-violation training from scratch), else the run's loss."""
        if self.warmup_loss is not None and self.epoch <= self.warmup_epochs:
            return self.warmup_loss
        return self.loss

    def _embed_part(self, images, tokens, lengths):
        if getattr(self.net, 'frozen_backbone', False):
            with autograd.pause():                     # inference mode, no gradient
                feats = self.net.image.backbone(images)
            return self.net.image.project(feats), self.net.text(tokens, lengths)
        return self.net.image(images), self.net.text(tokens, lengths)

    def forward_batch(self, data, label):
        tokens, lengths = label
        tokens = tokens[:, :int(lengths.max().asscalar())]
        parts = [gluon.utils.split_and_load(x, self.ctx, even_split=False)
                 for x in (data, tokens, lengths)]
        ims, caps = [], []
        for x, t, l in zip(*parts):
            im, cap = self._embed_part(x, t, l)
            ims.append(im.as_in_context(self.ctx[0]))
            caps.append(cap.as_in_context(self.ctx[0]))
        return (ims[0] if len(ims) == 1 else mx.nd.concat(*ims, dim=0),
                caps[0] if len(caps) == 1 else mx.nd.concat(*caps, dim=0))

    def compute_loss(self, outputs, label):
        return self.current_loss()(*outputs)

    def clip_gradients(self):
        if self.grad_clip:
            for c in self.ctx:
                grads = [p.grad(c) for p in self.net.collect_params().values()
                         if p.grad_req != 'null']
                gluon.utils.clip_global_norm(grads, self.grad_clip, check_isfinite=False)

    def export(self):
        """PREFIX-image-symbol.json / -0000.params and PREFIX-text-symbol.json / -0000.params."""
        prefix = self.config.export_prefix
        x = self.train_set[0][0]
        self.net.image(mx.nd.zeros((1,) + tuple(x.shape), ctx=self.ctx[0]))
        self.net.text(mx.nd.ones((1, 2), ctx=self.ctx[0]), mx.nd.array([2], ctx=self.ctx[0]))
        for part in ('image', 'text'):
            getattr(self.net, part).export(os.path.join(self.run_dir, '%s-%s' % (prefix, part)))
        return ['%s-image-*' % prefix, '%s-text-*' % prefix]


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
        img, cap = self.embed(net, ctx)
        return crossmodal_metrics(img, cap, coco_folds=self.coco_folds)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------

def _get(args, key, default=None):
    return args.get(key, default) if isinstance(args, dict) else getattr(args, key, default)


def data_root(args):
    """``--data-path``; for fashion3 without one, the set is built (once) into MXNet's data
    folder by :mod:`gluon_dml.data.fashion3`."""
    if _get(args, 'data_path'):
        return _get(args, 'data_path')
    if _get(args, 'data') != _FASHION3:
        raise UserError('--data %s needs --data-path DIR: the folder holding the Karpathy '
                        'split file (e.g. dataset_flickr30k.json) and the images, or '
                        '{split}_ims.npy + {split}_caps.txt.' % _get(args, 'data'))
    n, seed = int(_get(args, 'fashion3_train', 10000)), int(_get(args, 'fashion3_seed', 0))
    root = os.path.join(data_home(), 'datasets', 'fashion3-train%d-seed%d' % (n, seed))
    build(root, n, seed)
    return root


def image_transform(data):
    return GreyTransform((28, 84)) if data == _FASHION3 else ImageNetTransform()   # H x W


def load_split(args, root, split):
    data = _get(args, 'data')
    return get_dataset(data, root, split, protocol='captions', transform=image_transform(data),
                       in_memory=data == _FASHION3)


def _is_coco(data):
    return str(data).lower().startswith('coco')


class VSEMethod(Method):
    name = 'vse'
    script = 'train_vse.py'
    description = ('VSE++ image-caption joint embedding and cross-modal retrieval (Faghri, '
                   'Fleet, Kiros, Fidler, BMVC 2018).')
    default_data = _FASHION3
    protocol = 'captions'
    help_datasets = (('fashion3', _FASHION3), ('f30k, coco and their _precomp forms', 'f30k'))
    ignored_flags = {
        'batch_k': 'VSE batches are image-caption pairs, not P classes x K images',
        'val_classes': 'the caption datasets have their own val split (--val-split)',
        'rotations': 'rotated classes are for the embedding methods (train-margin, train-npair)',
        'shift': 'shift augmentation is for the embedding methods (train-margin, train-npair)',
        'tilt': 'tilt augmentation is for the embedding methods (train-margin, train-npair)',
        'zoom': 'zoom augmentation is for the embedding methods (train-margin, train-npair)',
        'nmi_runs': 'VSE runs report cross-modal recall, not NMI',
        'eval_nmi_runs': 'VSE runs report cross-modal recall, not NMI',
        'episodes': 'VSE runs report cross-modal recall, not few-shot accuracy',
        'pool': 'the image encoder takes the backbone\'s own pooling',
        'members': 'ensembles (--members) are for the embedding methods',
        'tta_shift': 'test-time moves (--tta-shift) are for the embedding methods',
        'split_classes': 'the caption datasets have their own splits',
    }
    best_metric = 'rsum'
    summary_metrics = ('rsum', 'i2t_r1', 't2i_r1')
    engine_class = VSEEngine
    flag_group = 'VSE++'
    data_path_help = ('fashion3: built once into $MXNET_HOME/datasets from Fashion-MNIST; others: '
                      'the folder of the Karpathy split file and the images, or of '
                      '{split}_ims.npy + {split}_caps.txt')
    name_help = 'vsepp-DATA (vse0-DATA with --max-violation false)'

    def dataset_names(self):
        names = sorted(KARPATHY_FILES)
        return names + ['%s_precomp' % n for n in names if n != _FASHION3]
    flags = (
        ('--max-violation', dict(type=str2bool, nargs='?', const=True, default=None,
                                 help='VSE++: the hardest negative of the batch (default true); '
                                      '"--max-violation false" gives VSE0, the sum over all '
                                      'negatives')),
        ('--warmup-epochs', dict(type=int, default=None,
                                 help='VSE++: use the sum over all negatives for these first '
                                      'epochs (default 0, as the paper; fashion3: 1, from-scratch '
                                      'training collapses without it)')),
        ('--margin', dict(type=float, default=0.2, help='hinge margin alpha (default 0.2)')),
        ('--word-dim', dict(type=int, default=300, help='word embedding size (default 300)')),
        ('--num-layers', dict(type=int, default=1, help='GRU layers (default 1)')),
        ('--finetune', dict(type=str2bool, nargs='?', const=True, default=None,
                            help='train the image backbone too (default: frozen; fashion3: '
                                 'trained)')),
        ('--grad-clip', dict(type=float, default=2.0,
                             help="clip the gradients' global norm (default 2; 0: no clipping)")),
        ('--min-word-count', dict(type=int, default=4,
                                  help='vocabulary: training-caption words seen at least this '
                                       'often (default 4)')),
        ('--max-len', dict(type=int, default=None, help='cut longer captions (tokens; default: '
                                                        'no cut)')),
        ('--val-split', dict(default='val', help='split that chooses the best epoch (rsum; '
                                                 'default val)')),
        ('--test-split', dict(default='test', help='split evaluated at the end ("" for none; '
                                                   'default test)')),
        ('--fashion3-train', dict(type=int, default=10000,
                                  help='fashion3 without --data-path: training pictures of the '
                                       'built set (default 10000)')),
        ('--fashion3-seed', dict(type=int, default=0,
                                 help='fashion3: seed of the built set (default 0)')),
    )

    def recipe(self, data):
        """The settings of the VSE++ paper (ResNet-152, 1024-d, batch 128, Adam 2e-4, 30 epochs
        with the rate divided by 10 after 15, margin 0.2, clipping 2.0); fashion3 trains the
        small conv net from scratch with a smaller joint space, sized for a CPU."""
        base = dict(model='resnet152_v1', embed_dim=1024, batch_size=128, batch_k=1, epochs=30,
                    optimizer='adam', lr=2e-4, wd=0.0, steps='15', factor=0.1, eval_batch_size=256,
                    finetune=False, max_violation=True, warmup_epochs=0)
        if data == _FASHION3:
            base.update(model='smallconv', finetune=True, embed_dim=256, epochs=6, steps='4',
                        lr=1e-3, batches_per_epoch=250, warmup_epochs=1)
        return base

    def default_name(self, args):
        return '%s-%s' % ('vsepp' if args.max_violation else 'vse0', args.data)

    def selects_on_validation(self, args):
        return True

    def evaluation_split(self, args):
        return '%s split' % args.val_split

    def setup(self, args):
        names = self.dataset_names()
        if args.data.lower().replace('-', '_') not in {n.replace('-', '_') for n in names}:
            raise UserError('Unknown --data %s for %s; the caption sets are: %s.'
                            % (args.data, self.command, ', '.join(names)))
        for flag, value in (('--margin', args.margin), ('--grad-clip', args.grad_clip)):
            check_float(value, flag)
        if args.warmup_epochs < 0 or args.grad_clip < 0 or args.margin < 0:
            raise UserError('--warmup-epochs, --grad-clip and --margin must not be negative.')
        for flag, value in (('--word-dim', args.word_dim), ('--num-layers', args.num_layers)):
            if value < 1:
                raise UserError('%s must be a positive integer, got %d.' % (flag, value))
        if args.max_len is not None and args.max_len < 1:
            raise UserError('--max-len must be a positive number of tokens (leave it out for no '
                            'cut), got %d.' % args.max_len)
        if args.min_word_count < 1:
            raise UserError('--min-word-count must be at least 1, got %d.' % args.min_word_count)
        if args.fashion3_train is not None and args.fashion3_train < 1:
            raise UserError('--fashion3-train must be a positive number of training pictures, '
                            'got %d.' % args.fashion3_train)
        if not 0 <= getattr(args, 'fashion3_seed', 0) < 2 ** 32:
            raise UserError('--fashion3-seed must lie in 0 .. 2^32 - 1, got %d.' % args.fashion3_seed)
        if args.test_split and args.test_split == args.val_split:
            raise UserError('--val-split and --test-split are both %r: the best epoch would be '
                            'chosen on the split it is then tested on; choose another --val-split, '
                            'or --test-split "" for no test.' % args.val_split)
        if args.batch_size < 2:
            raise UserError('--batch-size %d: VSE++ needs at least 2 image-caption pairs per batch '
                            '(the other pairs of the batch are the negatives).' % args.batch_size)
        root = data_root(args)
        args.data_path = root
        args.precomputed = is_precomputed(root, args.data)
        if (not args.precomputed and args.model.lower() not in ('smallconv', 'small_conv', 'convnet')
                and not args.use_pretrained and not args.finetune):
            raise UserError('The %s backbone would stay frozen (no --finetune) with random weights; '
                            'pass --use-pretrained (frozen ImageNet features, the VSE++ default) '
                            'and/or --finetune.' % args.model)

    def build_data(self, args, logger):
        train, val = load_split(args, args.data_path, 'train'), load_split(args, args.data_path, args.val_split)
        if args.test_split and args.test_split not in ('train', args.val_split):
            load_split(args, args.data_path, args.test_split)    # a bad name fails now, not after training
        vocab_path = os.path.join(args.save_dir, 'vocab.json')
        if args.resume and os.path.exists(vocab_path):
            vocab = Vocabulary.load(vocab_path)
        else:
            vocab = Vocabulary.build(train.captions, args.min_word_count)
            vocab.save(vocab_path)
        args.vocab_size = len(vocab)
        if len(vocab) <= len(Vocabulary.SPECIALS):
            warnings.warn('--min-word-count %d leaves no word of the training captions in the '
                          'vocabulary: every caption reads as unknown words, and the text encoder '
                          'cannot learn.' % args.min_word_count)
        if not args.max_violation:
            loss = 'VSE0 (sum of violations)'
        elif args.warmup_epochs >= args.epochs:
            loss = 'VSE0 (sum of violations) in every epoch: --warmup-epochs %d covers the run' \
                % args.warmup_epochs
            warnings.warn('--warmup-epochs %d covers all %d epochs: the run trains VSE0 only, never '
                          'VSE++ (max violation).' % (args.warmup_epochs, args.epochs))
        elif args.warmup_epochs:
            loss = 'VSE0 (sum of violations) for %d warm-up epoch%s, then VSE++ (max violation)' % (
                args.warmup_epochs, '' if args.warmup_epochs == 1 else 's')
        else:
            loss = 'VSE++ (max violation)'
        logger.info('%s: %d training images (%d captions), %d %s images; vocabulary %d words (seen >= %d '
                    'times in training); loss %s; run folder %s'
                    % (args.data, train.num_images, len(train), val.num_images, args.val_split,
                       len(vocab), args.min_word_count, loss, args.save_dir))
        pairs = CaptionPairs(train, vocab, args.max_len, train=True, seed=args.seed)
        return {'train': pairs, 'val': val, 'vocab': vocab}

    def build_sampler(self, args, data):
        return ShuffledBatchSampler(len(data['train']), args.batch_size, args.batches_per_epoch,
                                    seed=args.seed)

    def build_loss(self, args, data):
        return VSELoss(args.margin, args.max_violation)

    def build_network(self, args, data, ctx):
        try:
            return get_vse_model(args.model, len(data['vocab']), args.embed_dim, args.word_dim,
                                 args.finetune, args.use_pretrained, args.precomputed,
                                 args.num_layers, ctx=ctx)
        except ValueError as err:
            raise UserError(str(err)) from None

    def build_evaluator(self, args, data, logger):
        return CrossModalEvaluator(data['val'], data['vocab'], args.eval_batch_size,
                                   coco_folds=_is_coco(args.data))

    def engine_options(self, args, data):
        return dict(grad_clip=args.grad_clip, warmup_epochs=args.warmup_epochs)

    def finish(self, args, engine, data, ctx, logger):
        """The test split, once, with the best parameters (``eval-TEST.json``)."""
        if not args.test_split:
            return {}
        test_set = load_split(args, args.data_path, args.test_split)
        engine.net.load_parameters(os.path.join(args.save_dir, 'best.params'), ctx=ctx)
        test = CrossModalEvaluator(test_set, data['vocab'], args.eval_batch_size,
                                   coco_folds=_is_coco(args.data))(engine.net, ctx)
        with open(os.path.join(args.save_dir, 'best.json')) as f:
            best_epoch = json.load(f)['epoch']
        test.update(split=args.test_split, params='best.params', best_epoch=best_epoch)
        atomic_write_text(os.path.join(args.save_dir, 'eval-%s.json' % args.test_split),
                          json.dumps(test, indent=1))
        logger.info('%s split, best epoch %d: %s' % (args.test_split, best_epoch, ' '.join(
            '%s=%.2f' % (k, v) for k, v in test.items() if isinstance(v, float))))
        return test

    # -- a trained run ----------------------------------------------------------------------------
    def network_for_run(self, args, ctx):
        """The two encoders of a run (``args.json`` records the size of its ``vocab.json``)."""
        finetune = bool(args.get('finetune'))
        return get_vse_model(args['model'], args['vocab_size'], args['embed_dim'], args['word_dim'],
                             finetune, False if finetune else bool(args.get('use_pretrained')),
                             bool(args.get('precomputed')), args.get('num_layers', 1), ctx=ctx)

    def vocabulary(self, trained):
        return Vocabulary.load(os.path.join(trained.run_dir, 'vocab.json'))

    def encoders(self, trained):
        net, ctx, vocab = trained.net, trained.ctx, self.vocabulary(trained)

        def image(batch):
            return net.image(mx.nd.array(batch, ctx=ctx[0])).asnumpy().astype(np.float32)

        def text(captions):
            return embed_captions(net, vocab, [tokenize(c) for c in captions], ctx)
        return Encoders(image, image_transform(trained.args['data']), trained.args['embed_dim'],
                        normalized=True, text=text, ctx=ctx)

    def check_evaluation(self, args, a):
        super().check_evaluation(args, a)
        if a.save_codes:
            raise UserError('--save-codes is for train-hash runs; %s is a VSE run.' % a.run_dir)
        self.refuse_embedding_flags(a, 'a VSE run, evaluated by image->text and text->image '
                                       'Recall@1/5/10')

    def evaluate_run(self, trained, a):
        """i2t / t2i recall of a split; ``--save-embeddings`` writes image_embeddings (N, D),
        caption_embeddings (5N, D, in image order) and image_ids."""
        args = trained.args
        root = a.data_path or data_root(args)
        split = a.split if a.split != 'val' else args.get('val_split', 'val')
        cset = load_split(args, root, split)
        ev = CrossModalEvaluator(cset, self.vocabulary(trained), a.batch_size,
                                 coco_folds=_is_coco(args['data']), progress=not a.no_progress)
        img, cap = ev.embed(trained.net, trained.ctx)
        metrics = crossmodal_metrics(img, cap, coco_folds=_is_coco(args['data']))
        metrics.update(run_dir=a.run_dir, split=split, params=trained.params,
                       network=trained.params_label, precision=trained.precision, data=args['data'],
                       num_images=int(cset.num_images), num_captions=int(len(cset)))
        if os.path.basename(trained.params) == 'best.params':    # as training's eval-TEST.json says
            try:
                with open(os.path.join(a.run_dir, 'best.json')) as f:
                    metrics['best_epoch'] = int(json.load(f)['epoch'])
            except (OSError, ValueError, KeyError, TypeError):
                pass
        written = [a.out or trained.eval_path(split)]
        atomic_write_json(written[0], metrics, indent=1, sort_keys=False)
        if a.save_embeddings:
            atomic_savez(a.save_embeddings, image_embeddings=img, caption_embeddings=cap,
                         image_ids=np.array([str(i) for i in cset.image_ids]),
                         captions=np.array(cset.raw),
                         **trained.saved_with())
            written.append(a.save_embeddings)
        return metrics, written, 2
