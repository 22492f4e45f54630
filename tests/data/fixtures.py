"""Writers of small dataset trees in each public dataset's official layout, with real image files.

Every image is a real JPEG or PNG whose colours depend on its class (so a short training run can
learn something), of a varying size. The annotation files follow the real formats exactly:
CUB's space-separated id files, Cars196's ``cars_annos.mat`` (a MATLAB struct array written with
scipy), SOP's ``Ebay_*.txt`` with their header, In-Shop's ``list_eval_partition.txt`` with its
count and header lines, LFW's folder per person.
"""
import os

import numpy as np
from PIL import Image, ImageDraw

PALETTE = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 200, 30), (200, 40, 200),
           (30, 200, 200), (240, 130, 20), (120, 60, 20), (150, 150, 150), (20, 20, 20),
           (250, 180, 200), (90, 0, 160)]


def make_image(cls, idx, size=(48, 40), mode='RGB', box=None):
    """A class-coloured picture: background of the class colour, a second-colour disc whose
    position depends on ``idx``; with ``box`` (left, top, right, bottom) the box area is pure
    class colour and everything outside it grey, for crop tests."""
    rng = np.random.RandomState(cls * 1000 + idx)
    w, h = size
    base = np.array(PALETTE[cls % len(PALETTE)], dtype=np.float64)
    other = np.array(PALETTE[(cls * 5 + 3) % len(PALETTE)], dtype=np.float64)
    arr = np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, 'RGB')
    draw = ImageDraw.Draw(img)
    cx, cy = rng.randint(w // 4, 3 * w // 4 + 1), rng.randint(h // 4, 3 * h // 4 + 1)
    r = min(w, h) // 5
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(int(v) for v in other))
    if box is not None:
        grey = Image.new('RGB', size, (128, 128, 128))
        grey.paste(Image.new('RGB', (box[2] - box[0], box[3] - box[1]), tuple(int(v) for v in base)),
                   box[:2])
        img = grey
    if mode != 'RGB':
        img = img.convert(mode)
    return img


