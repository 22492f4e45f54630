"""Readers of the research datasets' official layouts, the image pipeline and bad data.

Each test writes a small tree in the dataset's exact layout (tests/data/fixtures.py: real JPEG and
PNG files, the real annotation formats, ``cars_annos.mat`` through scipy) and reads it back.
The real CUB subset in ../shared/data/cub100 is read when present.
"""
import http.server
import os
import re
import shutil
import tarfile
import threading
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

from gluon_dml.data import (BadImageError, BalancedBatchSampler, RGBTransform,
                            SuperClassBatchSampler, dataset_sampling, get_dataset, get_transform,
                            has_query_split, is_image_dataset, list_datasets)
from gluon_dml.data.download import download_dataset, extract
from gluon_dml.data.images import IMAGENET_MEAN, IMAGENET_STD, check_image_file, to_rgb
from gluon_dml.metrics import evaluate_embeddings

from . import fixtures as F
from ..helpers import SHARED

CUB100 = os.path.join(SHARED, 'data', 'cub100')
SMALL = dict(image_size=24, resize=24)


def unnormalize(x):
    """(3, H, W) normalised -> (H, W, 3) in [0, 255]."""
    return (x.transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN) * 255.0


# ----------------------------------------------------------------------------- registry

def test_registry_names_of_the_original_scripts():
    names = {n.lower() for n in list_datasets()}
    for n in ('cub_200_2011', 'cars196', 'ebayinclass', 'ebaycrossclass', 'inshop', 'sop', 'lfw',
              'folder', 'list'):
        assert n in names
    assert is_image_dataset('CUB_200_2011') and is_image_dataset('cub-200-2011')
    assert not is_image_dataset('omniglot')
    assert dataset_sampling('EbayInClass') == 'in-superclass'
    assert dataset_sampling('EbayCrossClass') == 'balanced'
    assert has_query_split('InShop') and not has_query_split('CUB_200_2011', '/nonexistent')


# ----------------------------------------------------------------------------- CUB

def test_cub_layout_counts_labels_and_class_split(tmp_path):
    F.write_cub(str(tmp_path), num_classes=6, per_class=4)
    train = get_dataset('CUB_200_2011', str(tmp_path), 'train', **SMALL)
    test = get_dataset('CUB_200_2011', str(tmp_path), 'test', **SMALL)
    assert len(train) == 12 and len(test) == 12
    assert train.num_classes == 3 and test.num_classes == 3
    assert train.class_names == ['001.Bird_Species_1', '002.Bird_Species_2', '003.Bird_Species_3']
    assert test.class_names[0] == '004.Bird_Species_4'
    assert sorted(np.unique(train.labels)) == [0, 1, 2]
    # every image of class 4 is in test, labelled 0, none in train
    assert all('004.Bird' in p for p, l in zip(test.paths, test.labels) if l == 0)
    assert not any('004.Bird' in p for p in train.paths)
    x, y = train[5]
    assert x.shape == (3, 24, 24) and x.dtype == np.float32 and y == train.labels[5]
    # the folder itself (not its parent) also works
    again = get_dataset('CUB', os.path.join(str(tmp_path), 'CUB_200_2011'), 'train', **SMALL)
    assert again.paths == train.paths


def test_cub_bounding_box_crop(tmp_path):
    F.write_cub(str(tmp_path), num_classes=2, per_class=2, boxes=True)
    opts = dict(image_size=16, resize=16, augment=False)
    whole = get_dataset('CUB_200_2011', str(tmp_path), 'train', **opts)
    boxed = get_dataset('CUB_200_2011', str(tmp_path), 'train', crop_boxes=True, **opts)
    assert whole.boxes is None and boxed.boxes.shape == (len(boxed), 4)
    colour = np.array(F.PALETTE[0], np.float64)
    in_box = unnormalize(boxed[0][0]).reshape(-1, 3).mean(0)
    outside = unnormalize(whole[0][0]).reshape(-1, 3).mean(0)
    # cropped: the whole picture is the class colour; uncropped: the grey border shows
    assert np.abs(in_box - colour).max() < 12
    assert np.abs(outside - colour).max() > 20


def test_cub_box_crop_without_the_file_warns(tmp_path):
    F.write_cub(str(tmp_path), num_classes=2, per_class=2, boxes=False)
    with pytest.warns(UserWarning, match='bounding_boxes.txt'):
        ds = get_dataset('CUB_200_2011', str(tmp_path), 'train', crop_boxes=True, **SMALL)
    assert ds.boxes is None


def test_cub_box_file_without_a_box_for_every_image_is_named(tmp_path):
    """bounding_boxes.txt lacking one image's line (or listing one twice): --crop-boxes turned the
    crop off for every image without a word; now one sentence naming the file and the id."""
    F.write_cub(str(tmp_path), num_classes=2, per_class=2, boxes=True)
    box_file = tmp_path / 'CUB_200_2011' / 'bounding_boxes.txt'
    lines = box_file.read_text().splitlines()
    box_file.write_text('\n'.join(lines[:2] + lines[3:]) + '\n')
    with pytest.raises(ValueError) as e:
        get_dataset('CUB_200_2011', str(tmp_path), 'train', crop_boxes=True, **SMALL)
    assert str(e.value) == ('%s has no box for image id 3 (1 image(s) of images.txt have none); '
                            '--crop-boxes needs one per image: restore the file, or drop '
                            '--crop-boxes.' % box_file)
    assert len(get_dataset('CUB_200_2011', str(tmp_path), 'train', **SMALL)) == 2  # not read without
    box_file.write_text('\n'.join(lines + [lines[0]]) + '\n')
    with pytest.raises(ValueError, match=r'bounding_boxes.txt lists image id 1 twice \(lines 1 and 5\)'):
        get_dataset('CUB_200_2011', str(tmp_path), 'train', crop_boxes=True, **SMALL)


