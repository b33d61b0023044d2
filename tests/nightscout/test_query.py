"""Nightscout queries: query strings, find filters, bounds, counts, order and API v3 searches.

The query strings are the ones real clients send (research/nightscout.md §1.3, §3), taken through
the whole path: raw URL text → :func:`parse_query_string` → :func:`build_query` → documents.
"""

from __future__ import annotations

import datetime as dt
import time
import urllib.parse
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glucoshare.errors import InputError
from glucoshare.ingest.nightscout_mapping import iso_utc
from glucoshare.nightscout.query import (
    IMPLICIT_WINDOW_MS,
    MAX_COUNT,
    MAX_REGEX_SUBJECT,
    V3_MAX_LIMIT,
    Query,
    QueryError,
    build_query,
    compile_find,
    document_instant,
    matches,
    parse_count,
    parse_query_string,
    project,
    sort_documents,
    v3_filters,
)

NOW = 1732276800000  # 2024-11-22T12:00:00Z
T0 = 1732258800000  # 2024-11-22T07:00:00Z
HOUR = 3_600_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _query(collection: str, raw: str, path_type: str | None = None) -> Query:
    return build_query(collection, parse_query_string(raw), now_ms=NOW, path_type=path_type)


def _sgv(time_ms: int, sgv: int = 120, **extra: Any) -> dict[str, Any]:
    return {"type": "sgv", "sgv": sgv, "date": time_ms, "dateString": iso_utc(time_ms), **extra}


def _iso(time_ms: int, offset_min: int, *, colon: bool = True, sep: str = "T") -> str:
    zone = dt.timezone(dt.timedelta(minutes=offset_min))
    text = (
        (EPOCH + dt.timedelta(milliseconds=time_ms))
        .astimezone(zone)
        .isoformat(sep=sep, timespec="milliseconds")
    )
    return text if colon else text[:-3] + text[-2:]


# -- query strings -------------------------------------------------------------------------------


def test_brackets_nest_and_repeat_like_qs() -> None:
    parsed = parse_query_string(
        "find[type][$in][]=sgv&find[type][$in][]=mbg&find[enteredBy][$ne]=A&find[enteredBy][$ne]=B"
        "&find[pump][battery][percent][$lt]=20&count=5&flag&empty=&token=x&token=y&a[0]=p&a[1]=q"
    )
    assert parsed == {
        "find": {
            "type": {"$in": ["sgv", "mbg"]},
            "enteredBy": {"$ne": ["A", "B"]},
            "pump": {"battery": {"percent": {"$lt": "20"}}},
        },
        "count": "5",
        "flag": "",
        "empty": "",
        "token": ["x", "y"],
        "a": ["p", "q"],
    }


def test_plus_is_a_space_and_escapes_are_utf8() -> None:
    parsed = parse_query_string(
        "find[eventType]=Temporary+Target&n=%2B1&d=Pump%20%28tconnectsync%29&u=caf%C3%A9"
    )
    assert parsed == {
        "find": {"eventType": "Temporary Target"},
        "n": "+1",
        "d": "Pump (tconnectsync)",
        "u": "café",
    }


def test_escaped_brackets_nest_and_unclosed_brackets_stay_flat() -> None:
    assert parse_query_string("find%5Bdate%5D%5B%24gte%5D=1") == {"find": {"date": {"$gte": "1"}}}
    assert parse_query_string("a[b=1&c]=2&[x]=3&&") == {"a[b": "1", "c]": "2", "[x]": "3"}


def test_bytes_and_text_parse_alike() -> None:
    assert parse_query_string(b"a=%C3%A9&b=1") == parse_query_string("a=%C3%A9&b=1") == {"a": "é", "b": "1"}
    assert parse_query_string("a=é") == {"a": "é"}


def test_large_indices_stay_keys() -> None:
    assert parse_query_string("a[21]=x") == {"a": {"21": "x"}}
    assert parse_query_string("a[1]=y&a[0]=x") == {"a": ["x", "y"]}


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("&".join(f"p{i}=1" for i in range(201)), "more than 200 parameters"),
        ("a[b][c][d][e][f][g]=1", "more than 5 brackets"),
        ("k" * 201 + "=1", "longer than 200"),
        ("a=" + "v" * 2001, "longer than 2000"),
        ("a=%zz", "two hex digits"),
        ("a=100%", "two hex digits"),
        ("a%2=1", "two hex digits"),
        ("a=%E9", "not UTF-8"),
        ("a=1&a[b]=2", "both as a value and with brackets"),
        ("a[b]=2&a=1", "both as a value and with brackets"),
        ("a[][b]=1", "[] before its last bracket"),
    ],
)
def test_hostile_query_strings_are_refused(raw: str, rule: str) -> None:
    with pytest.raises(QueryError, match=rule.replace("[", r"\[").replace("]", r"\]")) as caught:
        parse_query_string(raw)
    assert caught.value.code == "bad_query"
    assert isinstance(caught.value, InputError)
    assert caught.value.http_status == 400


def test_limits_are_inclusive() -> None:
    parsed = parse_query_string("&".join(f"p{i}=1" for i in range(200)))
    assert len(parsed) == 200
    assert parse_query_string("a[b][c][d][e][f]=1") == {"a": {"b": {"c": {"d": {"e": {"f": "1"}}}}}}
    assert parse_query_string("k" * 200 + "=" + "v" * 2000) == {"k" * 200: "v" * 2000}


def test_refusals_do_not_repeat_values() -> None:
    with pytest.raises(QueryError) as caught:
        parse_query_string("notes=secret%E9value")
    assert "secret" not in caught.value.message
    with pytest.raises(QueryError) as caught:
        matches("entries", {}, {"dateString": {"$gte": "not-a-date-1234"}})
    assert "1234" not in caught.value.message
    assert "find[dateString][$gte]" in caught.value.message


