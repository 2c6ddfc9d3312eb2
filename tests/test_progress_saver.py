"""The progress saver: at most one write per interval for a task, however many reporters, and
the last figure written on flush. Driven by a fake clock (steps exact in binary): this is our own pure logic."""

from __future__ import annotations

import pytest

from engine.progress import ProgressSaver


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("reporters", [1, 2, 4, 8, 16])
def test_saves_once_per_interval_whatever_the_number_of_reporters(reporters):
    clock, saved = Clock(), []
    saver = ProgressSaver(saved.append, 0.5, clock)
    figure = 0
    for _tick in range(80):  # 10 s of reports, every 0.125 s from each reporter
        for _reporter in range(reporters):
            figure += 1
            saver(figure)
        clock.now += 0.125
    assert len(saved) == 20  # one write per 0.5 s, not one per reporter or per report
    assert saved == sorted(saved) and saved[0] == 1


@pytest.mark.parametrize("gaps, expected", [
    ([0.0, 0.125, 0.125, 0.125], [1]),  # all within the first interval: only the first is written
    ([0.0, 0.5, 0.5, 0.5], [1, 2, 3, 4]),  # each an interval apart: all written
    ([0.0, 0.375, 0.125, 0.375], [1, 3]),  # the interval counts from the last write, not the last report
])
def test_a_report_is_written_only_if_an_interval_passed_since_the_last_write(gaps, expected):
    clock, saved = Clock(), []
    saver = ProgressSaver(saved.append, 0.5, clock)
    for figure, gap in enumerate(gaps, start=1):
        clock.now += gap
        saver(figure)
    assert saved == expected


@pytest.mark.parametrize("reports, expected", [(1, [1]), (2, [1, 2]), (5, [1, 5])])
def test_flush_writes_the_last_figure_kept_back_and_nothing_twice(reports, expected):
    clock, saved = Clock(), []
    saver = ProgressSaver(saved.append, 0.5, clock)
    for figure in range(1, reports + 1):
        saver(figure)
    saver.flush()
    saver.flush()
    assert saved == expected