def save(img, path, fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fmt = fmt or ('PNG' if path.lower().endswith('.png') else 'JPEG')
    if fmt == 'JPEG' and img.mode not in ('RGB', 'L', 'CMYK'):
        img = img.convert('RGB')
    img.save(path, fmt, quality=90) if fmt == 'JPEG' else img.save(path, fmt)
    return path


def write_cub(root, num_classes=6, per_class=4, boxes=True):
    """``root/CUB_200_2011/`` as CUB_200_2011.tgz unpacks. Returns the base folder."""
    base = os.path.join(root, 'CUB_200_2011')
    os.makedirs(os.path.join(base, 'images'), exist_ok=True)
    images, labels, bbs, split, classes = [], [], [], [], []
    image_id = 0
    for c in range(1, num_classes + 1):
        folder = '%03d.Bird_Species_%d' % (c, c)
        classes.append('%d %s' % (c, folder))
        for i in range(per_class):
            image_id += 1
            size = (60 + 4 * i, 48 + 2 * c)
            box = (10, 8, 40, 38)
            rel = '%s/Bird_Species_%d_%04d.jpg' % (folder, c, i + 1)
            save(make_image(c - 1, i, size, box=box if boxes else None),
                 os.path.join(base, 'images', rel))
            images.append('%d %s' % (image_id, rel))
            labels.append('%d %d' % (image_id, c))
            bbs.append('%d %.1f %.1f %.1f %.1f' % (image_id, box[0], box[1], box[2] - box[0],
                                                  box[3] - box[1]))
            split.append('%d %d' % (image_id, i % 2))
    files = {'images.txt': images, 'image_class_labels.txt': labels, 'classes.txt': classes,
             'train_test_split.txt': split}
    if boxes:
        files['bounding_boxes.txt'] = bbs
    for name, lines in files.items():
        with open(os.path.join(base, name), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    return base


def write_cars(root, num_classes=6, per_class=4):
    """``root/cars_annos.mat`` + ``root/car_ims/NNNNNN.jpg`` as Stanford's files unpack."""
    from scipy.io import savemat
    os.makedirs(os.path.join(root, 'car_ims'), exist_ok=True)
    fields = ['relative_im_path', 'bbox_x1', 'bbox_y1', 'bbox_x2', 'bbox_y2', 'class', 'test']
    records = []
    n = 0
    for c in range(1, num_classes + 1):
        for i in range(per_class):
            n += 1
            rel = 'car_ims/%06d.jpg' % n
            box = (12, 6, 44, 34)      # 0-based left, top, right (excl), bottom (excl)
            save(make_image(c - 1, i, (64, 44), box=box), os.path.join(root, rel))
            records.append((rel, box[0] + 1, box[1] + 1, box[2], box[3], c, i % 2))
    annos = np.zeros((1, len(records)), dtype=[(f, 'O') for f in fields])
    for j, (rel, x1, y1, x2, y2, c, t) in enumerate(records):
        annos[0, j] = (rel, np.array([[x1]], np.uint16), np.array([[y1]], np.uint16),
                       np.array([[x2]], np.uint16), np.array([[y2]], np.uint16),
                       np.array([[c]], np.uint8), np.array([[t]], np.uint8))
    names = np.empty((1, num_classes), dtype=object)
    for c in range(num_classes):
        names[0, c] = 'Car Maker Model %d 2012' % (c + 1)
    savemat(os.path.join(root, 'cars_annos.mat'), {'annotations': annos, 'class_names': names})
    return root


SOP_SUPERS = ['bicycle', 'cabinet', 'chair', 'coffee_maker']


def write_sop(root, num_super=3, classes_per_super=4, per_class=3):
    """``root/Stanford_Online_Products/`` with Ebay_train.txt / Ebay_test.txt (header line) and
    ``SUPER_final/`` image folders; the first half of each super-class's products train."""
    base = os.path.join(root, 'Stanford_Online_Products')
    train, test = [], []
    image_id = {'train': 0, 'test': 0}
    cls = 0
    for s in range(num_super):
        for j in range(classes_per_super):
            cls += 1
            split = 'train' if j < classes_per_super // 2 else 'test'
            for i in range(per_class):
                image_id[split] += 1
                rel = '%s_final/%d_%d.JPG' % (SOP_SUPERS[s], 111000 + cls, i)
                save(make_image(cls - 1, i, (50, 50)), os.path.join(base, rel))
                (train if split == 'train' else test).append(
                    '%d %d %d %s' % (image_id[split], cls, s + 1, rel))
    header = 'image_id class_id super_class_id path'
    for name, rows in (('Ebay_train.txt', train), ('Ebay_test.txt', test)):
        with open(os.path.join(base, name), 'w') as f:
            f.write('\n'.join([header] + rows) + '\n')
    return base


def write_inshop(root, train_items=6, test_items=5, per_item=(2, 2)):
    """``root/list_eval_partition.txt`` (count line, header, rows) and ``root/img/...``; each
    test item has ``per_item[0]`` query and ``per_item[1]`` gallery images."""
    rows = []
    for k in range(train_items + test_items):
        item = 'id_%08d' % (k + 1)
        folder = 'img/%s/%s/%s' % ('WOMEN' if k % 2 else 'MEN', 'Tees_Tanks', item)
        if k < train_items:
            kinds = ['train'] * 3
        else:
            kinds = ['query'] * per_item[0] + ['gallery'] * per_item[1]
        for i, status in enumerate(kinds):
            rel = '%s/%02d_%d_front.jpg' % (folder, i + 1, i % 4 + 1)
            save(make_image(k, i, (40, 56)), os.path.join(root, rel))
            rows.append('%-60s %s %s' % (rel, item, status))
    with open(os.path.join(root, 'list_eval_partition.txt'), 'w') as f:
        f.write('%d\nimage_name item_id evaluation_status\n' % len(rows))
        f.write('\n'.join(rows) + '\n')
    return root


def write_lfw(root, counts=(3, 1, 2, 4, 1, 2, 3, 2)):
    """``root/lfw/First_LastN/First_LastN_000K.jpg``; ``counts`` images per person."""
    base = os.path.join(root, 'lfw')
    for p, n in enumerate(counts):
        person = 'Person_Name%02d' % p
        for i in range(n):
            save(make_image(p, i, (62, 62)), os.path.join(base, person, '%s_%04d.jpg' % (person, i + 1)))
    return base


def write_folder(root, num_classes=6, per_class=3, ext='.png'):
    """``root/CLASS/IMAGE`` with class folders ``class_a``, ``class_b``, ..."""
    for c in range(num_classes):
        for i in range(per_class):
            save(make_image(c, i, (36, 30)), os.path.join(root, 'class_%s' % chr(97 + c),
                                                          'img%d%s' % (i, ext)))
    return root


def truncate(path, keep=0.5):
    """Cut a file to ``keep`` of its bytes (a truncated download)."""
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep)])