def test_cub_missing_root_and_files_name_path_and_layout(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        get_dataset('CUB_200_2011', str(tmp_path / 'nowhere'), 'train')
    msg = str(e.value)
    assert 'nowhere' in msg and 'images.txt' in msg and 'Run gluon-dml download CUB_200_2011 --root ' in msg
    F.write_cub(str(tmp_path), num_classes=2, per_class=2)
    os.remove(str(tmp_path / 'CUB_200_2011' / 'image_class_labels.txt'))
    with pytest.raises(FileNotFoundError, match='image_class_labels.txt'):
        get_dataset('CUB_200_2011', str(tmp_path), 'train')
    with pytest.raises(FileNotFoundError, match='--data-path'):
        get_dataset('CUB_200_2011', None, 'train')


def test_a_data_path_one_folder_off_or_a_file_names_the_right_folder(tmp_path):
    """--data-path one folder above or below the right one, or one of the dataset's files: the
    sentence names the folder to pass (it advised downloading the dataset again, into the
    sub-folder or the file given, e.g. --root .../images.txt)."""
    cub = F.write_cub(str(tmp_path / 'cub'), num_classes=2, per_class=2)
    cars = F.write_cars(str(tmp_path / 'cars'), num_classes=2, per_class=2)
    sop = F.write_sop(str(tmp_path / 'sop'), num_super=1, classes_per_super=2, per_class=2)
    shop = F.write_inshop(str(tmp_path / 'shop'), train_items=2, test_items=2)
    cases = [('CUB_200_2011', str(tmp_path), str(tmp_path / 'cub')),            # the parent
             ('CUB_200_2011', os.path.join(cub, 'images'), cub),                 # a child
             ('CUB_200_2011', os.path.join(cub, 'images', '001.Bird_Species_1'), cub),
             ('CUB_200_2011', os.path.join(cub, 'images.txt'), cub),             # a file
             ('Cars196', os.path.join(cars, 'car_ims'), cars),
             ('Cars196', os.path.join(cars, 'cars_annos.mat'), cars),
             ('SOP', os.path.join(sop, 'bicycle_final'), sop),
             ('SOP', os.path.join(sop, 'Ebay_train.txt'), sop),
             ('InShop', os.path.join(shop, 'img'), shop),
             ('InShop', os.path.join(shop, 'list_eval_partition.txt'), shop)]
    for name, given, right in cases:
        with pytest.raises(FileNotFoundError) as e:
            get_dataset(name, given, 'train', **SMALL)
        msg = str(e.value)
        assert msg.endswith('It is in %s: pass --data-path %s.' % (right, right)), (given, msg)
        assert 'gluon-dml download' not in msg
        if os.path.isfile(given):
            assert ('not found: --data-path %s is a file, not the folder the archive unpacks into;'
                    % given) in msg
        assert len(get_dataset(name, right, 'train', **SMALL)) > 0
    # nothing of the dataset nearby: the download advice as before
    with pytest.raises(FileNotFoundError, match='Run gluon-dml download CUB_200_2011 --root '):
        get_dataset('CUB_200_2011', os.path.join(cars, 'car_ims'), 'train', **SMALL)


def test_a_listed_image_that_is_missing_is_named(tmp_path):
    base = F.write_cub(str(tmp_path), num_classes=2, per_class=3)
    gone = os.path.join(base, 'images', '001.Bird_Species_1', 'Bird_Species_1_0002.jpg')
    os.remove(gone)
    with pytest.raises(FileNotFoundError, match='Bird_Species_1_0002.jpg'):
        get_dataset('CUB_200_2011', str(tmp_path), 'train', **SMALL)
    ds = get_dataset('CUB_200_2011', str(tmp_path), 'train', skip_bad_images=True, **SMALL)
    assert len(ds) == 2 and ds.skipped[0][0] == gone


def test_a_split_with_no_image_there_says_so(tmp_path):
    """Every listed image of a split absent (cars_annos.mat without car_ims/ unpacked): it said
    '12 image(s) ... are missing ... pass --skip-bad-images to leave them out', which then left
    out all of them and ended in 'Cars196 train has no images.'"""
    F.write_cars(str(tmp_path), num_classes=4, per_class=3)
    shutil.rmtree(str(tmp_path / 'car_ims'))
    first = str(tmp_path / 'car_ims' / '000001.jpg')
    with pytest.raises(FileNotFoundError) as e:
        get_dataset('Cars196', str(tmp_path), 'train', **SMALL)
    assert str(e.value) == ('None of the 6 image(s) listed for Cars196 train exists, first: %s; the '
                            'images are not where the listing expects them (not unpacked yet, or '
                            'unpacked elsewhere).' % first)
    with pytest.raises(ValueError) as e, pytest.warns(UserWarning, match='left out 6'):
        get_dataset('Cars196', str(tmp_path), 'test', skip_bad_images=True, **SMALL)
    assert str(e.value) == ('--skip-bad-images left out all 6 image(s) of Cars196 test, e.g. %s '
                            '(missing); there is nothing to evaluate.'
                            % str(tmp_path / 'car_ims' / '000007.jpg'))


@pytest.mark.skipif(not os.path.isdir(CUB100), reason='../shared/data/cub100 not present')
def test_real_cub_subset_split():
    train = get_dataset('CUB_200_2011', CUB100, 'train')
    test = get_dataset('CUB_200_2011', CUB100, 'test')
    assert (len(train), train.num_classes) == (2949, 50)
    assert (len(test), test.num_classes) == (2953, 50)
    assert test.class_names[0].startswith('051.')
    x, _ = test[0]
    assert x.shape == (3, 224, 224) and np.isfinite(x).all()


# ----------------------------------------------------------------------------- Cars196

def test_cars196_mat_file_split_and_boxes(tmp_path):
    F.write_cars(str(tmp_path), num_classes=6, per_class=4)
    train = get_dataset('Cars196', str(tmp_path), 'train', **SMALL)
    test = get_dataset('Cars196', str(tmp_path), 'test', **SMALL)
    assert (len(train), train.num_classes, len(test), test.num_classes) == (12, 3, 12, 3)
    assert train.class_names[0] == 'Car Maker Model 1 2012'
    assert test.class_names[0] == 'Car Maker Model 4 2012'
    # the official train/test flag is ignored: both halves of every class are in its split
    assert np.bincount(train.labels).tolist() == [4, 4, 4]
    boxed = get_dataset('Cars196', str(tmp_path), 'train', crop_boxes=True, image_size=16,
                        resize=16, augment=False)
    np.testing.assert_allclose(boxed.boxes[0], [12, 6, 44, 34])
    assert np.abs(unnormalize(boxed[0][0]).reshape(-1, 3).mean(0) - F.PALETTE[0]).max() < 12


def test_cars196_bad_annotation_file(tmp_path):
    from scipy.io import savemat
    savemat(str(tmp_path / 'cars_annos.mat'), {'something_else': np.zeros(3)})
    with pytest.raises(ValueError, match='not the Cars196 annotation file'):
        get_dataset('Cars196', str(tmp_path), 'train')
    with pytest.raises(FileNotFoundError, match='cars_annos.mat'):
        get_dataset('Cars196', str(tmp_path / 'empty_dir_missing'), 'train')


# ----------------------------------------------------------------------------- SOP

def test_sop_files_header_super_classes(tmp_path):
    F.write_sop(str(tmp_path), num_super=3, classes_per_super=4, per_class=3)
    train = get_dataset('EbayCrossClass', str(tmp_path), 'train', **SMALL)
    test = get_dataset('SOP', str(tmp_path), 'test', **SMALL)
    assert (len(train), train.num_classes, len(test), test.num_classes) == (18, 6, 18, 6)
    assert train.super_labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert not set(train.paths) & set(test.paths)
    assert train.paths[0].endswith(os.path.join('bicycle_final', '111001_0.JPG'))
    # a copy without the header line keeps every row
    listing = tmp_path / 'Stanford_Online_Products' / 'Ebay_train.txt'
    listing.write_text('\n'.join(listing.read_text().splitlines()[1:]) + '\n')
    again = get_dataset('EbayCrossClass', str(tmp_path), 'train', **SMALL)
    assert (len(again), again.paths[0]) == (18, train.paths[0])


def test_in_class_sampler_keeps_each_batch_in_one_super_class(tmp_path):
    F.write_sop(str(tmp_path), num_super=3, classes_per_super=8, per_class=3)
    train = get_dataset('EbayInClass', str(tmp_path), 'train', **SMALL)
    sampler = SuperClassBatchSampler(train.labels, train.super_labels, batch_size=6, batch_k=2,
                                     num_batches=30, seed=3)
    seen = set()
    for batch in sampler.batches(1):
        supers = set(train.super_labels[batch].tolist())
        assert len(supers) == 1
        seen |= supers
        labels = train.labels[batch]
        assert len(set(labels.tolist())) == 3 and all((labels[i::2] == labels[::2]).all() for i in range(1))
    assert seen == {0, 1, 2}
    assert sampler.batches(1) == sampler.batches(1) != sampler.batches(2)
    # cross-class batches mix super-classes
    cross = BalancedBatchSampler(train.labels, 6, 2, num_batches=30, seed=3)
    assert any(len(set(train.super_labels[b].tolist())) > 1 for b in cross.batches(1))


def test_in_class_sampler_errors():
    with pytest.raises(ValueError, match='several super-classes'):
        SuperClassBatchSampler([0, 0, 1, 1], [0, 1, 0, 0], batch_size=2, batch_k=1)
    with pytest.raises(ValueError, match='one super-class per item'):
        SuperClassBatchSampler([0, 0, 1, 1], [0, 1], batch_size=2, batch_k=1)


# ----------------------------------------------------------------------------- In-Shop

def test_inshop_query_gallery_separate_with_shared_labels(tmp_path):
    F.write_inshop(str(tmp_path), train_items=6, test_items=5, per_item=(2, 3))
    train = get_dataset('InShop', str(tmp_path), 'train', **SMALL)
    query = get_dataset('InShop', str(tmp_path), 'query', **SMALL)
    gallery = get_dataset('InShop', str(tmp_path), 'gallery', **SMALL)
    test = get_dataset('InShop', str(tmp_path), 'test', **SMALL)
    assert (len(train), train.num_classes) == (18, 6)
    assert len(query) == 10 and len(gallery) == 15 and test.paths == gallery.paths
    assert not set(query.paths) & set(gallery.paths) and not set(train.paths) & set(query.paths)
    # one numbering: an item's label is the same in query and gallery
    item = lambda p: p.split(os.sep)[-2]
    q_items = {item(p): l for p, l in zip(query.paths, query.labels)}
    g_items = {item(p): l for p, l in zip(gallery.paths, gallery.labels)}
    assert q_items == g_items and len(q_items) == 5
    # evaluation searches queries in the gallery only
    rng = np.random.RandomState(0)
    centres = rng.normal(size=(5, 8))
    q = centres[query.labels] + 0.01 * rng.normal(size=(10, 8))
    g = centres[gallery.labels] + 0.01 * rng.normal(size=(15, 8))
    m = evaluate_embeddings(g, gallery.labels, query_embeddings=q, query_labels=query.labels)
    assert m['recall@1'] == 1.0 and m['num_queries'] == 10


def test_inshop_layout_under_eval_and_img_folders(tmp_path):
    F.write_inshop(str(tmp_path / 'Img'), train_items=2, test_items=2)
    os.makedirs(str(tmp_path / 'Eval'))
    os.replace(str(tmp_path / 'Img' / 'list_eval_partition.txt'),
               str(tmp_path / 'Eval' / 'list_eval_partition.txt'))
    assert len(get_dataset('InShop', str(tmp_path), 'query', **SMALL)) == 4
    with open(str(tmp_path / 'Eval' / 'list_eval_partition.txt'), 'a') as f:
        f.write('img/x.jpg id_1 validation\n')
    with pytest.raises(ValueError, match='evaluation_status'):
        get_dataset('InShop', str(tmp_path), 'query')


# ----------------------------------------------------------------------------- LFW

def test_lfw_keeps_people_with_two_images(tmp_path):
    F.write_lfw(str(tmp_path), counts=(3, 1, 2, 4, 1, 2, 3, 2))
    train = get_dataset('LFW', str(tmp_path), 'train', **SMALL)
    test = get_dataset('LFW', str(tmp_path), 'test', **SMALL)
    # 6 people with >= 2 images: 3 train (9 images), 3 test (7 images); singles left out
    assert (train.num_classes, test.num_classes, len(train), len(test)) == (3, 3, 9, 7)
    assert 'Person_Name01' not in train.class_names + test.class_names
    assert train.class_names == ['Person_Name00', 'Person_Name02', 'Person_Name03']


# ----------------------------------------------------------------------------- own data

def test_image_folder_with_split_classes(tmp_path):
    F.write_folder(str(tmp_path), num_classes=6, per_class=3)
    train = get_dataset('folder', str(tmp_path), 'train', **SMALL)
    test = get_dataset('folder', str(tmp_path), 'test', **SMALL)
    assert train.class_names == ['class_a', 'class_b', 'class_c'] and len(test) == 9
    four = get_dataset('folder', str(tmp_path), 'train', split_classes='4', **SMALL)
    assert four.num_classes == 4
    frac = get_dataset('folder', str(tmp_path), 'test', split_classes=1 / 3., **SMALL)
    assert frac.class_names == ['class_c', 'class_d', 'class_e', 'class_f']
    with pytest.raises(ValueError, match='--split-classes'):
        get_dataset('folder', str(tmp_path), 'train', split_classes=6)


def test_image_folder_with_split_subfolders(tmp_path):
    F.write_folder(str(tmp_path / 'train'), num_classes=3)
    F.write_folder(str(tmp_path / 'query'), num_classes=2, per_class=1)
    F.write_folder(str(tmp_path / 'gallery'), num_classes=3, per_class=2)
    assert has_query_split('folder', str(tmp_path))
    query = get_dataset('folder', str(tmp_path), 'query', **SMALL)
    gallery = get_dataset('folder', str(tmp_path), 'test', **SMALL)
    assert len(query) == 2 and len(gallery) == 6
    assert query.class_names == gallery.class_names == ['class_a', 'class_b', 'class_c']


def test_list_file(tmp_path):
    F.write_folder(str(tmp_path / 'imgs'), num_classes=4, per_class=2, ext='.jpg')
    lines = ['# my catalogue']
    for c in 'abcd':
        for i in range(2):
            lines.append('imgs/class_%s/img%d.jpg %s' % (c, i, ord(c) - 96))
    (tmp_path / 'all.txt').write_text('\n'.join(lines) + '\n')
    train = get_dataset('list', str(tmp_path / 'all.txt'), 'train', **SMALL)
    assert train.class_names == ['1', '2'] and len(train) == 4
    split_lines = [ln + ' ' + ('train' if ln.endswith((' 1', ' 2')) else
                                 'query' if ln.split()[0].endswith('img0.jpg') else 'gallery')
                   for ln in lines[1:]]
    (tmp_path / 'split.txt').write_text('\n'.join(split_lines) + '\n')
    assert has_query_split('list', str(tmp_path / 'split.txt'))
    q = get_dataset('list', str(tmp_path / 'split.txt'), 'query', **SMALL)
    g = get_dataset('list', str(tmp_path / 'split.txt'), 'test', **SMALL)
    assert len(q) == 2 and len(g) == 2 and q.labels.tolist() == g.labels.tolist() == [0, 1]
    (tmp_path / 'bad.txt').write_text('imgs/class_a/img0.jpg 1 validation\n')
    with pytest.raises(ValueError, match='bad.txt, line 1'):
        get_dataset('list', str(tmp_path / 'bad.txt'), 'train')
    with pytest.raises(FileNotFoundError, match='no_such_list.txt'):
        get_dataset('list', str(tmp_path / 'no_such_list.txt'), 'train')


# ----------------------------------------------------------------------------- bad images

def test_a_list_file_with_a_byte_order_mark_embeds_as_it_trains(tmp_path):
    """A training list saved with a byte-order mark (Windows Notepad's UTF-8) trains (--data list
    drops the mark); embed / index read it through list_images, which kept the mark in the first
    path: '1 image(s) listed in LIST do not exist, first: DIR/\\ufeffshoes/...'."""
    from gluon_dml.data.sources import list_images
    F.write_folder(str(tmp_path / 'imgs'), num_classes=2, per_class=2)
    rel = sorted(os.path.relpath(str(p), str(tmp_path)) for p in (tmp_path / 'imgs').glob('*/*.png'))
    text = ''.join('%s %s\n' % (r, r.split(os.sep)[1]) for r in rel)
    (tmp_path / 'bom.txt').write_bytes(b'\xef\xbb\xbf' + text.encode())
    assert len(get_dataset('list', str(tmp_path / 'bom.txt'), 'train', **SMALL)) == 2
    paths, labels = list_images(str(tmp_path / 'bom.txt'))
    assert paths == [os.path.join(str(tmp_path), r) for r in rel]
    assert labels == [r.split(os.sep)[1] for r in rel]
    (tmp_path / 'paths.txt').write_bytes(b'\xef\xbb\xbf' + '\n'.join(rel).encode())   # paths alone
    assert list_images(str(tmp_path / 'paths.txt')) == ([os.path.join(str(tmp_path), r) for r in rel],
                                                         None)


def test_an_empty_image_file_is_named_when_the_dataset_is_read(tmp_path):
    """A 0-byte image (a download or unpacking cut short): named when the split is read; before,
    the run trained until the batch holding it and stopped with 'cannot identify image file
    <_io.BufferedReader name=...>'. --skip-bad-images leaves it out as before."""
    base = F.write_cub(str(tmp_path), num_classes=2, per_class=3)
    empty = os.path.join(base, 'images', '001.Bird_Species_1', 'Bird_Species_1_0002.jpg')
    open(empty, 'wb').close()
    with pytest.raises(ValueError) as e:
        get_dataset('CUB_200_2011', str(tmp_path), 'train', **SMALL)
    assert str(e.value) == ('1 image file(s) listed for CUB_200_2011 train are empty (0 bytes), '
                            'first: %s; download or unpack them again (or pass --skip-bad-images to '
                            'leave them out).' % empty)
    with pytest.warns(UserWarning, match=r'left out 1 unreadable .*\(empty file\)'):
        ds = get_dataset('CUB_200_2011', str(tmp_path), 'train', skip_bad_images=True, **SMALL)
    assert len(ds) == 2 and ds.skipped == [(empty, 'empty file')]


def test_corrupt_and_truncated_images_are_named_or_skipped(tmp_path):
    base = F.write_cub(str(tmp_path), num_classes=2, per_class=4, boxes=False)
    folder = os.path.join(base, 'images', '001.Bird_Species_1')
    corrupt = os.path.join(folder, 'Bird_Species_1_0001.jpg')
    truncated = os.path.join(folder, 'Bird_Species_1_0003.jpg')
    with open(corrupt, 'wb') as f:
        f.write(b'this is not a jpeg at all' * 10)
    F.truncate(truncated, 0.4)
    assert check_image_file(corrupt).startswith('not an image')
    assert 'truncated' in check_image_file(truncated)
    ds = get_dataset('CUB_200_2011', str(tmp_path), 'train', **SMALL)
    for path in (corrupt, truncated):
        with pytest.raises(BadImageError) as e:
            ds[ds.paths.index(path)]
        assert path in str(e.value) and '--skip-bad-images' in str(e.value)
        assert '_io.' not in str(e.value)        # PIL's words named '<_io.BufferedReader ...>'
        assert path == truncated or str(e.value) == (
            "Cannot decode the image %s (cannot identify image file %r); replace or delete the "
            "file, or pass --skip-bad-images to leave unreadable images out." % (corrupt, corrupt))
    with pytest.warns(UserWarning, match='left out 2 unreadable'):
        ok = get_dataset('CUB_200_2011', str(tmp_path), 'train', skip_bad_images=True, **SMALL)
    assert len(ok) == 2 and sorted(p for p, _ in ok.skipped) == sorted([corrupt, truncated])
    assert all(np.isfinite(ok[i][0]).all() for i in range(len(ok)))


@pytest.mark.parametrize('mode', ['L', 'CMYK', 'RGBA', 'P', 'LA', 'I;16'])
def test_grey_cmyk_alpha_palette_images_become_rgb(tmp_path, mode):
    img = F.make_image(2, 0, (30, 20))
    if mode == 'I;16':
        arr = (np.asarray(img.convert('L'), np.uint16) * 257)
        img = Image.fromarray(arr.astype(np.uint16))
        assert img.mode.startswith('I')
    elif mode == 'P':
        img = img.convert('P', palette=Image.ADAPTIVE)
    else:
        img = img.convert(mode)
    path = str(tmp_path / ('x.jpg' if mode in ('L', 'CMYK') else 'x.png'))
    img.save(path)
    t = get_transform('CUB_200_2011', image_size=16)
    x = t(path)
    assert x.shape == (3, 16, 16) and np.isfinite(x).all()
    assert to_rgb(Image.open(path)).mode == 'RGB'


def test_transparent_pixels_become_white():
    img = Image.new('RGBA', (4, 4), (255, 0, 0, 0))
    assert to_rgb(img).getpixel((0, 0)) == (255, 255, 255)


def test_a_class_with_one_image_is_reported_not_a_crash(tmp_path):
    F.write_folder(str(tmp_path), num_classes=4, per_class=2)
    os.remove(str(tmp_path / 'class_a' / 'img1.png'))
    with pytest.warns(UserWarning, match="single image .*class_a"):
        ds = get_dataset('folder', str(tmp_path), 'train', **SMALL)
    assert np.bincount(ds.labels).tolist() == [1, 2]


# ----------------------------------------------------------------------------- transforms

def test_training_augmentation_is_random_but_reproducible(tmp_path):
    F.write_folder(str(tmp_path), num_classes=4, per_class=2)
    ds = get_dataset('folder', str(tmp_path), 'train', image_size=24, color_jitter=0.3, seed=5)
    ds.set_epoch(1)
    a, b = ds[0][0], ds[0][0]
    np.testing.assert_array_equal(a, b)
    ds.set_epoch(2)
    assert not np.array_equal(a, ds[0][0])
    other = get_dataset('folder', str(tmp_path), 'train', image_size=24, color_jitter=0.3, seed=5)
    other.set_epoch(1)
    np.testing.assert_array_equal(a, other[0][0])
    test = get_dataset('folder', str(tmp_path), 'test', image_size=24)
    np.testing.assert_array_equal(test[0][0], test[0][0])


def test_test_transform_resize_and_centre_crop():
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, 14:66] = 255                       # a white band in the middle
    x = RGBTransform(image_size=20, resize=20)(Image.fromarray(arr))
    # shorter side 40 -> 20, so 80 -> 40 wide (band at 7..33); the centre 20 columns are white
    np.testing.assert_allclose(unnormalize(x), 255.0, atol=0.5)
    x = RGBTransform(image_size=20, resize=40)(Image.fromarray(arr))
    assert unnormalize(x).mean() > 250       # still inside the band at a larger resize
    with pytest.raises(ValueError, match='--resize'):
        RGBTransform(image_size=224, resize=100)
    t = RGBTransform(image_size=224, augment=False)
    assert t.resize == 256 and t.output_shape == (3, 224, 224)


