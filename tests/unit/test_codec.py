"""The codec's one rule for text (exact JSON round trip, refused labels, escaped texts) and its
type tags, which resolve only to registered classes (issue 10, items C6 and G17)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from ewfd import StateError, codec, state_type


@state_type
@dataclass
class Point:
    x: int
    y: int


def test_lone_surrogates_round_trip_exactly_and_the_text_is_valid_utf8() -> None:
    state = {"k\udcff": ["caf\ud83d", "x\udcff"], "plain": "café"}
    text = codec.encode_state(state)
    text.encode("utf-8")                       # storable: no lone surrogate left in it
    assert codec.decode_state(text) == state


def test_ordinary_text_is_not_escaped() -> None:
    assert codec.encode_state({"a": "café 東京"}) == '{"a":"café 東京"}'


def test_the_size_limit_counts_the_stored_text() -> None:
    with pytest.raises(StateError, match="'big'"):
        codec.encode_state({"big": "\udcff" * 100}, max_size=500)   # 600 bytes once escaped


def test_safe_text_escapes_only_what_utf8_cannot_hold() -> None:
    assert codec.safe_text("café") == "café"
    assert codec.safe_text("caf\udcff \ud83d") == "caf\\udcff \\ud83d"
    assert codec.safe_bytes(b"caf\xff \xc3\xa9") == "caf\\xff é"


def test_check_text_names_what_it_refuses() -> None:
    assert codec.check_text("café", "queue") == "café"
    with pytest.raises(ValueError, match=r"queue 'q\\udcff'.*position 1"):
        codec.check_text("q\udcff", "queue")
    with pytest.raises(ValueError, match="display_name: expected text"):
        codec.check_text(3, "display_name")   # type: ignore[arg-type]


def test_registered_types_and_dates_come_back() -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    state = {"p": Point(1, 2), "when": when}
    assert codec.decode_state(codec.encode_state(state)) == state


@pytest.mark.parametrize("tag", ["this:Zen", "os:system", "nothere.mod:X", "Point", 3,
                                 f"{__name__}:Unregistered"])
def test_a_tag_naming_anything_unregistered_is_refused_without_importing(tag: object) -> None:
    before = set(sys.modules)
    with pytest.raises(StateError, match="state_type"):
        codec.decode_state(json.dumps({"v": {"__ewfd_type__": tag}}))
    assert set(sys.modules) == before


def test_a_registered_tag_with_wrong_fields_is_a_clear_error() -> None:
    tag = f"{__name__}:Point"
    with pytest.raises(StateError, match=f"'{tag}'.*'z'"):
        codec.decode_state(json.dumps({"p": {"__ewfd_type__": tag, "x": 1, "z": 2}}))
    with pytest.raises(StateError, match="'datetime'"):
        codec.decode_state('{"w": {"__ewfd_type__": "datetime", "value": "yesterday"}}')


def test_encoding_refuses_a_forged_tag_naming_the_key() -> None:
    with pytest.raises(StateError, match=r"state\['v'\].*'os:system'"):
        codec.encode_state({"v": {"__ewfd_type__": "os:system"}})


class Unregistered:
    pass


def test_a_subclass_of_a_registered_type_must_be_registered_itself() -> None:
    @dataclass
    class Point3(Point):
        z: int = 0

    with pytest.raises(StateError, match=r"state\['p'\].*Point3.*state_type"):
        codec.encode_state({"p": Point3(1, 2, 3)})
