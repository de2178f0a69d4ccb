"""Step output tied to its step: markers in the worker's pipe, split by the supervisor."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from ewfd.step_output import Context, OutputMarks, OutputReader, marker

A = Context("uuid-a", "order", "charge")
B = Context("uuid-a", "order", "email")


def mark(context: Context | None) -> bytes:
    """A marker that names the whole context (what a worker writes first in a workflow)."""
    return marker(context)


def texts(pairs: list[tuple[bytes, Context | None]]) -> list[tuple[str, Context | None]]:
    return [(line.decode(), context) for line, context in pairs]


def test_lines_take_the_context_of_the_marker_before_them() -> None:
    reader = OutputReader()
    got = reader.feed(b"before\n" + mark(A) + b"one\ntwo\n" + mark(B) + b"three\n" + mark(None)
                      + b"after\n")
    assert texts(got) == [("before", None), ("one", A), ("two", A), ("three", B),
                          ("after", None)]


def test_a_marker_ends_an_unfinished_line() -> None:
    reader = OutputReader()
    assert texts(reader.feed(mark(A) + b"no newline")) == []
    assert texts(reader.feed(mark(B) + b"next\n")) == [("no newline", A), ("next", B)]


def test_an_unfinished_line_keeps_the_context_it_began_in() -> None:
    reader = OutputReader()
    assert reader.feed(mark(A) + b"hal") == []
    assert texts(reader.feed(b"f a line\n")) == [("half a line", A)]


@pytest.mark.parametrize("cut", range(1, 30))
def test_a_marker_cut_between_two_reads(cut: int) -> None:
    stream = b"x\n" + mark(A) + b"y\n"
    reader = OutputReader()
    got = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
    assert texts(got) == [("x", None), ("y", A)]


def test_the_last_read_hands_out_the_unfinished_line() -> None:
    reader = OutputReader()
    reader.feed(mark(A) + b"last words")
    assert texts(reader.feed(b"", final=True)) == [("last words", A)]
    assert reader.context == A


def test_a_line_that_never_ends_is_handed_out_in_pieces() -> None:
    reader = OutputReader()
    got = reader.feed(b"z" * (OutputReader.LONGEST + 10))
    assert [len(line) for line, _ in got] == [OutputReader.LONGEST + 10]


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    os.set_blocking(r, False)
    try:
        yield r, w
    finally:
        os.close(r)
        os.close(w)


def test_marks_round_trip_and_are_written_only_when_the_context_changes(
        pipe: tuple[int, int]) -> None:
    r, w = pipe
    marks = OutputMarks(w)
    marks.enter(A)
    os.write(w, b"printed\n")
    marks.enter(A)                  # the same step: nothing written
    marks.enter(Context("u\x1fb\n", "na\x00me", None))   # odd names cannot break the stream
    marks.enter(None)
    reader = OutputReader()
    got = reader.feed(os.read(r, 65536))
    assert texts(got) == [("printed", A)]
    assert reader.context is None


def test_within_a_workflow_a_marker_names_only_the_step() -> None:
    short = marker(B, A)
    assert short == b"\x00ewfd\x1fsemail\n"
    between = marker(A._replace(step=None), A)
    reader = OutputReader()
    got = reader.feed(marker(A) + b"a\n" + short + b"b\n" + between + b"c\n"
                      + marker(Context("uuid-b", "report", None), B) + b"d\n")
    assert texts(got) == [("a", A), ("b", B), ("c", A._replace(step=None)),
                          ("d", Context("uuid-b", "report", None))]


def test_a_step_marker_without_a_workflow_ties_to_none() -> None:
    reader = OutputReader()
    assert texts(reader.feed(marker(B, A) + b"x\n")) == [("x", None)]