@given(
    st.dictionaries(
        st.text(st.characters(codec="utf-8", exclude_characters="[]"), min_size=1, max_size=20),
        st.text(st.characters(codec="utf-8"), max_size=50),
        max_size=10,
    )
)
def test_flat_parameters_round_trip(params: dict[str, str]) -> None:
    assert parse_query_string(urllib.parse.urlencode(params)) == params


# -- what clients send (research/nightscout.md §1.3, §3) ---------------------------------------------


def test_tconnectsync_last_entry_with_unescaped_offset_plus() -> None:
    # arrow's isoformat, '+' left unescaped, as tconnectsync builds the URL; also its T→space retry
    since = "2024-11-22T08:00:00+01:00"  # 07:00Z
    for stamp in (since, since.replace("T", " ")):
        query = _query(
            "entries",
            f"count=1&find[device]=Pump%20%28tconnectsync%29&find[dateString][$gte]={stamp}&ts=1732276800.1",
        )
        assert (query.count, query.low_ms, query.high_ms, query.implicit_window) == (1, T0, None, False)
        assert query.accepts(_sgv(T0, device="Pump (tconnectsync)"))
        assert not query.accepts(_sgv(T0 - 1, device="Pump (tconnectsync)"))
        assert not query.accepts(_sgv(T0, device="xDrip-DexcomG6"))


def test_tconnectsync_treatment_activity_and_devicestatus_lookups() -> None:
    window = (
        "&find[created_at][$gte]=2024-11-22T02:00:00-05:00&find[created_at][$lte]=2024-11-22T03:00:00-05:00"
    )
    treatment = {
        "eventType": "Temp Basal",
        "enteredBy": "Pump (tconnectsync)",
        "created_at": "2024-11-22T07:30:00.000Z",
    }
    query = _query(
        "treatments", "count=1&find[enteredBy]=Pump%20(tconnectsync)&find[eventType]=Temp%20Basal" + window
    )
    assert (query.count, query.low_ms, query.high_ms) == (1, T0, T0 + HOUR)
    assert query.accepts(treatment)
    assert not query.accepts({**treatment, "created_at": "2024-11-22T08:00:00.001Z"})
    activity = {"enteredBy": "Pump (tconnectsync)", "activityType": "tconnect_iob", "created_at": iso_utc(T0)}
    query = _query(
        "activity", "find[enteredBy]=Pump%20%28tconnectsync%29&find[activityType]=tconnect_iob" + window
    )
    assert query.count == 10
    assert query.accepts(activity)
    assert not query.accepts({**activity, "activityType": "steps"})
    status = {"device": "Pump (tconnectsync)", "created_at": iso_utc(T0 + HOUR)}
    assert _query("devicestatus", "find[device]=Pump%20%28tconnectsync%29" + window).accepts(status)


def test_entries_between_two_epoch_instants() -> None:
    query = _query("entries", f"find[date][$gte]={T0}&find[date][$lte]={T0 + HOUR}&count=10000")
    assert (query.count, query.low_ms, query.high_ms, query.bounds_exact) == (10000, T0, T0 + HOUR, True)
    assert [query.accepts(_sgv(t)) for t in (T0 - 1, T0, T0 + HOUR, T0 + HOUR + 1)] == [
        False,
        True,
        True,
        False,
    ]


def test_trio_carbs_excludes_its_own_and_manual_entries() -> None:
    since = iso_utc(T0)
    query = _query(
        "treatments",
        f"find[carbs][$exists]=true&find[enteredBy][$ne]=manual&find[enteredBy][$ne]=Trio&find[created_at][$gt]={since}",
    )
    assert (query.count, query.low_ms, query.bounds_exact) == (1000, T0 + 1, False)
    carbs = {"eventType": "Carb Correction", "carbs": 20, "created_at": iso_utc(T0 + 1)}
    assert query.accepts({**carbs, "enteredBy": "Loop"})
    assert query.accepts(carbs)  # no enteredBy at all: $ne matches a missing field
    assert not query.accepts({**carbs, "enteredBy": "Trio"})
    assert not query.accepts({**carbs, "enteredBy": "manual"})
    assert not query.accepts({"eventType": "Note", "enteredBy": "Loop", "created_at": iso_utc(T0 + 1)})
    assert not query.accepts({**carbs, "created_at": since})


def test_trio_temp_targets_and_deletes() -> None:
    query = _query(
        "treatments",
        "find[eventType]=Temporary+Target&find[enteredBy][$ne]=manual&find[enteredBy][$ne]=Trio"
        "&find[duration][$exists]=true&find[created_at][$gt]=2024-11-22T07:00:00.000Z",
    )
    target = {
        "eventType": "Temporary Target",
        "duration": 60,
        "enteredBy": "NS",
        "created_at": iso_utc(T0 + HOUR),
    }
    assert query.accepts(target)
    assert not query.accepts({**target, "duration": None} | {"eventType": "Temporary Override"})
    target_without_duration = {key: value for key, value in target.items() if key != "duration"}
    assert not query.accepts(target_without_duration)
    by_id = _query("treatments", "find[id][$eq]=0A1B2C3D-AAAA-BBBB-CCCC-1234567890AB")
    assert by_id.implicit_window  # Trio's own id field is no _id: Nightscout keeps the window too
    assert by_id.accepts({"id": "0A1B2C3D-AAAA-BBBB-CCCC-1234567890AB", "created_at": iso_utc(NOW - HOUR)})
    by_time = _query("treatments", f"find[created_at][$eq]={iso_utc(T0)}")
    assert (by_time.low_ms, by_time.high_ms, by_time.bounds_exact) == (T0, T0, True)
    assert by_time.accepts({"created_at": "2024-11-22T08:00:00+01:00"})


