"""``--rotations`` (training classes turned as new classes), ``--shift`` (random moves, new
draws every epoch), ``--tilt`` and ``--zoom`` (random turns and scaling, bilinear), and the named
recipe ``--recipe fewshot`` that uses them."""
import json

import numpy as np
import pytest

from gluon_dml import cli
from gluon_dml.data import ArrayDataset, get_dataset
from gluon_dml.data.augment import (ShiftedArrayDataset, augment_training_set, rotated_classes,
                                    warp)
from gluon_dml.errors import UserError
from gluon_dml.methods import get_method, run

from ..helpers import parse


def _toy(n_classes=3, per_class=2, size=6, seed=0):
    rng = np.random.RandomState(seed)
    images = rng.rand(n_classes * per_class, 1, size, size).astype(np.float32)
    labels = np.repeat(np.arange(n_classes), per_class)
    return ArrayDataset(images, labels, ['c%d' % i for i in range(n_classes)], name='toy',
                        split='train')


def _reference_shift(img, dy, dx):
    """Moving the image content by (dy, dx): pad by the largest move, then crop."""
    p = max(abs(dy), abs(dx))
    h, w = img.shape[1:]
    padded = np.pad(img, ((0, 0), (p, p), (p, p)))
    return padded[:, p - dy:p - dy + h, p - dx:p - dx + w]


def _reference_warp(img, angle, scale, shift):
    """Pixel by pixel: output (r, c) reads the input at the point that the turn by ``angle``
    degrees (counter-clockwise on screen) and the scaling about the centre, then the move, bring
    to (r, c); bilinear between the four nearest pixels, 0 outside the image."""
    h, w = img.shape[1:]
    cr, cc = (h - 1) / 2.0, (w - 1) / 2.0
    t = np.deg2rad(angle)
    out = np.zeros(img.shape, dtype=np.float64)
    for r in range(h):
        for c in range(w):
            # undo the move, then the scale, then the turn (clockwise by t on screen)
            y, x = (r - shift[0] - cr) / scale, (c - shift[1] - cc) / scale
            sy = np.cos(t) * y + np.sin(t) * x + cr
            sx = -np.sin(t) * y + np.cos(t) * x + cc
            y0, x0 = int(np.floor(sy)), int(np.floor(sx))
            for yy, wy in ((y0, 1 - (sy - y0)), (y0 + 1, sy - y0)):
                for xx, wx in ((x0, 1 - (sx - x0)), (x0 + 1, sx - x0)):
                    if 0 <= yy < h and 0 <= xx < w:
                        out[:, r, c] += wy * wx * img[:, yy, xx]
    return out


def test_warp_matches_a_pixel_by_pixel_bilinear_reference_and_the_exact_cases():
    rng = np.random.RandomState(3)
    img = rng.rand(2, 9, 11).astype(np.float32)
    for angle, scale, shift in ((17.0, 1.1, (1, -2)), (-33.0, 0.85, (0, 0)), (5.0, 1.0, (2, 2))):
        assert np.allclose(warp(img, angle, scale, shift), _reference_warp(img, angle, scale, shift),
                           atol=1e-5)
    square = rng.rand(1, 9, 9).astype(np.float32)
    # a quarter turn counter-clockwise is np.rot90, and a plain move is the whole-pixel shift
    assert np.allclose(warp(square, 90, 1.0), np.rot90(square, 1, axes=(1, 2)), atol=1e-6)
    assert np.allclose(warp(img, 0, 1.0, (2, -1)), _reference_shift(img, 2, -1), atol=1e-6)
    # zooming in by 2 spreads the centre pixel over its neighbours
    dot = np.zeros((1, 9, 9), np.float32)
    dot[0, 4, 4] = 1
    big = warp(dot, 0, 2.0)
    assert big[0, 4, 4] == pytest.approx(1.0) and big[0, 4, 5] == pytest.approx(0.5)
    assert big[0, 4, 6] == pytest.approx(0.0)


