"""Closing the dashboard sink: the last plots get the thread's normal priority back, and a plot
that takes too long never keeps the finished run from exiting."""
import os
import threading
import time

import pytest

from gluon_dml.viz import VisdomSink


def test_close_waits_a_bounded_time_for_slow_plots(tmp_path, capsys):
    sink = VisdomSink(str(tmp_path), env='slow', connect=False, close_timeout=0.5)
    started = threading.Event()

    def slow_curves():
        started.set()
        time.sleep(5)

    sink._draw_curves = slow_curves
    sink.log_epoch(1, {'loss': 1.0, 'recall@1': 0.5})
    assert started.wait(10)
    t0 = time.time()
    sink.close()
    assert time.time() - t0 < 3
    err = capsys.readouterr().err
    assert 'still being drawn' in err and 'gluon-dml replay-viz' in err


@pytest.mark.skipif(not hasattr(os, 'getpriority') or os.geteuid() != 0,
                    reason='restoring a thread\'s nice value needs Linux and privileges')
def test_plotter_priority_is_restored_when_the_run_ends(tmp_path):
    sink = VisdomSink(str(tmp_path), env='prio', connect=False)
    sink._draw_curves = lambda: time.sleep(2)          # keeps the thread alive while we look
    sink.log_epoch(1, {'loss': 1.0})
    deadline = time.time() + 10
    while sink.plotter.saved_priority is None and time.time() < deadline:
        time.sleep(0.05)
    tid, before = sink.plotter.saved_priority
    assert os.getpriority(os.PRIO_PROCESS, tid) > before          # niced while training
    sink.plotter.stop()
    assert os.getpriority(os.PRIO_PROCESS, tid) == before         # normal for the last plots
    sink.close()