def test_trio_and_py_nightscout_sgv_reads() -> None:
    query = _query("entries", f"count=1600&find[dateString][$gte]={iso_utc(T0)}", path_type="sgv")
    assert (query.type, query.count, query.low_ms) == ("sgv", 1600, T0)
    assert query.accepts(_sgv(T0))
    assert not query.accepts({**_sgv(T0), "type": "mbg"})
    py_nightscout = _query(
        "entries", "count=0&find[dateString][$gte]=2017-03-07T01:10:26.000Z", path_type="sgv"
    )
    assert py_nightscout.count == 10
    assert py_nightscout.low_ms == 1488849026000
    profile = _query("profile", "count=0&find[startDate][$gte]=2017-03-07T01:10:26.000Z")
    assert profile.accepts({"startDate": "2017-03-07T01:10:26.000Z", "store": {}})
    assert not profile.accepts({"startDate": "2017-03-07T01:10:25.999Z", "store": {}})


def test_loop_reads_by_timestamp_created_at_and_date_string() -> None:
    start, end = "2024-11-22T07:00:00Z", "2024-11-22T08:00:00Z"
    for collection, field in (
        ("treatments", "timestamp"),
        ("devicestatus", "created_at"),
        ("entries", "dateString"),
    ):
        query = _query(collection, f"find[{field}][$gte]={start}&find[{field}][$lte]={end}&count=50")
        assert (query.count, query.low_ms, query.high_ms) == (50, T0, T0 + HOUR)
        assert query.accepts({field: "2024-11-22T07:30:00.000Z", "type": "sgv"})
        assert not query.accepts({field: "2024-11-22T08:00:00.001Z", "type": "sgv"})


def test_xdrip_uuid_lookup_and_follower_sgv_query() -> None:
    query = _query("treatments", "find[uuid]=5d1c3ff2-9a5c-4d0d-a1d9-0f4e4b0e6b1a")
    assert (query.count, query.implicit_window, query.low_ms) == (1000, True, NOW - IMPLICIT_WINDOW_MS)
    assert query.accepts({"uuid": "5d1c3ff2-9a5c-4d0d-a1d9-0f4e4b0e6b1a", "timestamp": NOW - HOUR})
    follower = _query("entries", f"find[type][$eq]=sgv&find[date][$gt]={T0}")
    assert (follower.low_ms, follower.implicit_window, follower.bounds_exact) == (T0 + 1, False, False)
    assert follower.accepts(_sgv(T0 + 1))
    assert not follower.accepts(_sgv(T0))
    assert not follower.accepts({**_sgv(T0 + 1), "type": "cal"})


# -- counts, bounds, window, ids -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("collection", "expected"),
    [
        ("entries", 10),
        ("treatments", 100),
        ("devicestatus", 10),
        ("profile", 10),
        ("activity", 10),
        ("food", 100),
    ],
)
def test_default_counts(collection: str, expected: int) -> None:
    assert _query(collection, "").count == expected


def test_treatments_default_to_1000_with_a_find() -> None:
    assert _query("treatments", "find[eventType]=Note").count == 1000
    assert _query("entries", "find[type]=sgv").count == 10


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1.2", 1),
        ("0", 10),
        ("0.5", 10),
        ("", 10),
        (" 7 ", 7),
        ("+3", 3),
        ("100000", 100000),
        ("999999999999", MAX_COUNT),
    ],
)
def test_counts_from_text(raw: str, expected: int) -> None:
    assert parse_count("entries", raw) == expected
    assert _query("entries", f"count={urllib.parse.quote(raw)}").count == expected


@pytest.mark.parametrize("raw", ["-1", "abc", "1e3", "nan", "1,5", "0x10", "count=1&count=2"])
def test_bad_counts_are_refused(raw: str) -> None:
    with pytest.raises(QueryError, match="count"):
        _query("entries", raw if raw.startswith("count=") else f"count={raw}")


def test_counts_given_as_numbers() -> None:
    assert parse_count("entries", 5) == 5
    assert parse_count("entries", 2.9) == 2
    assert parse_count("entries", 10**12) == MAX_COUNT
    with pytest.raises(QueryError):
        parse_count("entries", True)
    with pytest.raises(QueryError):
        parse_count("entries", -1)


@pytest.mark.parametrize(
    ("op", "low", "high"),
    [("$gt", T0 + 1, None), ("$gte", T0, None), ("$lt", None, T0 - 1), ("$lte", None, T0), ("$eq", T0, T0)],
)
def test_strict_bounds_become_inclusive(op: str, low: int | None, high: int | None) -> None:
    query = _query("entries", f"find[date][{op}]={T0}")
    assert (query.low_ms, query.high_ms, query.implicit_window, query.bounds_exact) == (
        low,
        high,
        False,
        True,
    )


def test_bounds_of_several_fields_and_in_intersect() -> None:
    query = _query(
        "entries",
        f"find[date][$gte]={T0}&find[dateString][$lt]=2024-11-22T09:00:00%2B01:00&find[sysTime][$gte]={iso_utc(T0 - HOUR)}",
    )
    assert (query.low_ms, query.high_ms) == (T0, T0 + HOUR - 1)
    within = _query(
        "treatments", f"find[created_at][$in][]={iso_utc(T0)}&find[created_at][$in][]={iso_utc(T0 + HOUR)}"
    )
    assert (within.low_ms, within.high_ms, within.bounds_exact) == (T0, T0 + HOUR, False)
    assert within.accepts({"created_at": iso_utc(T0 + HOUR)})
    assert not within.accepts({"created_at": iso_utc(T0 + 1)})
    empty = _query("entries", f"find[date][$gt]={T0}&find[date][$lt]={T0}")
    assert empty.low_ms is not None and empty.high_ms is not None and empty.low_ms > empty.high_ms


@pytest.mark.parametrize("collection", ["entries", "treatments", "devicestatus", "activity"])
def test_implicit_window_of_four_days(collection: str) -> None:
    query = _query(collection, "find[device]=x")
    assert (query.low_ms, query.high_ms, query.implicit_window) == (NOW - IMPLICIT_WINDOW_MS, None, True)
    field = "date" if collection == "entries" else "created_at"
    assert query.accepts({"device": "x", field: NOW - IMPLICIT_WINDOW_MS, "type": "sgv"})
    assert not query.accepts({"device": "x", field: NOW - IMPLICIT_WINDOW_MS - 1, "type": "sgv"})
    assert not query.accepts({"device": "x"})