def test_tilt_and_zoom_draw_turns_and_scales_per_epoch_and_keep_the_shifts():
    ds = _toy(n_classes=4, per_class=5, size=10)
    plain = ShiftedArrayDataset(ds, 2, seed=7)
    jit = ShiftedArrayDataset(ds, 2, seed=7, tilt=15, zoom=0.1)
    assert np.array_equal(plain.shifts, jit.shifts)      # the moves are those without tilt/zoom
    assert plain.angles is None
    assert np.abs(jit.angles).max() <= 15 and np.abs(jit.angles).max() > 5
    assert np.all(np.abs(jit.scales - 1) <= 0.1) and jit.scales.std() > 0.01
    for i in range(len(ds)):
        img, label = jit[i]
        assert label == ds.labels[i] and img.dtype == np.float32
        assert np.allclose(img, _reference_warp(ds.images[i], jit.angles[i], jit.scales[i],
                                                jit.shifts[i]), atol=1e-5)
    first = jit.angles.copy()
    jit.set_epoch(1)
    assert not np.allclose(first, jit.angles)
    again = ShiftedArrayDataset(ds, 2, seed=7, tilt=15, zoom=0.1)
    again.set_epoch(1)                                     # a resumed run: the same draws
    assert np.array_equal(again.angles, jit.angles) and np.array_equal(again[3][0], jit[3][0])
    only_tilt = augment_training_set(ds, tilt=10, seed=1)
    assert isinstance(only_tilt, ShiftedArrayDataset) and not only_tilt.shifts.any()
    with pytest.raises(ValueError, match='tilt must lie'):
        ShiftedArrayDataset(ds, 0, tilt=-1)
    with pytest.raises(ValueError, match='zoom must lie'):
        ShiftedArrayDataset(ds, 0, zoom=1.0)


def test_four_rotations_make_four_times_the_classes_each_a_quarter_turn_of_the_original():
    ds = _toy()
    out = rotated_classes(ds, 4)
    assert len(out) == 4 * len(ds) and out.num_classes == 4 * ds.num_classes
    assert out.class_names[:4] == ['c0', 'c1', 'c2', 'c0@rot90']
    assert out.class_names[-1] == 'c2@rot270'
    for r in range(4):
        rows = out.labels >= r * ds.num_classes
        rows &= out.labels < (r + 1) * ds.num_classes
        turned = out.images[rows]
        assert np.array_equal(turned, np.rot90(ds.images, r, axes=(2, 3)))
        assert np.array_equal(out.labels[rows] - r * ds.num_classes, ds.labels)
    # one quarter turn of an asymmetric image is not the image
    assert not np.array_equal(out.images[len(ds)], ds.images[0])


def test_two_rotations_are_half_turns_and_one_is_the_dataset_itself():
    ds = _toy()
    half = rotated_classes(ds, 2)
    assert half.num_classes == 2 * ds.num_classes
    assert np.array_equal(half.images[len(ds):], ds.images[:, :, ::-1, ::-1])
    assert half.class_names[ds.num_classes] == 'c0@rot180'
    assert rotated_classes(ds, 1) is ds
    with pytest.raises(ValueError, match='1, 2 or 4 .turns of 90 degrees., or 8'):
        rotated_classes(ds, 3)


def test_shifts_move_the_content_within_the_bound_and_change_with_the_epoch_only():
    ds = _toy(n_classes=4, per_class=5, size=8)
    shifted = ShiftedArrayDataset(ds, 2, seed=7)
    assert shifted.shifts.min() >= -2 and shifted.shifts.max() <= 2
    assert len(np.unique(shifted.shifts)) == 5            # every move from -2 to 2 is drawn
    for i in range(len(ds)):
        img, label = shifted[i]
        dy, dx = shifted.shifts[i]
        assert label == ds.labels[i]
        assert np.array_equal(img, _reference_shift(ds.images[i], dy, dx))
    first = shifted.shifts.copy()
    shifted.set_epoch(1)
    assert not np.array_equal(first, shifted.shifts)
    again = ShiftedArrayDataset(ds, 2, seed=7)           # a resumed run draws the same moves
    again.set_epoch(1)
    assert np.array_equal(again.shifts, shifted.shifts)
    assert shifted.images is ds.images                   # the arrays are shared, not copied
    with pytest.raises(ValueError, match='shift must lie'):
        ShiftedArrayDataset(ds, 8)


