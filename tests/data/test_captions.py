"""Caption data: the vocabulary, padding, the Karpathy JSON and precomputed-feature readers on
fixture folders written in each layout, and the fashion3 example set."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from gluon_dml.data.captions import (CaptionPairs, GreyTransform, Vocabulary, load_caption_set,
                                     pad_captions, read_karpathy, tokenize)
from tests.helpers import FASHION, run_command


def test_vocabulary_keeps_words_seen_at_least_four_times():
    caps = [['a', 'dog'], ['a', 'dog'], ['a', 'dog'], ['a', 'cat'], ['a', 'cat', 'dog'], ['bird']]
    v = Vocabulary.build(caps, min_count=4)
    assert v.itos[:4] == ['<pad>', '<start>', '<end>', '<unk>']
    assert v.itos[4:] == ['a', 'dog']            # a: 5, dog: 4; cat: 2 and bird: 1 dropped
    assert v.encode(['a', 'cat', 'dog']) == [1, 4, 3, 5, 2]
    assert v.decode([1, 4, 3, 5, 2]) == ['a', 'dog']
    assert len(Vocabulary.build(caps, min_count=1)) == 4 + 4


def test_vocabulary_save_load_round_trip(tmp_path):
    v = Vocabulary.build([['x', 'y']] * 4)
    v.save(str(tmp_path / 'vocab.json'))
    w = Vocabulary.load(str(tmp_path / 'vocab.json'))
    assert w.itos == v.itos and w.encode(['y', 'z']) == v.encode(['y', 'z'])
    (tmp_path / 'bad.json').write_text(json.dumps({'itos': ['x']}))
    with pytest.raises(ValueError, match='not a vocabulary'):
        Vocabulary.load(str(tmp_path / 'bad.json'))


@pytest.mark.parametrize('content,message', [
    (None, 'vocab.json is missing: the run folder of a VSE run keeps its vocabulary there; the run '
           'folder is damaged.'),
    ('{"itos": ["<pad>", "<st', 'vocab.json is not valid JSON (Unterminated string'),
    ('\x00\x00', 'vocab.json is not valid JSON'),
    ('[1, 2]', 'vocab.json is not a vocabulary written by gluon-dml'),
    ('{"itos": 5}', 'vocab.json is not a vocabulary written by gluon-dml'),
])
def test_a_damaged_vocabulary_names_its_file(tmp_path, content, message):
    # evaluate, embed, search-text and train-vse --resume of a run with a damaged vocab.json said
    # "[Errno 2] No such file or directory" or "Expecting value: line 1 column 1" (no file named)
    path = tmp_path / 'vocab.json'
    if content is not None:
        path.write_text(content)
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        Vocabulary.load(str(path))
    assert str(err.value).startswith(str(path)) and message in str(err.value), str(err.value)


def test_pad_captions_and_tokenize():
    tokens, lengths = pad_captions([[1, 5, 2], [1, 5, 6, 7, 2], [1, 2]])
    assert tokens.tolist() == [[1, 5, 2, 0, 0], [1, 5, 6, 7, 2], [1, 2, 0, 0, 0]]
    assert lengths.tolist() == [3, 5, 2]
    tokens, lengths = pad_captions([[1, 5, 6, 7, 2]], max_len=3)
    assert tokens.tolist() == [[1, 5, 2]] and lengths.tolist() == [3]
    assert tokenize('A T-shirt, then a bag.') == ['a', 't-shirt', 'then', 'a', 'bag']


def _write_karpathy(root, name='dataset_coco.json', filepath='val2014'):
    """A COCO-style fixture: images under root/filepath/, splits train/restval/val/test, one
    image with six captions, test captions with a word ('zebra') that training never shows."""
    os.makedirs(os.path.join(root, filepath), exist_ok=True)
    records = []
    plan = [('train', 'a red car on a road'), ('restval', 'a red car near a house'),
            ('train', 'a blue car on a road'), ('val', 'a car'), ('test', 'a zebra zebra zebra zebra')]
    for i, (split, text) in enumerate(plan):
        fname = 'im%d.jpg' % i
        Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(os.path.join(root, filepath, fname))
        n = 6 if i == 0 else 5
        sents = [{'raw': text + ' %d.' % k, 'tokens': tokenize(text)} for k in range(n)]
        records.append({'filepath': filepath, 'filename': fname, 'split': split, 'sentences': sents})
    with open(os.path.join(root, name), 'w') as f:
        json.dump({'images': records, 'dataset': 'coco'}, f)


def test_karpathy_reader_splits_restval_and_five_captions(tmp_path):
    root = str(tmp_path)
    _write_karpathy(root)
    paths, tokens, raw, ids = read_karpathy(root, 'coco', 'train')
    assert ids == ['im0.jpg', 'im1.jpg', 'im2.jpg']            # restval counts as training
    assert len(tokens) == 15 and raw[5].startswith('a red car near')
    assert all(os.path.isfile(p) for p in paths)
    cset = load_caption_set('coco', root, 'test')
    assert cset.num_images == 1 and len(cset) == 5
    img = cset.image(0)
    assert img.shape == (3, 224, 224) and img.dtype == np.float32
    # the vocabulary comes from the training captions only: 'zebra' (20 times in test) is unknown
    vocab = Vocabulary.build(load_caption_set('coco', root, 'train').captions)
    assert 'zebra' not in vocab and 'car' in vocab and 'red' in vocab
    assert 'blue' in vocab                                       # one image: 5 captions
    pairs = CaptionPairs(cset, vocab, train=False)
    image, (tok, length) = pairs[3]
    assert image.shape == (3, 224, 224) and tok[:int(length)].tolist() == [1, 4, 3, 3, 3, 3, 2]


def test_karpathy_reader_errors(tmp_path):
    root = str(tmp_path)
    with pytest.raises(FileNotFoundError, match='dataset_flickr30k.json'):
        read_karpathy(root, 'f30k', 'train')
    _write_karpathy(root, 'dataset_flickr30k.json', '')
    os.remove(os.path.join(root, 'im1.jpg'))
    with pytest.raises(FileNotFoundError, match='im1.jpg'):
        read_karpathy(root, 'f30k', 'train')
    with pytest.raises(ValueError, match='Unknown split'):
        read_karpathy(root, 'f30k', 'validation')


def test_precomputed_layout(tmp_path):
    root = str(tmp_path)
    feats = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(os.path.join(root, 'test_ims.npy'), feats)
    (tmp_path / 'test_caps.txt').write_text('\n'.join('caption %d of image %d' % (k, i)
                                                      for i in range(3) for k in range(5)) + '\n')
    cset = load_caption_set('f30k_precomp', root, 'test')
    assert cset.precomputed and cset.num_images == 3 and len(cset) == 15
    np.testing.assert_array_equal(cset.image(2), feats[2])
    assert cset.captions[7] == ['caption', '2', 'of', 'image', '1']
    # one feature row per caption (as some released files have): one row per image is kept
    np.save(os.path.join(root, 'test_ims.npy'), np.repeat(feats, 5, axis=0))
    np.testing.assert_array_equal(load_caption_set('f30k_precomp', root, 'test').images, feats)
    np.save(os.path.join(root, 'test_ims.npy'), feats[:2])
    with pytest.raises(ValueError, match='five captions per image'):
        load_caption_set('f30k_precomp', root, 'test')


def _example_module():
    from gluon_dml.data import fashion3
    return fashion3


_WORD_CLASS = {'t-shirt': 0, 'top': 0, 'trousers': 1, 'pants': 1, 'pullover': 2, 'sweater': 2,
               'dress': 3, 'coat': 4, 'sandal': 5, 'shirt': 6, 'sneaker': 7, 'trainer': 7,
               'bag': 8, 'handbag': 8, 'boot': 9}


@pytest.mark.skipif(not os.path.isdir(FASHION), reason='Fashion-MNIST not installed')
def test_fashion3_example_set(tmp_path):
    mod = _example_module()
    root = str(tmp_path / 'f3')
    path = mod.build(root, num_train=30, seed=1)
    with open(path) as f:
        images = json.load(f)['images']
    splits = [r['split'] for r in images]
    assert splits.count('train') == 30 and splits.count('val') == 1000 and splits.count('test') == 1000
    test = [r for r in images if r['split'] == 'test']
    # the test split is every ordered triple of the ten classes exactly once
    assert sorted(tuple(r['classes']) for r in test) == sorted(
        (a, b, c) for a in range(10) for b in range(10) for c in range(10))
    # each caption names exactly the picture's three classes (grammar check on the tokens)
    for r in images[:200] + test[:200]:
        assert len(r['sentences']) == 5 and len({s['raw'] for s in r['sentences']}) == 5
        for s in r['sentences']:
            named = sorted(_WORD_CLASS[t] for t in s['tokens'] if t in _WORD_CLASS)
            assert named == sorted(r['classes']), s['raw']
    # test pictures are made of Fashion-MNIST TEST items of the stated classes
    t10k, labels = mod._load(FASHION, 't10k')
    by_bytes = {t10k[i].tobytes(): labels[i] for i in range(len(labels))}
    cset = load_caption_set('fashion3', root, 'test', GreyTransform(), in_memory=True)
    assert cset.images.shape == (1000, 1, 28, 84)
    for i in (0, 123, 999):
        pic = np.round(cset.images[i, 0] * 255).astype(np.uint8)
        got = [by_bytes.get(np.ascontiguousarray(pic[:, 28 * k:28 * (k + 1)]).tobytes()) for k in range(3)]
        assert got == test[i]['classes']
    # the same arguments give the same set (and are not rebuilt)
    mtime = os.path.getmtime(path)
    assert mod.build(root, num_train=30, seed=1) == path and os.path.getmtime(path) == mtime


def test_make_fashion3_into_a_file_is_one_line_naming_out_dir(tmp_path):
    """OUT_DIR that is a file, or lies under one: one line naming OUT_DIR and the file, before
    Fashion-MNIST is read. Before: the OS's "Not a directory (/etc/passwd/images)", naming
    neither the argument nor what to do."""
    afile = tmp_path / 'a-file'
    afile.write_text('x')
    for out, says in ((afile, 'OUT_DIR %s is a file, not a folder; give a folder to write the '
                              'fashion3 set into (made if missing).' % afile),
                      (afile / 'f3', 'OUT_DIR %s cannot be made: %s is a file, not a folder; give a '
                                     'folder to write the fashion3 set into.' % (afile / 'f3', afile))):
        proc = run_command('make-fashion3', out, '--train', '1', '--fashion-root', tmp_path / 'none')
        assert proc.returncode == 2, (proc.stdout, proc.stderr)
        assert proc.stderr.strip().splitlines() == ['error: ' + says], proc.stderr
    assert afile.read_text() == 'x'