@pytest.mark.parametrize("collection", ["profile", "food"])
def test_no_implicit_window_for_profiles_and_food(collection: str) -> None:
    query = _query(collection, "")
    assert (query.low_ms, query.implicit_window) == (None, False)
    assert query.accepts({"startDate": "2001-01-01T00:00:00Z", "created_at": "2001-01-01T00:00:00Z"})


def test_any_date_or_id_filter_lifts_the_window() -> None:
    only_upper = _query("entries", f"find[date][$lte]={T0}")
    assert (only_upper.low_ms, only_upper.high_ms, only_upper.implicit_window) == (None, T0, False)
    exists = _query("treatments", "find[created_at][$exists]=true")
    assert (exists.low_ms, exists.implicit_window, exists.bounds_exact) == (None, False, False)
    by_id = _query("entries", "find[_id]=65A0B1C2D3E4F5A6B7C8D9E0")
    assert (by_id.low_ms, by_id.implicit_window, by_id.ids, by_id.bounds_exact) == (
        None,
        False,
        ("65a0b1c2d3e4f5a6b7c8d9e0",),
        True,
    )
    assert by_id.accepts({"_id": "65a0b1c2d3e4f5a6b7c8d9e0", "date": 1})
    assert not by_id.accepts({"_id": "65a0b1c2d3e4f5a6b7c8d9e1", "date": 1})


def test_ids_from_equality_and_in() -> None:
    ids = "find[_id][$in][]=aaaaaaaaaaaaaaaaaaaaaaaa&find[_id][$in][]=bbbbbbbbbbbbbbbbbbbbbbbb"
    assert _query("treatments", ids).ids == ("aaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbb")
    both = _query(
        "treatments", ids + "&find[_id][$ne]=cccccccccccccccccccccccc&find[_id][$eq]=bbbbbbbbbbbbbbbbbbbbbbbb"
    )
    assert both.ids == ("bbbbbbbbbbbbbbbbbbbbbbbb",)
    assert not both.bounds_exact  # $ne is not in the ids
    assert _query("treatments", "find[_id]=/^aaa/").ids is None
    assert _query("treatments", "find[_id][$ne]=x").ids is None
    assert _query("treatments", "find[eventType]=Note").ids is None


def test_path_type_star_is_any() -> None:
    assert _query("entries", "", path_type="*").type is None
    assert _query("entries", "", path_type="mbg").type == "mbg"
    with pytest.raises(QueryError):
        _query("entries", "", path_type="x" * 201)


def test_find_must_be_brackets_and_collections_known() -> None:
    with pytest.raises(QueryError, match="brackets"):
        _query("entries", "find=sgv")
    with pytest.raises(QueryError, match="brackets"):
        matches("entries", {}, ["sgv"])  # type: ignore[arg-type]
    assert _query("entries", "find").find == {}
    with pytest.raises(ValueError, match="collection"):
        _query("settings", "")
    with pytest.raises(ValueError, match="collection"):
        parse_count("settings", "1")
    with pytest.raises(ValueError, match="collection"):
        sort_documents("settings", [])


# -- operators -----------------------------------------------------------------------------------

TREATMENT = {
    "eventType": "Meal Bolus",
    "created_at": "2024-11-22T07:00:00.000Z",
    "insulin": 4.5,
    "carbs": "45",
    "enteredBy": "xdrip",
    "notes": "Pizza night",
    "isSMB": False,
    "automatic": True,
    "tags": ["dinner", "high-fat"],
    "pump": {"battery": {"percent": 54}, "status": {"suspended": False}},
    "boluses": [{"amount": 1.5}, {"amount": 3}],
    "nothing": None,
}