def test_augment_training_set_turns_then_shifts():
    ds = _toy()
    out = augment_training_set(ds, rotations=4, shift=1, seed=0)
    assert isinstance(out, ShiftedArrayDataset) and out.num_classes == 12
    assert augment_training_set(ds) is ds


@pytest.mark.parametrize('flags,message', [
    (('--rotations', '3'), '--rotations must be 1'),
    (('--shift', '-1'), '--shift must be 0'),
    (('--data', 'CUB_200_2011', '--rotations', '4'), 'photo datasets augment'),
    (('--shift', '3'), 'off the image'),
    (('--tilt', '200'), '--tilt must lie'),
    (('--zoom', '1'), '--zoom must lie'),
    (('--data', 'CUB_200_2011', '--tilt', '10'), 'photo datasets augment'),
])
def test_bad_augmentation_flags_are_refused_with_a_sentence(flags, message, tmp_path):
    with pytest.raises(UserError, match=message):
        parse('margin', '--data', 'digits', *flags, '--save-dir', tmp_path / 'r')


def test_tilt_and_zoom_flags_are_read(tmp_path):
    a = parse('margin', '--data', 'digits', '--tilt', '10', '--zoom', '0.1', '--save-dir',
              tmp_path / 'h')
    assert (a.tilt, a.zoom) == (10.0, 0.1)


def test_the_fewshot_recipe_fills_the_settings_under_the_typed_flags(tmp_path):
    a = parse('margin', '--recipe', 'fewshot', '--epochs', '3', '--save-dir', tmp_path / 'r')
    assert (a.data, a.model, a.loss, a.rotations, a.shift) == ('omniglot', 'smallconv', 'margin',
                                                                4, 2)
    assert (a.beta_per_class, a.batch_size, a.batch_k) == (True, 128, 4)   # Omniglot's own recipe
    assert (a.episodes, a.way, a.shot, a.eval_interval) == (1000, 20, 1, 10)
    assert a.epochs == 3                                  # the flag typed wins over the recipe
    plain = parse('margin', '--save-dir', tmp_path / 'p')
    assert (plain.loss, plain.model, plain.rotations, plain.shift, plain.episodes) == \
        ('margin', 'smallconv', 1, 0, 0)
    with pytest.raises(UserError, match='cannot train --data digits'):
        parse('margin', '--recipe', 'fewshot', '--data', 'digits', '--save-dir', tmp_path / 'x')
    with pytest.raises(UserError, match='no such recipe'):
        parse('margin', '--recipe', 'fast', '--save-dir', tmp_path / 'y')
    with pytest.raises(SystemExit) as no_flag:       # train-hash has no --recipe (its --help neither)
        parse('hash', '--recipe', 'fewshot', '--save-dir', tmp_path / 'z')
    assert no_flag.value.code == 2


def test_a_short_fewshot_recipe_run_trains_on_turned_classes_and_logs_episodes(tmp_path):
    args = cli.parse('margin', ['--recipe', 'fewshot', '--epochs', '1', '--batches-per-epoch', '4',
                                '--episodes', '50', '--val-classes', 'Korean,Early_Aramaic',
                                '--nmi-runs', '1', '--no-progress', '--save-dir',
                                str(tmp_path / 'run')])
    engine, final = run(get_method('margin'), args)
    train = get_dataset('omniglot', split='train')
    kept = train.num_classes - 62                          # Korean 40 + Early_Aramaic 22 held out
    assert engine.train_set.num_classes == 4 * kept
    assert isinstance(engine.train_set, ShiftedArrayDataset)
    assert engine.loss.beta.shape == (4 * kept,)           # one margin beta per turned class
    record = json.load(open(tmp_path / 'run' / 'args.json'))
    assert (record['recipe'], record['rotations'], record['shift']) == ('fewshot', 4, 2)
    rows = [json.loads(line) for line in open(tmp_path / 'run' / 'log.jsonl')]
    assert [r['epoch'] for r in rows] == [0, 1]
    assert 0 < rows[-1]['fs_proto'] <= 1 and rows[-1]['fs_proto_ci95'] > 0
    assert final['num_queries'] == 62 * 20                  # evaluated on the held-out classes


