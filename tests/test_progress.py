"""Progress bars: the count, the elapsed time and the ETA reach the stream; disabled bars stay silent."""

import io

import pytest

from probe_disentangle.progress import progress_bar, track


def test_track_shows_count_and_eta():
    out = io.StringIO()
    assert list(track(range(4), "steering", file=out, mininterval=0)) == [0, 1, 2, 3]
    text = out.getvalue()
    assert "steering:" in text and "4/4" in text and "100%" in text
    assert "<" in text.split("4/4")[-1]  # [elapsed<remaining, rate]


def test_bar_updates_and_disabled_bar_writes_nothing():
    out = io.StringIO()
    bar = progress_bar(10, "train", file=out, initial=3, mininterval=0)
    bar.update(2)
    bar.close()
    assert "5/10" in out.getvalue() and "00:00<" in out.getvalue()
    quiet = io.StringIO()
    bar = progress_bar(10, "train", enabled=False, file=quiet)
    bar.update(10)
    bar.close()
    assert list(track([1, 2], "x", enabled=False, file=quiet)) == [1, 2] and quiet.getvalue() == ""
    with pytest.raises(ValueError, match="total must be"):
        progress_bar(-1, "x")


def test_a_terminal_reporting_no_size_still_gets_a_bar():
    import os
    import pty

    master, slave = pty.openpty()  # a fresh pty reports 0 columns × 0 rows
    try:
        assert os.get_terminal_size(slave).columns == 0
        with os.fdopen(os.dup(slave), "w") as out:
            assert list(track(range(2), "phase", file=out, mininterval=0)) == [0, 1]
        text = os.read(master, 65536).decode("utf-8", "replace")
    finally:
        os.close(master)
        os.close(slave)
    assert "phase: 100%" in text and "2/2" in text