def test_random_resized_crop_stays_inside_the_image():
    from gluon_dml.data.transforms import _random_resized_box
    rng = np.random.default_rng(0)
    for w, h in ((50, 30), (30, 200), (500, 375)):
        for _ in range(50):
            l, t, r, b = _random_resized_box(w, h, rng, (0.16, 1.0), (0.75, 4 / 3.))
            assert 0 <= l < r <= w and 0 <= t < b <= h


# ----------------------------------------------------------------------------- download

def test_download_unpacks_archives_and_reports_failures(tmp_path):
    src = tmp_path / 'src'
    F.write_lfw(str(src), counts=(2, 2))
    archive = str(tmp_path / 'lfw.tgz')
    with tarfile.open(archive, 'w:gz') as tar:
        tar.add(str(src / 'lfw'), arcname='lfw')
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = 'http://127.0.0.1:%d/lfw.tgz' % server.server_address[1]
        root = str(tmp_path / 'data')
        download_dataset('LFW', root, urls=[(url, 'lfw.tgz')], progress=False)
        assert len(get_dataset('LFW', root, 'train', **SMALL)) == 2
        assert not os.path.exists(os.path.join(root, 'lfw.tgz'))       # archive removed
        with pytest.raises(ValueError) as e:
            download_dataset('LFW', str(tmp_path / 'x'), progress=False,
                             urls=[('http://127.0.0.1:%d/missing.tgz' % server.server_address[1],
                                    'lfw.tgz')])
        assert 'missing.tgz' in str(e.value) and 'vis-www.cs.umass.edu' in str(e.value)
        assert not os.path.exists(str(tmp_path / 'x' / 'lfw.tgz.part'))
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(ValueError, match='cannot be downloaded automatically'):
        download_dataset('InShop', str(tmp_path / 'y'))
    # the command's failure is its exit status, so `gluon-dml download X && train ...` stops
    from ..helpers import run_command
    proc = run_command('download', 'InShop', '--root', tmp_path / 'z')
    assert proc.returncode == 2 and 'cannot be downloaded automatically' in proc.stderr
    # a --root that is a file, or under one: one line naming the file (was 'File exists (...)')
    (tmp_path / 'afile').write_text('x')
    for root in (tmp_path / 'afile', tmp_path / 'afile' / 'sub'):
        proc = run_command('download', 'cub', '--root', root)
        assert proc.returncode == 2 and proc.stderr.strip() == (
            'error: --root %s cannot be a folder: %s is a file. Give a folder to unpack '
            'CUB_200_2011 into.' % (root, tmp_path / 'afile')), proc.stderr


