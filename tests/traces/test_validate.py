"""Known answers for each field converter and for the row-level checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import good_row

from traces.contract import FIELD_BY_NAME, Reason
from traces.validate import check, row_hash


def one(**fields: object) -> tuple[bool, str, str]:
    """Validate one row as the per-line fallback would see it (object cells)."""
    raw = pd.DataFrame({k: pd.Series([v], dtype=object) for k, v in good_row(**fields).items()})
    c = check(raw)
    return bool(c.bad[0]), c.reason[0], c.field[0]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, (False, "", "")),
        ({"input_tokens": "12"}, (False, "", "")),  # numbers as text are numbers (CSV == JSON)
        ({"input_tokens": 12.0}, (False, "", "")),
        ({"input_tokens": 12.5}, (True, "bad_type", "input_tokens")),
        ({"input_tokens": True}, (True, "bad_type", "input_tokens")),
        ({"input_tokens": "many"}, (True, "bad_type", "input_tokens")),
        ({"input_tokens": -1}, (True, "out_of_range", "input_tokens")),
        ({"input_tokens": 9.3e18}, (True, "out_of_range", "input_tokens")),
        ({"input_tokens": 2**53 - 1}, (False, "", "")),
        ({"input_tokens": None}, (True, "missing_field", "input_tokens")),
        ({"model": ""}, (True, "missing_field", "model")),
        ({"model": "  "}, (True, "missing_field", "model")),
        ({"model": 3.5}, (True, "bad_type", "model")),
        ({"request_id": 7}, (False, "", "")),
        ({"status": "ERROR", "error_type": "timeout"}, (False, "", "")),
        ({"status": "error"}, (True, "missing_field", "error_type")),
        ({"status": "maybe"}, (True, "bad_value", "status")),
        ({"status": 1}, (True, "bad_value", "status")),  # integers read as text, then not in the set
        ({"timestamp": 1709251200000}, (False, "", "")),
        ({"timestamp": "1709251200000"}, (False, "", "")),
        ({"timestamp": 1709251200}, (True, "out_of_range", "timestamp")),  # epoch seconds by mistake
        ({"timestamp": "yesterday"}, (True, "bad_timestamp", "timestamp")),
        ({"timestamp": "2024-02-30T00:00:00Z"}, (True, "bad_timestamp", "timestamp")),
        ({"timestamp": True}, (True, "bad_timestamp", "timestamp")),
        ({"quality": 0.7}, (False, "", "")),
        ({"quality": 1.5}, (True, "out_of_range", "quality")),
        ({"latency_ms": "NaN"}, (True, "bad_type", "latency_ms")),
        ({"cached_input_tokens": 2000}, (True, "inconsistent", "cached_input_tokens")),
        ({"cached_input_tokens": 10}, (False, "", "")),
        ({"cache_hit": "yes"}, (False, "", "")),
        ({"cache_hit": "perhaps"}, (True, "bad_type", "cache_hit")),
        ({"prefix_blocks": [1, 2, 3]}, (False, "", "")),
        ({"prefix_blocks": "[1, 2, 3]"}, (False, "", "")),
        ({"prefix_blocks": [1, "x"]}, (True, "bad_type", "prefix_blocks")),
        ({"prefix_blocks": [True]}, (True, "bad_type", "prefix_blocks")),
        # a JSON NaN is a value that is not a number (as Infinity and "NaN" are), never read as absent
        ({"cost_usd": float("nan")}, (True, "bad_type", "cost_usd")),
        ({"quality": float("nan")}, (True, "bad_type", "quality")),
        ({"cost_usd": float("inf")}, (True, "bad_type", "cost_usd")),
        ({"input_tokens": float("nan")}, (True, "bad_type", "input_tokens")),
        ({"timestamp": float("nan")}, (True, "bad_timestamp", "timestamp")),
        ({"prefix_blocks": float("nan")}, (True, "bad_type", "prefix_blocks")),
        ({"cost_usd": None}, (False, "", "")),  # null stays absent (the cost is then computed)
        # RFC 3339 date-time only: ISO 8601 forms pandas would also read are not timestamps of the contract
        ({"timestamp": "2024-03-01"}, (True, "bad_timestamp", "timestamp")),
        ({"timestamp": "2024-03-01T05"}, (True, "bad_timestamp", "timestamp")),
        ({"timestamp": "2024-03-01T05:00Z"}, (True, "bad_timestamp", "timestamp")),  # no seconds
        ({"timestamp": "20240301T050000Z"}, (True, "bad_timestamp", "timestamp")),
        ({"timestamp": "2024-03-01T05:00:00+0100"}, (True, "bad_timestamp", "timestamp")),
        ({"timestamp": "2024-03-01t05:00:00.123z"}, (False, "", "")),  # RFC 3339 allows lower case
        ({"timestamp": "2024-03-01 05:00:00+01:00"}, (False, "", "")),
        # control characters: never in an id or a name; free text (prompt) may hold them
        ({"model": "gpt\x00x"}, (True, "bad_value", "model")),
        ({"request_id": "r\n1"}, (True, "bad_value", "request_id")),
        ({"tenant": "a\tb"}, (True, "bad_value", "tenant")),
        ({"task": "chat\x85"}, (True, "bad_value", "task")),  # C1 control (NEL)
        ({"model": "gpt-4o \u00e9\u4e2d"}, (False, "", "")),  # non-ASCII letters are fine
        ({"prompt": "line one\nline\ttwo\x00"}, (False, "", "")),
    ],
)
def test_single_row_known_answers(fields: dict, expected: tuple[bool, str, str]) -> None:
    assert one(**fields) == expected


def test_every_reason_in_the_checks_is_a_contract_reason() -> None:
    raw = pd.DataFrame.from_records([good_row(i, input_tokens=-i) for i in range(3)])
    c = check(raw)
    assert set(c.reason[c.bad]) <= {r.value for r in Reason}


def test_timestamps_normalise_to_utc() -> None:
    raw = pd.DataFrame.from_records(
        [
            good_row(0, timestamp="2024-03-01T02:00:00+02:00"),
            good_row(1, timestamp="2024-03-01T00:00:00"),
            good_row(2, timestamp=1709251200000),
        ]
    )
    c = check(raw)
    assert not c.bad.any()
    assert (c.frame["timestamp"] == pd.Timestamp("2024-03-01T00:00:00Z")).all()
    assert str(c.frame["timestamp"].dtype) == "datetime64[ms, UTC]"


def test_detail_lists_every_problem_and_first_field_wins() -> None:
    bad, reason, field = one(model="", input_tokens=-5, status="nope")
    raw = pd.DataFrame.from_records([good_row(model="", input_tokens=-5, status="nope")])
    detail = check(raw).detail[0]
    assert (bad, reason, field) == (True, "missing_field", "model")  # contract order: model before tokens
    assert detail.count(";") == 2 and "got -5" in detail and "got 'nope'" in detail


def test_unknown_fields_are_kept_as_json() -> None:
    raw = pd.DataFrame.from_records([good_row(0, team="search", meta={"a": [1, 2]}), good_row(1)])
    c = check(raw)
    assert c.frame["extra"].tolist() == ['{"team":"search","meta":{"a":[1,2]}}', None]


def test_row_hash_equal_for_equal_content_in_any_representation() -> None:
    typed = pd.DataFrame.from_records([good_row(0, cached_input_tokens=3)])
    text = typed.astype(str)  # how CSV delivers it
    a, b = check(typed), check(text)
    assert row_hash(a.frame)[0] == row_hash(b.frame)[0]
    changed = check(pd.DataFrame.from_records([good_row(0, cached_input_tokens=4)]))
    assert row_hash(changed.frame)[0] != row_hash(a.frame)[0]


def test_contract_types_cover_every_kind() -> None:
    assert FIELD_BY_NAME["prefix_blocks"].arrow_type.value_type.bit_width == 64
    assert np.all([f.name == n for n, f in FIELD_BY_NAME.items()])


def test_list_hash_of_a_row_does_not_depend_on_its_neighbours() -> None:
    """The same prefix_blocks hash the same whether empty / null lists follow, precede or surround them (a
    row followed only by empty lists once lost its last item from the hash, so re-ingesting it from another
    file was quarantined as a conflicting duplicate)."""
    import pyarrow as pa

    from traces.validate import _column_hash

    def hashes(lists: list) -> np.ndarray:
        return _column_hash(pd.Series(pd.arrays.ArrowExtensionArray(pa.array(lists, type=pa.list_(pa.int64())))))

    row = [5, 7, 9]
    alone = hashes([row])[0]
    for context in ([row, None, None], [row, [], None], [None, row], [[1], row, [], None], [[], row, [2, 3]]):
        assert hashes(context)[context.index(row)] == alone, context
    assert len({alone, hashes([[5, 7]])[0], hashes([[7, 5, 9]])[0], hashes([[]])[0]}) == 4  # order and items count


def test_nan_and_control_character_details_name_the_value() -> None:
    raw = pd.DataFrame(
        {k: pd.Series([v], dtype=object) for k, v in good_row(cost_usd=float("nan"), model="a\x00").items()}
    )
    c = check(raw)
    assert c.detail[0] == (
        "model: bad_value: expected text without control characters, got 'a\\x00'; "
        "cost_usd: bad_type: expected number >= 0, got NaN"
    )