@pytest.mark.parametrize(
    ("find", "expected"),
    [
        ({"eventType": "Meal Bolus"}, True),
        ({"eventType": "meal bolus"}, False),
        ({"eventType": {"$eq": "Meal Bolus"}}, True),
        ({"eventType": {"$ne": "Meal Bolus"}}, False),
        ({"eventType": {"$ne": "Note"}}, True),
        ({"insulin": {"$gt": "4"}}, True),
        ({"insulin": {"$gt": "4.5"}}, False),
        ({"insulin": {"$gte": "4.5"}}, True),
        ({"insulin": {"$lt": "10"}}, True),  # numbers, not text ("10" < "4.5" as text)
        ({"insulin": {"$lte": "4.4"}}, False),
        ({"insulin": "4.50"}, True),
        ({"carbs": {"$gte": "45"}}, True),  # numeric text in the document is a number too
        ({"carbs": "45.0"}, True),
        ({"eventType": {"$in": ["Note", "Meal Bolus"]}}, True),
        ({"eventType": {"$in": "Meal Bolus"}}, True),
        ({"eventType": {"$in": ["Note"]}}, False),
        ({"eventType": {"$in": []}}, False),
        ({"eventType": {"$nin": ["Note", "Meal Bolus"]}}, False),
        ({"eventType": {"$nin": ["Note"]}}, True),
        ({"notes": {"$exists": "true"}}, True),
        ({"notes": {"$exists": "false"}}, False),
        ({"missing": {"$exists": "false"}}, True),
        ({"missing": {"$exists": "0"}}, True),
        ({"nothing": {"$exists": "true"}}, True),
        ({"nothing": "null"}, False),
        ({"notes": {"$regex": "pizza"}}, False),
        ({"notes": {"$regex": "pizza", "$options": "i"}}, True),
        ({"notes": {"$regex": "/^pizza/i"}}, True),
        ({"notes": "/night$/"}, True),
        ({"enteredBy": "/^XDRIP$/i"}, True),
        ({"enteredBy": {"$ne": "/^xdrip/"}}, False),
        ({"enteredBy": {"$in": ["/^loop/", "/^xd/"]}}, True),
        ({"enteredBy": {"$nin": ["/^xd/"]}}, False),
        ({"isSMB": "false"}, True),
        ({"isSMB": "true"}, False),
        ({"automatic": {"$ne": "true"}}, False),
        ({"automatic": "1"}, False),
        ({"eventType": {"$gt": "Meal"}}, True),
        ({"eventType": {"$lt": "Meal"}}, False),
        ({"eventType": {"$gt": "5"}}, True),
        ({"pump.battery.percent": {"$gt": "abc"}}, False),
        ({"notes": {"$gt": "5"}}, True),
        ({"tags": "dinner"}, True),
        ({"tags": {"$in": ["breakfast", "high-fat"]}}, True),
        ({"tags": {"$ne": "dinner"}}, False),
        ({"tags": {"$nin": ["lunch"]}}, True),
        ({"tags": ["dinner", "high-fat"]}, True),  # each must hold: both are elements
        ({"tags": ["dinner", "lunch"]}, False),
        ({"pump.battery.percent": {"$lt": "60"}}, True),
        ({"pump": {"battery": {"percent": {"$lt": "50"}}}}, False),
        ({"pump": {"status": {"suspended": "false"}}}, True),
        ({"pump.battery": {"$exists": "true"}}, True),
        ({"pump.battery.voltage": {"$exists": "true"}}, False),
        ({"boluses.amount": {"$gte": "3"}}, True),
        ({"boluses.amount": "1.5"}, True),
        ({"boluses.amount": {"$gt": "3"}}, False),
        ({"missing": "x"}, False),
        ({"missing": {"$ne": "x"}}, True),
        ({"missing": {"$nin": ["x"]}}, True),
        ({"missing": {"$gt": "0"}}, False),
        ({"missing": {"$regex": "."}}, False),
        ({"nothing": {"$ne": "x"}}, True),
        ({"nothing": {"$gt": "x"}}, False),
        ({"eventType": "Meal Bolus", "insulin": {"$gt": "4", "$lt": "5"}}, True),
        ({"eventType": "Meal Bolus", "insulin": {"$gt": "5"}}, False),
        ({}, True),
    ],
)
def test_operators(find: dict[str, Any], expected: bool) -> None:
    assert matches("treatments", TREATMENT, find) is expected


def test_numbers_in_entries_and_refused_non_numbers() -> None:
    entry = _sgv(T0, sgv=39, noise="1", delta=-3.25)
    assert matches("entries", entry, {"sgv": {"$lt": "40"}})
    assert matches("entries", entry, {"noise": "1.0"})
    assert matches("entries", entry, {"delta": {"$lt": "-3"}})
    assert not matches("entries", {**entry, "sgv": "high"}, {"sgv": {"$gte": "0"}})
    assert not matches("entries", {**entry, "sgv": True}, {"sgv": {"$gte": "0"}})
    with pytest.raises(QueryError, match=r"find\[sgv\]\[\$gt\] is not a number"):
        matches("entries", entry, {"sgv": {"$gt": "high"}})
    with pytest.raises(QueryError, match="not a number"):
        matches("treatments", TREATMENT, {"carbs": "/45/"})


def test_large_integers_compare_exactly() -> None:
    doc = {"pumpId": 4611686018427387905, "eventType": "Bolus"}
    assert matches("treatments", doc, {"pumpId": "4611686018427387905"})
    assert not matches("treatments", doc, {"pumpId": "4611686018427387904"})
    assert matches("treatments", doc, {"pumpId": {"$gt": "4611686018427387904"}})
    assert matches("treatments", {"pumpId": 10**400}, {"pumpId": {"$gt": "5"}})


def test_id_case_and_plain_ids() -> None:
    doc = {"_id": "65a0b1c2d3e4f5a6b7c8d9e0"}
    assert matches("entries", doc, {"_id": "65A0B1C2D3E4F5A6B7C8D9E0"})
    assert matches("entries", doc, {"_id": {"$in": ["65A0B1C2D3E4F5A6B7C8D9E0"]}})
    assert not matches("entries", {"_id": "abc"}, {"_id": "ABC"})


# -- dates ---------------------------------------------------------------------------------------

SAME_INSTANT = [
    "2024-11-22T07:00:00.000Z",
    "2024-11-22T07:00:00Z",
    "2024-11-22T07:00:00+00:00",
    "2024-11-22T09:00:00+02:00",
    "2024-11-22T09:00:00.000+0200",
    "2024-11-22T02:00:00-0500",
    "2024-11-22T02:00:00.000-05:00",
    "2024-11-22 02:00:00-05:00",
    "2024-11-22 07:00:00",
    "2024-11-22T07:00:00",
    "2024-11-22T08:00:00 01:00",  # an unescaped '+' read as a space
    "2024-11-22 08:00:00.000000 0100",
    "2024-11-22T07:00:00.000123Z",
    str(T0),
    f"{T0}.0",
    f"{T0}.4",
]


@pytest.mark.parametrize("stamp", SAME_INSTANT)
@pytest.mark.parametrize("field", ["date", "dateString", "sysTime", "mills"])
def test_dates_compare_as_instants_in_every_format(stamp: str, field: str) -> None:
    stored = {
        "date": T0,
        "dateString": "2024-11-22T07:00:00.000Z",
        "sysTime": "2024-11-22T07:00:00.000Z",
        "mills": T0,
    }
    assert matches("entries", stored, {field: stamp})
    assert matches("entries", stored, {field: {"$gte": stamp, "$lte": stamp}})
    assert not matches("entries", stored, {field: {"$gt": stamp}})
    assert not matches("entries", stored, {field: {"$lt": stamp}})
    assert not matches("entries", stored, {field: {"$ne": stamp}})


@pytest.mark.parametrize("stored", [*SAME_INSTANT, T0, float(T0), T0 + 0.4])
def test_stored_dates_in_every_format(stored: object) -> None:
    assert matches("treatments", {"created_at": stored}, {"created_at": {"$eq": "2024-11-22T07:00:00Z"}})
    assert matches("treatments", {"created_at": stored}, {"created_at": {"$lt": str(T0 + 1)}})