def test_in_memory_batches_are_the_data_loaders_batches_plain_and_shifted():
    from mxnet import gluon
    from gluon_dml.engine.loop import _ListSampler, load_batches
    ds = _toy(n_classes=4, per_class=5, size=8)
    batches = [[3, 0, 7], [19, 2], [5, 5, 11, 4]]
    for dataset in (ds, ShiftedArrayDataset(ds, 2, seed=3, tilt=10, zoom=0.1)):
        reference = gluon.data.DataLoader(dataset, batch_sampler=_ListSampler(batches))
        fast = load_batches(dataset, batches)
        assert not isinstance(fast, gluon.data.DataLoader)          # the one-indexing path
        pairs = list(zip(fast, reference))
        assert len(pairs) == len(batches)
        for (data, label), (ref_data, ref_label) in pairs:
            assert data.dtype == ref_data.dtype and label.dtype == ref_label.dtype
            assert np.array_equal(data.asnumpy(), ref_data.asnumpy())
            assert np.array_equal(label.asnumpy(), ref_label.asnumpy())
    # decoding threads asked for, or a dataset without ``gather`` (Gluon's own ``take(count)``
    # is another method): the DataLoader itself, with the same batches
    assert isinstance(load_batches(ds, batches, num_workers=1), gluon.data.DataLoader)
    other = gluon.data.SimpleDataset([(ds.images[i], ds.labels[i]) for i in range(len(ds))])
    loader = load_batches(other, batches)
    assert isinstance(loader, gluon.data.DataLoader)
    assert [b[1].asnumpy().tolist() for b in loader] == [ds.labels[b].tolist() for b in batches]
    assert len(ds.take(2)) == 2                            # Gluon's take(count) still works


def test_eight_rotations_are_the_four_turns_of_the_classes_and_of_their_mirror_images():
    ds = _toy()
    C = ds.num_classes
    out = rotated_classes(ds, 8)
    assert len(out) == 8 * len(ds) and out.num_classes == 8 * C
    assert out.class_names[C] == 'c0@mirror' and out.class_names[2 * C] == 'c0@rot90'
    assert out.class_names[-1] == 'c2@mirror@rot270'
    for r in range(4):
        for m in range(2):
            lo = r * 2 * C + m * C                  # turn r of the class (m = 0) or its mirror (1)
            rows = (out.labels >= lo) & (out.labels < lo + C)
            want = ds.images[:, :, :, ::-1] if m else ds.images
            assert np.array_equal(out.images[rows], np.rot90(want, r, axes=(2, 3)))
            assert np.array_equal(out.labels[rows] - lo, ds.labels)
    # the eight views of an asymmetric image are eight different images
    views = {out.images[out.labels == c][0].tobytes() for c in range(0, 8 * C, C)}
    assert len(views) == 8


def test_the_ensemble_recipe_turns_and_mirrors_and_trains_three_members(tmp_path):
    a = parse('margin', '--recipe', 'fewshot-ensemble', '--save-dir', tmp_path / 'r')
    assert (a.data, a.rotations, a.shift, a.members, a.tta_shift, a.epochs) == \
        ('omniglot', 8, 2, 3, 1, 20)
    assert (a.episodes, a.way, a.shot, a.beta_per_class) == (1000, 20, 1, True)
    args = cli.parse('margin', ['--recipe', 'fewshot-ensemble', '--epochs', '1',
                                '--batches-per-epoch', '2', '--episodes', '20', '--val-classes',
                                'Korean,Early_Aramaic', '--nmi-runs', '1', '--no-progress',
                                '--save-dir', str(tmp_path / 'run')])
    engine, final = run(get_method('margin'), args)
    kept = get_dataset('omniglot', split='train').num_classes - 62
    assert engine.train_set.num_classes == 8 * kept
    assert len(engine.net.members) == 3 and len(engine.loss.losses) == 3
    assert all(loss.beta.shape == (8 * kept,) for loss in engine.loss.losses)
    assert 0 < final['fs_proto'] <= 1
