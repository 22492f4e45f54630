#!/usr/bin/env python
"""Compare the log.jsonl of two run folders line for line, leaving out the timing fields.

    python scripts/compare_logs.py RUN_A RUN_B [RUN_A2 RUN_B2 ...]

Seeded runs are deterministic on one machine: two runs of the same settings must log the same
loss and metrics at every epoch. Prints one line per pair and exits 1 when any pair differs.
"""
import json
import sys

TIMING = ('train_time', 'images_per_sec', 'eval_time')


def rows(run):
    with open('%s/log.jsonl' % run) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f if line.strip()]


def compare(a, b):
    ra, rb = rows(a), rows(b)
    if len(ra) != len(rb):
        return 'different number of epochs: %d and %d' % (len(ra), len(rb))
    for x, y in zip(ra, rb):
        if x != y:
            keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
            return 'epoch %s differs in %s: %s vs %s' % (
                x.get('epoch'), ', '.join(keys), [x.get(k) for k in keys], [y.get(k) for k in keys])
    return None


def main(argv):
    if len(argv) < 2 or len(argv) % 2:
        print(__doc__)
        return 2
    bad = 0
    for a, b in zip(argv[::2], argv[1::2]):
        diff = compare(a, b)
        print('%s  %s vs %s: %s' % ('DIFF' if diff else 'same', a, b,
                                    diff or '%d epochs identical' % len(rows(a))))
        bad += bool(diff)
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
