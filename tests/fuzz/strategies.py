"""Hypothesis strategies for hostile webhook requests: bodies as raw bytes, headers as lists of pairs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from test_ingest.conftest import KEY
from test_ingest.payloads import AMOUNT_FIELDS, CATALOG, envelope

TIMESTAMP_FIELDS = ("created_at", "blocked_at", "transaction_timestamp")
MONEY_FIELDS = tuple(sorted(AMOUNT_FIELDS | {"exchange_rate"}))
PLACEHOLDER = "\u0001HOSTILE\u0001"
THREE_DS = next(entry for entry in CATALOG if entry[1] == "notification_3ds_authorization")


@dataclass(frozen=True)
class Case:
    body: bytes
    headers: list[tuple[str, str]]
    authentic: bool | None  # None: a duplicated key header, where either outcome is allowed
    secret: str | None = None  # a 3DS code that must never reach a log line


# --- numbers as raw JSON text ---------------------------------------------------------------------
huge_and_tiny = st.sampled_from([
    "1e999999", "1E+100000000", "-1e999999", "1e-999999", "5e-324", "1.7976931348623157e308", "-0", "0e0",
    "0E+99999", "1e30", "1e37", "123456789012345678901234567890.123456789", "NaN", "Infinity", "-Infinity",
    '"1e999999"', '"1E+100000000"', '"NaN"', '"Infinity"', '"-0"', '" 42.50 "', '"42,50"', '"0x10"', '"1_000"',
    '"\u0661\u0662"', "1" + "0" * 5000, "-" + "9" * 400, "0." + "0" * 400 + "1", '"' + "9" * 99 + '"',
    '"' + "9" * 101 + '"', "true", "null", "[]", "{}", '""',
])
json_floats = st.floats(allow_nan=False, allow_infinity=False).map(repr)
json_ints = st.integers(min_value=-(10 ** 40), max_value=10 ** 40).map(str)
hostile_number = st.one_of(huge_and_tiny, json_floats, json_ints)
hostile_timestamp = st.one_of(hostile_number, st.sampled_from([
    '"2025-01-15T12:34:56Z"', '"9999-12-31T23:59:59Z"', '"0000-00-00T00:00:00Z"', '"2025-02-30T00:00:00Z"',
    '"2025-01-15T12:34:56+99:00"', '"now"', '"1e999999"', '"' + "2025" * 1000 + '"', "253402300800",
    "-62135596800", "1e20",
]))

# --- unicode edge cases -------------------------------------------------------------------------
unicode_edges = st.sampled_from([
    "", " ", "\u0000", "\ufeff", "\u202e", "\u200b", "\U0001f4b3", "e\u0301", "\u0130", "\u017f", "ＣＡＲＤＳ",
    "\\ud800", "\\udfff", "\\u0000", "\x7f", "a" * 200,
])
hostile_text = st.one_of(st.text(max_size=40), unicode_edges)

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def _catalog_doc(entry: tuple, generation: str, casing: str) -> dict[str, Any]:
    product, event_type, status, op, data, _, _ = entry
    return json.loads(envelope(product, event_type, status, op, data, generation=generation, casing=casing))


catalog_doc = st.builds(_catalog_doc, st.sampled_from(CATALOG), st.sampled_from(["A", "B"]),
                        st.sampled_from(["lower", "upper"]))


def _with_raw(doc: dict[str, Any], path: tuple[str, ...], raw: str) -> bytes:
    """`doc` as JSON with the value at `path` replaced by raw JSON text."""
    target = doc
    for name in path[:-1]:
        target = target.setdefault(name, {}) if isinstance(target.get(name), dict) else target
    target[path[-1]] = PLACEHOLDER
    return json.dumps(doc).replace(json.dumps(PLACEHOLDER), raw).encode("utf-8", "surrogatepass")


@st.composite
def hostile_numbers_body(draw: st.DrawFn) -> bytes:
    """A catalog event with one money or timestamp field (present or not) set to a hostile number."""
    doc = draw(catalog_doc)
    field = draw(st.sampled_from(MONEY_FIELDS + TIMESTAMP_FIELDS + ("fees.atm_fees", "fees.fx_fees")))
    raw = draw(hostile_timestamp if field in TIMESTAMP_FIELDS else hostile_number)
    return _with_raw(doc, ("data", *field.split(".")), raw)


@st.composite
def wrong_types_body(draw: st.DrawFn) -> bytes:
    doc = draw(catalog_doc)
    name = draw(st.sampled_from(sorted(doc) + [f"data.{k}" for k in doc.get("data") or {}]))
    value = draw(json_value)
    if name.startswith("data."):
        doc["data"][name[5:]] = value
    else:
        doc[name] = value
    return json.dumps(doc).encode()


@st.composite
def truncated_body(draw: st.DrawFn) -> bytes:
    body = json.dumps(draw(catalog_doc)).encode()
    return body[: draw(st.integers(0, len(body) - 1))]


@st.composite
def deep_body(draw: st.DrawFn) -> bytes:
    depth = draw(st.sampled_from([10, 100, 1000, 10_000, 100_000]))
    doc = draw(catalog_doc)
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    return _with_raw(doc, ("data", "metadata"), opener * depth + "1" + closer * depth)


@st.composite
def duplicate_keys_body(draw: st.DrawFn) -> bytes:
    doc = draw(catalog_doc)
    name = draw(st.sampled_from(sorted(doc)))
    raw = json.dumps(doc)
    extra = json.dumps(draw(json_value))
    first = draw(st.booleans())
    return ("{" + f"{json.dumps(name)}: {extra}, " + raw[1:] if first
            else raw[:-1] + f", {json.dumps(name)}: {extra}" + "}").encode()


@st.composite
def unicode_body(draw: st.DrawFn) -> bytes:
    doc = draw(catalog_doc)
    name = draw(st.sampled_from(sorted(doc) + ["data.card_id", "data.wallet_id", "data.merchant_data"]))
    text = draw(hostile_text)
    path = tuple(name.split("."))
    body = _with_raw(doc, path, json.dumps(text).replace("\\\\u", "\\u"))
    mangle = draw(st.sampled_from(["none", "bom", "latin1", "invalid_utf8", "overlong", "nul"]))
    if mangle == "bom":
        body = b"\xef\xbb\xbf" + body
    elif mangle == "latin1":
        body = body.replace(b'"', b'"\xe9', 1)
    elif mangle == "invalid_utf8":
        body = body.replace(b"{", b"{\xff", 1)
    elif mangle == "overlong":
        body = body.replace(b'"', b'"\xc0\xaf', 1)
    elif mangle == "nul":
        body = body + b"\x00"
    return body


@st.composite
def sized_body(draw: st.DrawFn, limit: int) -> bytes:
    """A valid event padded to the body limit, one byte under, at it, or past it."""
    doc = draw(catalog_doc)
    skeleton = _with_raw(doc, ("data", "padding"), '""')
    target = limit + draw(st.sampled_from([-1, 0, 1, 2, 4096]))
    pad = max(target - len(skeleton), 0)
    return _with_raw(doc, ("data", "padding"), json.dumps("x" * pad))


@st.composite
def three_ds_body(draw: st.DrawFn) -> tuple[bytes, str]:
    """A 3DS challenge in any spelling the parser accepts; its code (= operation_id) is secret."""
    product, _, status, _, data, _, _ = THREE_DS
    code = f"3ds-{draw(st.uuids()).hex[:20]}"
    words = ["notification", "3ds", "authorization"]
    sep = draw(st.sampled_from(["_", "-", " ", ".", "__", " - "]))
    cased = [draw(st.sampled_from([w.lower(), w.upper(), w.capitalize()])) for w in words]
    event_type = draw(st.sampled_from(["", " ", "\t"])) + sep.join(cased) + draw(st.sampled_from(["", " "]))
    generation = draw(st.sampled_from(["A", "B"]))
    doc = {("operation" if generation == "A" else "product"): draw(st.sampled_from(["cards", "CARDS", "Cards"])),
           ("sub_operation" if generation == "A" else "event_type"): event_type,
           "operation_id": code, "status": status, "data": {**data, "code": code}}
    return json.dumps(doc).encode(), code


def body_strategy(limit: int) -> st.SearchStrategy[bytes]:
    return st.one_of(hostile_numbers_body(), wrong_types_body(), truncated_body(), deep_body(),
                     duplicate_keys_body(), unicode_body(), sized_body(limit),
                     st.binary(max_size=300), catalog_doc.map(lambda d: json.dumps(d).encode()))


# --- headers --------------------------------------------------------------------------------------
_short_header = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                        max_size=60).map(str.strip)  # the HTTP grammar has no edge whitespace
_long_header = st.sampled_from([1024, 16 * 1024, 1024 * 1024]).map(lambda n: "t" * n)
header_text = st.one_of(*[_short_header] * 9, _long_header)  # one in ten oversized


@st.composite
def request_headers(draw: st.DrawFn) -> tuple[list[tuple[str, str]], bool | None]:
    """Headers and whether they authenticate: missing, wrong, duplicated and oversized ones."""
    key_form = draw(st.sampled_from(["right", "right", "right", "missing", "wrong", "empty", "right_then_wrong",
                                     "wrong_then_right", "case"]))
    headers: list[tuple[str, str]] = []
    authentic: bool | None = key_form == "right"
    if key_form in ("right", "wrong", "empty", "case"):
        value = {"right": KEY, "wrong": KEY[:-1] + "X", "empty": "", "case": KEY.upper()}[key_form]
        headers.append(("X-Webhook-Key", value))
    elif key_form != "missing":
        pair = [KEY, "wrong-key-0000000000"]
        headers += [("X-Webhook-Key", v) for v in (pair if key_form == "right_then_wrong" else pair[::-1])]
        authentic = None
    for name in ("X-Trace-Id", "X-Request-Timestamp", "Content-Type"):
        for _ in range(draw(st.integers(0, 2))):
            headers.append((name, draw(header_text)))
    return headers, authentic


def case_strategy(limit: int) -> st.SearchStrategy[Case]:
    plain = st.builds(lambda body, hdrs: Case(body, hdrs[0], hdrs[1]), body_strategy(limit), request_headers())
    secret = st.builds(lambda pair, hdrs: Case(pair[0], hdrs[0], hdrs[1], pair[1]), three_ds_body(),
                       request_headers())
    return st.one_of(plain, plain, plain, secret)
