"""Hard-Aware Deeply Cascaded embedding (Yuan, Yang, Zhang, ICCV 2017): ``gluon-dml train hdc``.

The network (:class:`gluon_dml.models.hdc.HDCNet`) has an embedding head after each stage of the
backbone (the small conv net: after each of its three blocks; ResNets: after stages 2, 3 and 4);
the cascade loss (:class:`gluon_dml.losses.hdc.HDCLoss`) trains level 1 on every pair of the
batch and each deeper level on the pairs the previous level finds hard (``--hdc-keep`` of them:
the farthest positives, the closest negatives). The test embedding is the concatenation of the
levels (``--embed-dim`` per level, so ``levels x embed-dim`` in all). The base loss is the
contrastive loss, the paper's, with its ``--pos-margin`` / ``--neg-margin`` / ``--squared`` /
``--reduction`` options; the zoo's other pair losses do not take the cascade's pair mask.
"""
from ..errors import UserError
from ..losses.hdc import HDCLoss
from ..models import get_backbone
from ..models.hdc import get_hdc_model, hdc_stages
from .embedding import EmbeddingMethod

__all__ = ['HDCMethod']


class HDCMethod(EmbeddingMethod):
    """Embedding heads at several depths, each trained on the pairs the shallower ones find hard."""
    name = 'hdc'
    takes_tta = False
    script = 'gluon-dml train hdc'
    description = ('Hard-Aware Deeply Cascaded embedding (Yuan, Yang, Zhang, ICCV 2017): heads at '
                   'several depths, a cascade of the contrastive loss over ever harder pairs.')
    default_loss = 'contrastive'
    flag_group = 'hdc'
    flags = (
        ('--hdc-keep', dict(type=float, default=0.5, metavar='F',
                            help='fraction of a level\'s pairs (the hardest) passed on to the next '
                                 'level (default 0.5)')),
    )

    def setup(self, args):
        super().setup(args)
        if args.loss != 'contrastive':
            raise UserError('gluon-dml train hdc cascades the contrastive loss (the paper\'s); '
                            '--loss %s does not take the cascade\'s pair mask.' % args.loss)
        if not 0 < args.hdc_keep <= 1:
            raise UserError('--hdc-keep must lie in (0, 1], got %g.' % args.hdc_keep)
        if getattr(args, 'xbm_size', 0):
            raise UserError('gluon-dml train hdc has no cross-batch memory (--xbm-size): the '
                            'cascade selects its pairs within the batch.')
        if (getattr(args, 'members', 1) or 1) > 1 or getattr(args, 'tta_shift', 0):
            raise UserError('gluon-dml train hdc trains one cascade; --members and --tta-shift '
                            'are for the single-head networks (train-margin, train-npair).')
        if getattr(args, 'pool', 'avg') not in (None, 'avg'):
            raise UserError('gluon-dml train hdc pools each level by global average; --pool %s '
                            'is for single-head networks.' % args.pool)

    def build_network(self, args, data, ctx):
        return get_hdc_model(args.model, args.embed_dim, pretrained=args.use_pretrained, ctx=ctx,
                             init_name=getattr(args, 'init', None) or 'xavier')

    def build_loss(self, args, data):
        options = dict(getattr(args, '_loss_kwargs', {}))
        options = {k: options[k] for k in ('pos_margin', 'neg_margin', 'squared', 'reduction')
                   if k in options}
        levels = len(hdc_stages(get_backbone(args.model, False)))
        args.hdc_levels = levels                 # args.json: the embedding is levels x embed_dim
        args.normalize_embeddings = True
        args.loss_options = dict(options, keep=args.hdc_keep, levels=levels)
        return HDCLoss([args.embed_dim] * levels, keep=args.hdc_keep, **options)

    def network_for_run(self, args, ctx):
        return get_hdc_model(args['model'], args['embed_dim'], ctx=ctx)

    def encoders(self, trained):
        enc = super().encoders(trained)
        enc.dim = trained.args['embed_dim'] * int(trained.args.get('hdc_levels') or 1)
        return enc