def test_offset_dates_compare_correctly_where_text_would_not() -> None:
    # as text, "2024-11-22T01:00:00-05:00" > "2024-11-22T06:00:00.000Z" is False; as instants they are equal
    stored = {"dateString": "2024-11-22T06:00:00.000Z"}
    assert matches("entries", stored, {"dateString": {"$gte": "2024-11-22T01:00:00-05:00"}})
    assert not matches("entries", stored, {"dateString": {"$gt": "2024-11-22T01:00:00-05:00"}})
    assert matches("entries", stored, {"dateString": {"$gt": "2024-11-22T01:00:00.000-0501"}}) is False
    assert matches("entries", stored, {"dateString": {"$gt": "2024-11-22T00:59:59.999-05:00"}})


def test_unreadable_stored_dates_match_nothing_positive() -> None:
    for stored in ("yesterday", True, {"$date": 1}, None, -5):
        doc = {"created_at": stored}
        assert not matches("treatments", doc, {"created_at": {"$gte": "0"}})
        assert matches("treatments", doc, {"created_at": {"$ne": "0"}})


@pytest.mark.parametrize("bad", ["yesterday", "2024-13-01T00:00:00Z", "-5", "1e12", "", "/2024/"])
def test_unreadable_query_dates_are_refused(bad: str) -> None:
    with pytest.raises(QueryError, match=r"find\[created_at\]\[\$gte\] is not a date"):
        matches("treatments", {}, {"created_at": {"$gte": bad}})


def test_server_dates_compare_as_instants() -> None:
    doc = {"srvModified": T0, "date": T0}
    assert matches("devicestatus", doc, {"srvModified": {"$gte": "2024-11-22T08:00:00+01:00"}})
    assert not matches("devicestatus", doc, {"srvModified": {"$gt": iso_utc(T0)}})


@given(
    query_ms=st.integers(31_536_000_000, 4_000_000_000_000),
    shift=st.one_of(st.just(0), st.integers(-2, 2), st.integers(-3 * HOUR, 3 * HOUR)),
    offset_min=st.integers(-14 * 60, 14 * 60),
    colon=st.booleans(),
    sep=st.sampled_from(["T", " "]),
    op=st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]),
    field=st.sampled_from(["date", "dateString", "sysTime"]),
)
def test_offset_and_epoch_queries_agree(
    query_ms: int, shift: int, offset_min: int, colon: bool, sep: str, op: str, field: str
) -> None:
    doc = _sgv(query_ms + shift, sysTime=iso_utc(query_ms + shift))
    iso = _iso(query_ms, offset_min, colon=colon, sep=sep)
    raw = f"find[{field}][{op}]={urllib.parse.quote(iso, safe=':+ ')}"  # '+' left raw, as some clients do
    by_text = build_query("entries", parse_query_string(raw), now_ms=NOW)
    by_epoch = build_query("entries", parse_query_string(f"find[{field}][{op}]={query_ms}"), now_ms=NOW)
    expected = {
        "$eq": shift == 0,
        "$ne": shift != 0,
        "$gt": shift > 0,
        "$gte": shift >= 0,
        "$lt": shift < 0,
        "$lte": shift <= 0,
    }[op]
    assert by_text.accepts(doc) is by_epoch.accepts(doc) is expected
    assert (by_text.low_ms, by_text.high_ms) == (by_epoch.low_ms, by_epoch.high_ms)


# -- regular expressions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        "(a+)+$",
        "(a*)*b",
        "(a|aa)*c",
        "(.*a){12}",
        "(?:x+y?){2}",
        r"\d*\d*\d*x",
        ".+.+x",
        r"\d+\.\d+",
        "a?" * 30 + "a" * 30,
        "a{1,100}a{1,100}a{1,100}b",
        r"(\w+)\1",
        "(?=a)b",
        "(?<!a)b",
        "(?(1)a|b)",
        "(?#note)a",
        "(?x)a b",
        "a" * 201,
        "a{2,1}",
        "[a",
        "(a",
        "a)",
        "*a",
        "a\\",
    ],
)
def test_dangerous_or_broken_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(QueryError, match=r"find\[notes\]\[\$regex\]: the regular expression"):
        matches("treatments", {"notes": "aaaa"}, {"notes": {"$regex": pattern}})


@pytest.mark.parametrize("options", ["x", "y", "!"])
def test_unknown_regex_options_are_refused(options: str) -> None:
    with pytest.raises(QueryError, match="option"):
        matches("treatments", {"notes": "a"}, {"notes": {"$regex": "a", "$options": options}})


def test_slashed_values_with_unknown_flags() -> None:
    with pytest.raises(QueryError, match="option x"):
        matches("treatments", {"notes": "a"}, {"notes": "/a/x"})
    assert not matches("treatments", {"notes": "a"}, {"notes": "/a/!"})  # not a pattern: plain text
    assert matches("treatments", {"notes": "/a/!"}, {"notes": "/a/!"})


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("foo.*bar", "a foo and a bar", True),
        ("^Temp ?Basal$", "TempBasal", True),
        ("^Temp ?Basal$", "Temp Basal Start", False),
        ("Temp ?Basal ?Start", "Temp Basal Start", True),
        (r"\d{1,3}", "no digits", False),
        ("^(Meal|Snack) Bolus$", "Snack Bolus", True),
        (".*Bolus.*", "Combo Bolus", True),
        (".*", "", True),
        ("(?i)PIZZA", "pizza", True),
        ("[[]x", "[x", True),
        ("[a--]", "-", True),
        ("^.*$", "line", True),
        ("(?:ab){2}c", "ababc", True),
    ],
)
def test_ordinary_patterns_work(pattern: str, text: str, expected: bool) -> None:
    assert matches("treatments", {"notes": text}, {"notes": {"$regex": pattern}}) is expected


