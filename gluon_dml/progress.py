"""Progress bars on standard error (tqdm), every one of the package's from here: redrawn every
half second on a terminal, every 30 s into a file or a pipe."""
import sys

__all__ = ['progress_interval', 'progress_bar']


def progress_interval(stream=None):
    """Seconds between a progress bar's redraws: 0.5 on a terminal; 30 into a file or a pipe
    (``nohup python train_margin.py ... &`` writes stderr to nohup.out, which gained a bar every
    half second, a line of carriage returns growing by about 600 KB an hour)."""
    stream = sys.stderr if stream is None else stream
    try:
        return 0.5 if stream.isatty() else 30.0
    except (AttributeError, ValueError, OSError):      # closed, or no stream at all
        return 30.0


def progress_bar(iterable=None, **kwargs):
    """A ``tqdm`` bar (``kwargs`` as tqdm's) redrawn every :func:`progress_interval` seconds
    unless ``mininterval`` is given. Raises ImportError without tqdm."""
    from tqdm import tqdm
    kwargs.setdefault('mininterval', progress_interval())
    return tqdm(iterable, **kwargs)
