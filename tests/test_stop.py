"""Stop sequences cut across streamed pieces."""

from __future__ import annotations

import pytest

from claude_bridge.translate.stop import StopScanner


def scan(pieces: list[str], stops: list[str]) -> tuple[list[str], bool]:
    """What each feed returns, plus the flush when no stop came; feeding ends at the first stop, as the caller does."""
    scanner = StopScanner(stops)
    out = []
    for piece in pieces:
        out.append(scanner.feed(piece))
        if scanner.stopped:
            return out, True
    return [*out, scanner.flush()], False


def test_stop_inside_one_piece_cuts_before_it() -> None:
    assert scan(["Hello END world"], ["END"]) == (["Hello "], True)


def test_stop_across_pieces_is_found_and_its_prefix_never_sent() -> None:
    assert scan(["Hello E", "N", "D world"], ["END"]) == (["Hello ", "", ""], True)


def test_held_back_prefix_is_released_by_flush_when_no_stop_comes() -> None:
    assert scan(["Hello EN"], ["END"]) == (["Hello ", "EN"], False)


def test_held_back_prefix_is_released_when_the_next_piece_breaks_it() -> None:
    assert scan(["Hello EN", "x more"], ["END"]) == (["Hello ", "ENx more", ""], False)


def test_earliest_of_several_stops_wins() -> None:
    assert scan(["one STOP two END"], ["END", "STOP"]) == (["one "], True)


@pytest.mark.parametrize("stops", [[], [""], ["", ""]])
def test_no_usable_stop_is_a_no_op(stops: list[str]) -> None:
    scanner = StopScanner(stops)
    assert scanner.feed("a") == "a"
    assert scanner.feed("") == ""
    assert scanner.flush() == ""
    assert not scanner.stopped


def test_empty_strings_among_stops_are_ignored() -> None:
    assert scan(["abc", "XYZ"], ["", "YZ"]) == (["abc", "X"], True)


def splits(text: str):
    """Every way to cut `text` into 2 or 3 pieces (pieces may be empty)."""
    for i in range(len(text) + 1):
        yield [text[:i], text[i:]]
        for j in range(i, len(text) + 1):
            yield [text[:i], text[i:j], text[j:]]


@pytest.mark.parametrize(
    ("text", "stops"),
    [
        ("Hello END world", ["END"]),
        ("aaab", ["aab"]),
        ("abcabd", ["abd", "ca"]),
        ("xxENDyySTOP", ["STOP", "END"]),
        ("no stop here", ["xyz", "herex"]),
        ("ab", ["abc"]),
        ("<|im_end|>", ["<|im_end|>"]),
        ("ababac", ["abac", "bb"]),
    ],
)
def test_every_split_gives_the_text_cut_at_the_first_stop(text: str, stops: list[str]) -> None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    expected = text[: min(found)] if found else text
    for pieces in splits(text):
        out, stopped = scan(pieces, stops)
        assert ("".join(out), stopped) == (expected, bool(found)), pieces