def test_regex_only_tests_text_of_bounded_length() -> None:
    assert not matches("treatments", {"notes": 42}, {"notes": {"$regex": "42"}})
    long_note = "x" * MAX_REGEX_SUBJECT
    assert matches("treatments", {"notes": long_note}, {"notes": {"$regex": "x$"}})
    assert not matches("treatments", {"notes": long_note + "x"}, {"notes": {"$regex": "x$"}})
    assert matches("treatments", {"notes": long_note + "x"}, {"notes": {"$ne": "/x$/"}})


def test_worst_accepted_pattern_on_the_longest_value_is_quick() -> None:
    started = time.perf_counter()
    for pattern, text in (
        ("[ab]*c", "ab" * 5000),
        ("a{0,30}a{0,30}ab", "a" * 10_000),
        ("\\s+x", " " * 10_000),
    ):
        assert not matches("treatments", {"notes": text}, {"notes": {"$regex": pattern}})
    assert time.perf_counter() - started < 2.0  # about 0.3 s in all on a laptop


# -- refused filters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("find", "named"),
    [
        ({"$where": "sleep(1)"}, "$where"),
        ({"notes": {"$where": "1"}}, "$where"),
        ({"notes": {"$function": "x"}}, "$function"),
        ({"$or": [{"a": "1"}]}, "$or"),
        ({"tags": {"$elemMatch": {"x": "1"}}}, "$elemMatch"),
        ({"notes": {"$not": {"$eq": "x"}}}, "$not"),
        ({"notes": {"$" + "x" * 40: "1"}}, "an operator"),
    ],
)
def test_unknown_operators_are_refused_by_name(find: dict[str, Any], named: str) -> None:
    with pytest.raises(QueryError, match=r"is not supported") as caught:
        matches("treatments", TREATMENT, find)
    assert named in caught.value.message


@pytest.mark.parametrize(
    ("find", "rule"),
    [
        ({"notes": {"$gt": "1", "x": "2"}}, "mixes operators"),
        ({"notes": {}}, "no condition"),
        ({"notes": {"$options": "i"}}, "needs a \\$regex"),
        ({"notes": {"$exists": "maybe"}}, "true or false"),
        ({"notes": {"$eq": {"a": "b"}}}, "single value"),
        ({"notes": {"$eq": None}}, "single value"),
        ({"notes": {"$regex": 5}}, "must be a pattern"),
        ({"a..b": "1"}, "not a field path"),
        ({"a.$b": "1"}, "not a field path"),
        ({".".join("a" * 17): "1"}, "not a field path"),
        ({"k" * 201: "1"}, "longer than 200"),
        ({5: "1"}, "not text"),
    ],
)
def test_malformed_filters_are_refused(find: dict[Any, Any], rule: str) -> None:
    with pytest.raises(QueryError, match=rule):
        matches("treatments", TREATMENT, find)


def test_deep_find_trees_are_refused() -> None:
    tree: dict[str, Any] = {"v": "1"}
    for _ in range(30):
        tree = {"a": tree}
    with pytest.raises(QueryError):
        matches("treatments", {}, tree)


def test_compiled_filters_are_reusable() -> None:
    keep = compile_find("entries", {"sgv": {"$gte": "100"}, "type": "sgv"})
    assert [keep(_sgv(T0, sgv)) for sgv in (99, 100, 250)] == [False, True, True]


# -- properties of $in and $nin ------------------------------------------------------------------

WORDS = st.sampled_from(["a", "b", "A", "1", "2.0", "2", "true", "false", "/^a/", "/B/i", ""])
STORED = st.one_of(
    WORDS, st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none()
)


@given(stored=st.one_of(STORED, st.lists(STORED, max_size=3)), wanted=st.lists(WORDS, max_size=4))
def test_in_is_any_of_eq(stored: object, wanted: list[str]) -> None:
    doc = {"notes": stored}
    either = any(matches("treatments", doc, {"notes": {"$eq": value}}) for value in wanted)
    assert matches("treatments", doc, {"notes": {"$in": wanted}}) is either


@given(stored=st.one_of(STORED, st.lists(STORED, max_size=3)), wanted=st.lists(WORDS, max_size=4))
def test_nin_is_not_in_for_present_fields(stored: object, wanted: list[str]) -> None:
    doc = {"notes": stored}
    assert matches("treatments", doc, {"notes": {"$nin": wanted}}) is not matches(
        "treatments", doc, {"notes": {"$in": wanted}}
    )


@given(stored=st.integers(0, 400), wanted=st.lists(st.integers(0, 400).map(str), max_size=4))
def test_in_is_any_of_eq_for_numbers(stored: int, wanted: list[str]) -> None:
    doc = _sgv(T0, sgv=stored)
    either = any(matches("entries", doc, {"sgv": value}) for value in wanted)
    assert matches("entries", doc, {"sgv": {"$in": wanted}}) is either
    assert matches("entries", doc, {"sgv": {"$nin": wanted}}) is not either


# -- order ---------------------------------------------------------------------------------------


def test_sort_newest_first_with_unreadable_dates_last() -> None:
    docs = [
        {"n": 1, "created_at": "2024-11-22T07:00:00Z"},
        {"n": 2, "created_at": "garbage"},
        {"n": 3, "created_at": "2024-11-22T09:00:00+01:00"},  # 08:00Z
        {"n": 4},
        {"n": 5, "created_at": "2024-11-22T02:30:00-0500"},  # 07:30Z
        {"n": 6, "created_at": str(T0)},  # same instant as n=1: stable
    ]
    assert [d["n"] for d in sort_documents("treatments", docs)] == [3, 5, 1, 6, 2, 4]
    assert [d["n"] for d in sort_documents("treatments", docs, newest_first=False)] == [1, 6, 5, 3, 2, 4]
    assert sort_documents("treatments", docs)[0] is docs[2]