def test_an_archive_that_is_a_web_page_or_cut_is_named(tmp_path):
    # a page saved as lfw.tgz was left as it was and the command said 'LFW is in ROOT' (exit 0);
    # a cut .tgz was 'unexpected EOFError: Compressed file ended ...' (exit 1)
    src = tmp_path / 'src'
    F.write_lfw(str(src), counts=(2, 2))
    with tarfile.open(str(tmp_path / 'full.tgz'), 'w:gz') as tar:
        tar.add(str(src / 'lfw'), arcname='lfw')
    whole = (tmp_path / 'full.tgz').read_bytes()
    for content, message in ((b'<html>Sign in</html>', r'not a tar or zip archive \(it begins b.<ht'),
                             (whole[:len(whole) // 2], 'is a damaged or cut archive')):
        root = tmp_path / ('root%d' % len(content))
        root.mkdir()
        (root / 'lfw.tgz').write_bytes(content)
        with pytest.raises(ValueError, match=message):
            download_dataset('LFW', str(root), urls=[('http://unused/lfw.tgz', 'lfw.tgz')])
        assert os.listdir(str(root)) == ['lfw.tgz']


def test_download_to_an_empty_root_is_refused(capsys):
    from gluon_dml.data.download import main
    assert main(['cub', '--root', ' ']) == 2        # was "[Errno 2] No such file or directory: ''"
    assert capsys.readouterr().err == 'error: --root is empty; give the folder to unpack cub into.\n'


def test_extract_refuses_members_outside_the_root(tmp_path):
    evil = str(tmp_path / 'evil.zip')
    with zipfile.ZipFile(evil, 'w') as zf:
        zf.writestr('../outside.txt', 'x')
    with pytest.raises(ValueError, match='outside'):
        extract(evil, str(tmp_path / 'root'))
    assert not (tmp_path / 'outside.txt').exists()


def test_layout_mistakes_are_named_not_silent(tmp_path):
    """Mistakes in the official files, each one sentence naming the file (and line), where
    they were dropped rows, a count-less bug report or inflated metrics."""
    # CUB: a class id that is no number, a bad box value, a class classes.txt does not list
    F.write_cub(str(tmp_path / 'cub'), num_classes=4, per_class=2)
    base = tmp_path / 'cub' / 'CUB_200_2011'
    labels = (base / 'image_class_labels.txt').read_text()
    (base / 'image_class_labels.txt').write_text(labels.replace('\n2 ', '\n2 one', 1).replace('one1', 'one'))
    with pytest.raises(ValueError, match=r'image_class_labels.txt, line 2: field 2 must be a number'):
        get_dataset('CUB_200_2011', str(tmp_path / 'cub'), 'train', **SMALL)
    lines = labels.splitlines()
    lines[1] = lines[1].split()[0] + ' 9'
    (base / 'image_class_labels.txt').write_text('\n'.join(lines) + '\n')
    with pytest.raises(ValueError, match=r'has class 9 in image_class_labels.txt, which classes.txt '
                                         r'does not list \(1 image'):
        get_dataset('CUB_200_2011', str(tmp_path / 'cub'), 'train', **SMALL)
    (base / 'image_class_labels.txt').write_text(labels)
    boxes = (base / 'bounding_boxes.txt').read_text().splitlines()
    boxes[0] = ' '.join(boxes[0].split()[:1] + ['x5.0'] + boxes[0].split()[2:])
    (base / 'bounding_boxes.txt').write_text('\n'.join(boxes) + '\n')
    with pytest.raises(ValueError, match=r"bounding_boxes.txt, line 1: field 2 must be a number, got 'x5.0'"):
        get_dataset('CUB_200_2011', str(tmp_path / 'cub'), 'train', crop_boxes=True, **SMALL)
    # Cars196: a file that is not a MAT file
    (tmp_path / 'cars').mkdir()
    (tmp_path / 'cars' / 'cars_annos.mat').write_text('garbage\n')
    with pytest.raises(ValueError, match='is not the Cars196 annotation file'):
        get_dataset('Cars196', str(tmp_path / 'cars'), 'train', **SMALL)
    # SOP: test products that are training products
    F.write_sop(str(tmp_path / 'sop'))
    sop = tmp_path / 'sop' / 'Stanford_Online_Products'
    (sop / 'Ebay_test.txt').write_text((sop / 'Ebay_train.txt').read_text())
    with pytest.raises(ValueError, match='share .* product id.*open-set'):
        get_dataset('SOP', str(tmp_path / 'sop'), 'test', **SMALL)
    # In-Shop: the listing without its count and header lines keeps every row
    F.write_inshop(str(tmp_path / 'shop'))
    listing = tmp_path / 'shop' / 'list_eval_partition.txt'
    full = len(get_dataset('InShop', str(tmp_path / 'shop'), 'train', **SMALL))
    listing.write_text('\n'.join(listing.read_text().splitlines()[2:]) + '\n')
    assert len(get_dataset('InShop', str(tmp_path / 'shop'), 'train', **SMALL)) == full == 18
    # a list file: saved with a byte-order mark it reads; an image listed twice is refused
    F.write_folder(str(tmp_path / 'imgs'), num_classes=4, per_class=2)
    paths = sorted(str(p) for p in (tmp_path / 'imgs').glob('*/*.png'))
    text = ''.join('%s %s\n' % (p, os.path.basename(os.path.dirname(p))) for p in paths)
    (tmp_path / 'bom.txt').write_bytes(b'\xef\xbb\xbf' + text.encode())
    assert len(get_dataset('list', str(tmp_path / 'bom.txt'), 'train', **SMALL)) == 4
    (tmp_path / 'dup.txt').write_text(text + '%s %s\n' % (paths[-1], os.path.basename(os.path.dirname(paths[-1]))))
    with pytest.raises(ValueError, match=r'lists .* twice \(lines 8 and 9\)'):
        get_dataset('list', str(tmp_path / 'dup.txt'), 'test', **SMALL)


def test_an_image_listed_twice_in_the_official_files_is_refused(tmp_path):
    """CUB's images.txt / image_class_labels.txt with an id twice, SOP's Ebay_*.txt with an image
    twice: one sentence naming the file and both lines (a repeated CUB id silently dropped the
    other image, or gave it the wrong class; a repeated SOP row counted the image twice, so it
    found itself as its nearest neighbour and Recall@1 rose)."""
    base = tmp_path / 'cub' / 'CUB_200_2011'
    F.write_cub(str(tmp_path / 'cub'), num_classes=4, per_class=2)
    full = len(get_dataset('CUB_200_2011', str(tmp_path / 'cub'), 'train', **SMALL))
    for name, line in (('images.txt', 3), ('image_class_labels.txt', 3), ('images.txt', 2)):
        text = (base / name).read_text()
        lines = text.splitlines()
        if line == 2:                  # the same image under a second id
            lines[1] = lines[1].split()[0] + ' ' + lines[0].split()[1]
        else:
            lines[line - 1] = str(line - 1) + ' ' + lines[line - 1].split()[1]
        (base / name).write_text('\n'.join(lines) + '\n')
        with pytest.raises(ValueError) as e:
            get_dataset('CUB_200_2011', str(tmp_path / 'cub'), 'train', **SMALL)
        what = 'image %s' % lines[0].split()[1] if line == 2 else 'image id %d' % (line - 1)
        assert str(e.value).startswith('%s lists %s twice (lines %d and %d): '
                                       % (base / name, what, line - 1, line)), str(e.value)
        (base / name).write_text(text)
    assert len(get_dataset('CUB_200_2011', str(tmp_path / 'cub'), 'train', **SMALL)) == full
    F.write_sop(str(tmp_path / 'sop'))
    train = tmp_path / 'sop' / 'Stanford_Online_Products' / 'Ebay_train.txt'
    rows = train.read_text().splitlines()
    train.write_text('\n'.join(rows + ['99 ' + rows[1].split(' ', 1)[1]]) + '\n')
    with pytest.raises(ValueError, match=r'Ebay_train.txt lists image %s twice \(lines 2 and %d\)'
                       % (re.escape(rows[1].split()[3]), len(rows) + 1)):
        get_dataset('SOP', str(tmp_path / 'sop'), 'train', **SMALL)


def test_sop_super_class_ids_are_checked_where_they_are_read(tmp_path):
    """A super_class_id of 0 or a product under two super-classes: one sentence naming the file
    and the images (it was the sampler's 'Class 0 lies in several super-classes (-1, 0)', which
    names a renumbered label and neither the file nor the product)."""
    F.write_sop(str(tmp_path))
    train = tmp_path / 'Stanford_Online_Products' / 'Ebay_train.txt'
    rows = train.read_text().splitlines()
    image_id, product, _, image = rows[2].split()
    for super_id, sentence in (
            ('0', '%s: image %s has super_class_id 0; the ids are whole numbers from 1 (1-12 in the '
                  'official files).' % (train, image)),
            ('2', '%s: product %s is in super-class 1 (image %s) and in super-class 2 (image %s); '
                  'each product belongs to one.' % (train, product, rows[1].split()[3], image))):
        train.write_text('\n'.join(rows[:2] + [' '.join((image_id, product, super_id, image))]
                                   + rows[3:]) + '\n')
        for data in ('EbayInClass', 'SOP'):
            with pytest.raises(ValueError) as e:
                get_dataset(data, str(tmp_path), 'train', **SMALL)
            assert str(e.value) == sentence


@pytest.mark.parametrize('value', ['nan', 'inf', '-Infinity'])
def test_a_box_value_that_is_no_finite_number_is_named(tmp_path, value):
    """bounding_boxes.txt with nan / inf: one sentence naming the file and line when the dataset
    is read; before, the first batch holding that image stopped the run with 'cannot convert
    float NaN to integer' or 'unexpected OverflowError (a bug?)'."""
    base = tmp_path / 'CUB_200_2011'
    F.write_cub(str(tmp_path), num_classes=2, per_class=2)
    boxes = (base / 'bounding_boxes.txt').read_text().splitlines()
    boxes[1] = '2 %s 8.0 30.0 30.0' % value
    (base / 'bounding_boxes.txt').write_text('\n'.join(boxes) + '\n')
    with pytest.raises(ValueError) as e:
        get_dataset('CUB_200_2011', str(tmp_path), 'train', crop_boxes=True, **SMALL)
    assert str(e.value) == ('%s, line 2: field 2 must be a finite number, got %r.'
                            % (base / 'bounding_boxes.txt', value))


def test_an_annotation_file_cut_short_is_named(tmp_path):
    """images.txt, Ebay_*.txt or list_eval_partition.txt with no image line (empty, or only the
    header lines left by an unpacking cut short): the sentence names the file; it was
    '<dataset> train has no images.'"""
    base = F.write_cub(str(tmp_path / 'cub'), num_classes=2, per_class=2)
    sop = F.write_sop(str(tmp_path / 'sop'))
    shop = F.write_inshop(str(tmp_path / 'shop'))
    cases = [('CUB_200_2011', str(tmp_path / 'cub'), os.path.join(base, 'images.txt'), ''),
             ('SOP', str(tmp_path / 'sop'), os.path.join(sop, 'Ebay_train.txt'),
              'image_id class_id super_class_id path\n'),
             ('InShop', shop, os.path.join(shop, 'list_eval_partition.txt'),
              '0\nimage_name item_id evaluation_status\n')]
    for name, root, path, text in cases:
        with open(path, 'w') as f:
            f.write(text)
        with pytest.raises(ValueError) as e:
            get_dataset(name, root, 'train', **SMALL)
        assert str(e.value) == ('%s lists no images (it is empty, or holds only its header lines): '
                                'the file was cut short; unpack the archive again.' % path)


def test_inshop_items_both_trained_on_and_searched_are_refused(tmp_path):
    """A listing whose item is in train and in query / gallery (as SOP's shared product ids are
    refused): the test would measure items seen in training, inflating Recall@K without a word."""
    F.write_inshop(str(tmp_path), train_items=3, test_items=2)
    listing = tmp_path / 'list_eval_partition.txt'
    lines = listing.read_text().splitlines()
    row = lines[2].split()                       # the first train image of item id_00000001
    lines[2] = ' '.join([row[0], row[1], 'gallery'])
    listing.write_text('\n'.join(lines) + '\n')
    for split in ('train', 'query'):
        with pytest.raises(ValueError) as e:
            get_dataset('InShop', str(tmp_path), split, **SMALL)
        assert str(e.value) == ('%s puts 1 item(s) both in train and in query / gallery (e.g. '
                                'id_00000001): In-Shop is an open-set benchmark, its test items are '
                                'not trained on; the file is not the official one.' % listing)


def test_photo_datasets_default_to_mxnet_home(tmp_path, monkeypatch):
    """Without --data-path a photo dataset is read from $MXNET_HOME/datasets/NAME (what --help
    says); where that is missing the error names both."""
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'mxhome'))
    with pytest.raises(FileNotFoundError) as e:
        get_dataset('CUB_200_2011', None, 'train', **SMALL)
    assert 'needs --data-path' in str(e.value)
    assert str(tmp_path / 'mxhome' / 'datasets' / 'CUB_200_2011') in str(e.value)
    F.write_cub(str(tmp_path / 'mxhome' / 'datasets' / 'CUB_200_2011'), num_classes=4, per_class=2)
    assert len(get_dataset('CUB_200_2011', None, 'train', **SMALL)) == 4