def test_sort_uses_each_collections_time_fields() -> None:
    entries = [
        {"n": 1, "dateString": iso_utc(T0)},
        {"n": 2, "date": T0 + 1},
        {"n": 3, "sysTime": iso_utc(T0 - 1)},
    ]
    assert [d["n"] for d in sort_documents("entries", entries)] == [2, 1, 3]
    profiles = [{"n": 1, "startDate": iso_utc(T0)}, {"n": 2, "startDate": iso_utc(T0 + HOUR)}]
    assert [d["n"] for d in sort_documents("profile", profiles)] == [2, 1]
    assert document_instant("activity", {"timeStamp": T0}) == T0
    assert document_instant("activity", {"created_at": "x", "timeStamp": T0}) == T0
    assert document_instant("activity", {}) is None


def test_sort_by_a_field() -> None:
    docs = [
        {"n": 1, "x": "b"},
        {"n": 2, "x": 3},
        {"n": 3, "x": "a"},
        {"n": 4, "x": True},
        {"n": 5},
        {"n": 6, "x": 1.5},
    ]
    assert [d["n"] for d in sort_documents("food", docs, newest_first=False, field="x")] == [6, 2, 3, 1, 4, 5]
    dated = [
        {"n": 1, "srvModified": T0},
        {"n": 2, "srvModified": iso_utc(T0 + 1)},
        {"n": 3, "srvModified": {}},
    ]
    assert [d["n"] for d in sort_documents("food", dated, field="srvModified")] == [2, 1, 3]


# -- API v3 --------------------------------------------------------------------------------------


def test_aaps_v3_search() -> None:
    search = v3_filters(parse_query_string("date$gt=1700000000000&sort$desc=date&limit=500"))
    assert search.find == {"date": {"$gt": "1700000000000"}}
    assert (search.limit, search.skip, search.sort, search.descending, search.fields) == (
        500,
        0,
        "date",
        True,
        None,
    )
    assert matches("entries", {"date": 1700000000001}, search.find)
    assert not matches("entries", {"date": 1700000000000}, search.find)
    treatments = v3_filters({"created_at$gt": "2024-11-22T07:00:00.000Z", "limit": "1000"})
    assert matches("treatments", {"created_at": "2024-11-22T08:00:00.001+01:00"}, treatments.find)
    assert not matches("treatments", {"created_at": "2024-11-22T08:00:00+01:00"}, treatments.find)


def test_v3_operators() -> None:
    search = v3_filters(
        {
            "type": "sgv",
            "sgv$gte": "100",
            "sgv$lt": "200",
            "device$ne": "'xDrip'",
            "direction$in": "Flat|FortyFiveUp",
            "noise$nin": "3|4",
            "app$re": "^AAPS",
            "token": "abc",
            "now": "1",
        }
    )
    assert search.find == {
        "type": {"$eq": "sgv"},
        "sgv": {"$gte": "100", "$lt": "200"},
        "device": {"$ne": "xDrip"},
        "direction": {"$in": ["Flat", "FortyFiveUp"]},
        "noise": {"$nin": ["3", "4"]},
        "app": {"$regex": "^AAPS"},
    }
    doc = {"type": "sgv", "sgv": 150, "device": "AAPS", "direction": "Flat", "noise": 1, "app": "AAPS-3.2"}
    assert matches("entries", doc, search.find)
    assert not matches("entries", {**doc, "direction": "DoubleUp"}, search.find)
    assert not matches("entries", {**doc, "device": "xDrip"}, search.find)
    assert v3_filters({"date": "1", "date$eq": "1"}).find == {"date": {"$eq": ["1", "1"]}}
    assert v3_filters({"a$b$eq": "1"}).find == {"a$b": {"$eq": "1"}}


def test_v3_defaults_and_fields() -> None:
    search = v3_filters({})
    assert (search.find, search.limit, search.skip, search.sort, search.descending, search.fields) == (
        {},
        V3_MAX_LIMIT,
        0,
        None,
        False,
        None,
    )
    assert v3_filters({"fields": "_all"}).fields is None
    fields = v3_filters({"fields": "sgv, direction,,date", "sort": "sgv", "skip": "20"})
    assert fields.fields == ("sgv", "direction", "date", "identifier", "srvCreated", "created_at")
    assert (fields.sort, fields.descending, fields.skip) == ("sgv", False, 20)


@pytest.mark.parametrize(
    ("params", "rule"),
    [
        ({"date$where": "1"}, "operator where is not supported"),
        ({"$eq": "1"}, "names no field"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"skip": "-1"}, "skip"),
        ({"skip": "x"}, "skip"),
        ({"sort": "date", "sort$desc": "date"}, "cannot be combined"),
        ({"sort": "$where"}, "sort must name fields"),
        ({"fields": "a..b"}, "fields must name fields"),
        ({"limit": ["1", "2"]}, "once"),
        ({"date$in": ["1", "2"]}, "once"),
        ({"find": {"date": "1"}}, "must be text"),
    ],
)
def test_bad_v3_searches_are_refused(params: dict[str, Any], rule: str) -> None:
    with pytest.raises(QueryError, match=rule.replace("$", r"\$")):
        v3_filters(params)


def test_v3_limit_takes_the_whole_part() -> None:
    assert v3_filters({"limit": "1.9"}).limit == 1
    assert v3_filters({"limit": "1000"}).limit == V3_MAX_LIMIT


def test_project_keeps_named_fields_and_paths() -> None:
    doc = {
        "identifier": "x",
        "date": 1,
        "sgv": 120,
        "pump": {"battery": {"percent": 50, "voltage": 1.4}, "reservoir": 100},
        "predicted": [{"values": [1, 2], "startDate": "d"}, 7],
        "noise": 1,
    }
    fields = v3_filters({"fields": "sgv,pump.battery.percent,predicted.values"}).fields
    assert project(doc, fields) == {
        "identifier": "x",
        "date": 1,
        "sgv": 120,
        "pump": {"battery": {"percent": 50}},
        "predicted": [{"values": [1, 2]}, 7],
    }
    assert project(doc, None) == doc
