"""The Avro codec: round trips of every contract, evolution, header, validation and fuzzing.

Records are generated from the ``.avsc`` JSON itself, so a new contract is covered by being added.
The fingerprint is cross-checked against a Parsing Canonical Form and CRC-64-AVRO written here from
the Avro spec, and those against the vectors of the Java implementation.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
import struct
from collections.abc import Callable, Iterator
from functools import cache
from importlib import resources
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from schemas import codec
from schemas.codec import Codec, CodecError, decode, default_codec, encode, fingerprint

AVSC = sorted(f.name for f in resources.files("schemas").iterdir() if f.name.endswith(".avsc"))
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def load(filename: str) -> dict[str, Any]:
    return json.loads(resources.files("schemas").joinpath(filename).read_text(encoding="utf-8"))


def full_name(schema: dict[str, Any]) -> str:
    return f"{schema['namespace']}.{schema['name']}" if schema.get("namespace") else schema["name"]


# --------------------------------------------------------------------------- spec re-implementations


def canonical_form(schema: Any, namespace: str = "", seen: set[str] | None = None) -> str:
    """Parsing Canonical Form (Avro spec): PRIMITIVES, FULLNAMES, STRIP, ORDER, no whitespace."""
    seen = set() if seen is None else seen

    def text(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def qualify(name: str, space: str) -> str:
        return name if "." in name or not space else f"{space}.{name}"

    if isinstance(schema, str):
        return text(schema if schema in PRIMITIVES else qualify(schema, namespace))
    if isinstance(schema, list):
        return "[" + ",".join(canonical_form(s, namespace, seen) for s in schema) + "]"
    kind = schema["type"]
    if isinstance(kind, dict | list) or kind in PRIMITIVES:
        return canonical_form(kind, namespace, seen)
    if kind == "array":
        return '{"type":"array","items":' + canonical_form(schema["items"], namespace, seen) + "}"
    if kind == "map":
        return '{"type":"map","values":' + canonical_form(schema["values"], namespace, seen) + "}"
    full = qualify(schema["name"], schema.get("namespace", namespace))
    if full in seen:
        return text(full)
    seen.add(full)
    inner = full.rpartition(".")[0]
    out = '{"name":' + text(full) + ',"type":' + text(kind)
    if kind == "record":
        fields = [
            '{"name":' + text(f["name"]) + ',"type":' + canonical_form(f["type"], inner, seen) + "}"
            for f in schema["fields"]
        ]
        out += ',"fields":[' + ",".join(fields) + "]"
    elif kind == "enum":
        out += ',"symbols":' + text(schema["symbols"])
    elif kind == "fixed":
        out += ',"size":' + str(int(schema["size"]))
    return out + "}"


_EMPTY64 = 0xC15D213AA4D7A795


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY64 & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _crc_table()


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO (Rabin) exactly as the spec's reference ``fingerprint64``; unsigned result."""
    fp = _EMPTY64
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


# (schema, canonical form, fingerprint as the Java long) from apache/avro share/test/data/schema-tests.txt
JAVA_VECTORS = [
    ('"null"', '"null"', 7195948357588979594),
    ('{"type":"boolean"}', '"boolean"', -6970731678124411036),
    ('"int"', '"int"', 8247732601305521295),
    ('"string"', '"string"', -8142146995180207161),
    ('[ "int" , {"type":"boolean"} ]', '["int","boolean"]', 5392556393470105090),
    (
        '{"fields":[], "type":"record", "name":"foo"}',
        '{"name":"foo","type":"record","fields":[]}',
        -4824392279771201922,
    ),
    (
        '{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}',
        '{"name":"x.y.foo","type":"record","fields":[]}',
        5916914534497305771,
    ),
    (
        '{"fields":[], "type":"record", "name":"a.b.foo", "namespace":"x.y"}',
        '{"name":"a.b.foo","type":"record","fields":[]}',
        -4616218487480524110,
    ),
    (
        '{ "fields":[{"type":"boolean", "aliases":[], "name":"f1", "default":"true"},'
        '{"order":"descending","name":"f2","doc":"Hello","type":"int"}], "type":"record", "name":"foo"}',
        '{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"},{"name":"f2","type":"int"}]}',
        -4860222112080293046,
    ),
    (
        '{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}',
        '{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}',
        -4448647247586288245,
    ),
    (
        '{"namespace":"x.y.z", "type":"fixed", "name":"foo", "doc":"foo bar", "size":32}',
        '{"name":"x.y.z.foo","type":"fixed","size":32}',
        -3064184465700546786,
    ),
    ('{ "items":{"type":"null"}, "type":"array"}', '{"type":"array","items":"null"}', -589620603366471059),
    (
        '{"name":"PigValue","type":"record",'
        '"fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}',
        '{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}',
        -1759257747318642341,
    ),
]


@pytest.mark.parametrize(("schema", "canonical", "java"), JAVA_VECTORS)
def test_reference_implementations_match_java_vectors(schema: str, canonical: str, java: int) -> None:
    assert canonical_form(json.loads(schema)) == canonical
    assert crc64_avro(canonical.encode()) == java & 0xFFFF_FFFF_FFFF_FFFF


# --------------------------------------------------------------------------- record strategies


def _camel(symbol: str) -> str:
    return "".join(part.capitalize() for part in symbol.split("_"))


class _Strategies:
    """Hypothesis strategies for valid records of one schema, built from its JSON."""

    def __init__(self) -> None:
        self.defs: dict[str, tuple[dict[str, Any], str]] = {}  # full name -> (definition, namespace)
        self.named: dict[str, st.SearchStrategy[Any]] = {}

    def resolve(self, schema: Any, ns: str) -> tuple[Any, str]:
        if isinstance(schema, str) and schema not in PRIMITIVES:
            name = schema if "." in schema or not ns else f"{ns}.{schema}"
            return self.defs[name] if name in self.defs else self.defs[schema]
        return schema, ns

    def build(self, schema: Any, ns: str) -> st.SearchStrategy[Any]:
        if isinstance(schema, list):
            return st.one_of([self.build(s, ns) for s in schema])
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return self.primitive(schema)
            name = schema if "." in schema or not ns else f"{ns}.{schema}"
            name = name if name in self.named else schema
            return st.deferred(lambda: self.named[name])
        kind = schema["type"]
        if isinstance(kind, dict | list) or kind in PRIMITIVES:
            return self.build(kind, ns)  # a logicalType only annotates: records carry the base type
        if kind == "array":
            return st.lists(self.build(schema["items"], ns), max_size=3)
        if kind == "map":
            return st.dictionaries(st.text(max_size=6), self.build(schema["values"], ns), max_size=3)
        name = schema["name"]
        space = schema.get("namespace", ns) if "." not in name else name.rpartition(".")[0]
        full = name if "." in name or not space else f"{space}.{name}"
        self.defs[full] = (schema, space)
        if kind == "enum":
            self.named[full] = st.sampled_from(schema["symbols"])
        elif kind == "fixed":
            self.named[full] = st.binary(min_size=schema["size"], max_size=schema["size"])
        else:
            self.named[full] = st.deferred(lambda: record)  # recursive references
            record = self.record(schema, space)
            self.named[full] = record
        return self.named[full]

    def record(self, schema: dict[str, Any], ns: str) -> st.SearchStrategy[dict[str, Any]]:
        fields = {f["name"]: self.build(f["type"], ns) for f in schema["fields"]}
        # A union of several records is chosen by the sibling enum (SALE_NEW -> SaleNew).
        for f in schema["fields"]:
            union = f["type"]
            if not isinstance(union, list):
                continue
            branches = {}
            for s in union:
                resolved, _ = self.resolve(s, ns)
                if isinstance(resolved, dict) and resolved.get("type") == "record":
                    branches[resolved["name"].rpartition(".")[2]] = self.build(s, ns)
            if len(branches) < 2:
                continue
            for g in schema["fields"]:
                enum, _ = self.resolve(g["type"], ns)
                is_enum = isinstance(enum, dict) and enum.get("type") == "enum"
                if is_enum and sorted(_camel(s) for s in enum["symbols"]) == sorted(branches):
                    return st.sampled_from(enum["symbols"]).flatmap(
                        lambda sym, f=f, g=g, branches=branches: st.fixed_dictionaries(
                            {**fields, g["name"]: st.just(sym), f["name"]: branches[_camel(sym)]}
                        )
                    )
            raise AssertionError(f"no discriminating enum for {f['name']}")
        return st.fixed_dictionaries(fields)

    @staticmethod
    def primitive(kind: str) -> st.SearchStrategy[Any]:
        return {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            # NaN never equals itself; the fuzz test covers NaN bit patterns.
            "float": st.floats(width=32, allow_nan=False),
            "double": st.floats(allow_nan=False),
            "bytes": st.binary(max_size=12),
            "string": st.text(max_size=12),
        }[kind]


@cache
def records(filename: str) -> st.SearchStrategy[dict[str, Any]]:
    return _Strategies().build(load(filename), "")


# --------------------------------------------------------------------------- round trips


def test_default_codec_has_every_contract() -> None:
    assert default_codec().names == sorted(full_name(load(f)) for f in AVSC)
    assert len(AVSC) >= 5
    assert default_codec() is default_codec()  # loaded once


@pytest.mark.parametrize("filename", AVSC)
@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_contract_round_trips(filename: str, data: st.DataObject) -> None:
    name = full_name(load(filename))
    record = data.draw(records(filename))
    original = copy.deepcopy(record)
    short = name.rpartition(".")[2]
    encoded = encode(short, record)
    assert record == original  # encode leaves its input alone
    assert decode(encoded, name) == record
    assert encode(name, decode(encoded, short)) == encoded


def test_event_payload_is_a_plain_dict_chosen_by_type() -> None:
    # Same fields, different branches: only the type can tell them apart.
    added = event(type="CONTACT_TAG_ADDED", payload={"contact": contact(), "tag": {"id": 1, "name": "x"}})
    removed = {**added, "type": "CONTACT_TAG_REMOVED"}
    a, r = encode("Event", added), encode("Event", removed)
    assert a != r
    assert decode(a, "Event") == added
    assert decode(r, "Event") == removed
    assert type(decode(r, "Event")["payload"]) is dict
    # fastavro's hints are accepted when they agree with the type, and never come back.
    hinted = {**removed, "payload": {**removed["payload"], "-type": "io.hookline.events.ContactTagRemoved"}}
    assert encode("Event", hinted) == r
    assert (
        encode("Event", {**removed, "payload": ("io.hookline.events.ContactTagRemoved", removed["payload"])})
        == r
    )


def test_timestamps_are_int_milliseconds() -> None:
    record = event()
    assert decode(encode("Event", record), "Event")["occurredAt"] == 1_700_000_000_123
    with pytest.raises(CodecError) as info:
        encode("Event", {**record, "occurredAt": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)})
    assert info.value.field == "occurredAt"


def test_missing_fields_take_their_defaults() -> None:
    minimal = {
        "messageId": "m",
        "attemptId": "a",
        "attempt": 1,
        "eventId": "e",
        "webhookId": "w",
        "accountId": "c",
        "eventType": "SALE_NEW",
        "eventOccurredAt": 1,
        "attemptedAt": 2,
        "url": "https://x.test/",
        "outcome": "failed",
    }
    got = decode(encode("DeliveryResult", minimal), "DeliveryResult")
    assert got == {
        **minimal,
        "requestHeaders": {},
        "requestBody": b"",
        "responseStatus": None,
        "responseHeaders": {},
        "responseBodyExcerpt": b"",
        "responseBodyTruncated": False,
        "latencySeconds": 0.0,
        "errorClass": None,
        "errorMessage": None,
        "nextRetryAt": None,
        "final": False,
        "trigger": "automatic",
    }
    got["requestHeaders"]["x"] = "y"
    assert decode(encode("DeliveryResult", minimal), "DeliveryResult")["requestHeaders"] == {}


# --------------------------------------------------------------------------- evolution


def test_reader_with_added_fields_reads_old_data() -> None:
    old = load("Event.avsc")
    new = copy.deepcopy(old)
    new["fields"] += [
        {"name": "traceId", "type": ["null", "string"], "default": None},
        {"name": "labels", "type": {"type": "map", "values": "string"}, "default": {"k": "v"}},
        {"name": "blob", "type": "bytes", "default": "\u00ff\u0001"},
        {"name": "ids", "type": {"type": "array", "items": "long"}, "default": [7]},
        {"name": "priority", "type": "int", "default": 3},
    ]
    c = Codec([old])
    record = event()
    written = c.encode("Event", record)
    new_fp = c.register(new)
    assert new_fp != written[2:10]
    got = c.decode(written, "Event")
    assert got == {
        **record,
        "traceId": None,
        "labels": {"k": "v"},
        "blob": b"\xff\x01",
        "ids": [7],
        "priority": 3,
    }
    got["labels"]["x"] = "y"
    got["ids"].append(8)
    assert c.decode(written, "Event")["labels"] == {"k": "v"}  # defaults are not shared
    assert c.decode(written, "Event")["ids"] == [7]
    # New data under the new schema, and read back by a codec still on the old one.
    fresh = c.encode("Event", {**record, "traceId": "t", "priority": 9})
    assert fresh[2:10] == new_fp
    assert c.decode(fresh, "Event")["priority"] == 9
    older = Codec([old])
    older.register(new, current=False)
    assert older.decode(fresh, "Event") == record


def test_incompatible_writer_is_wrong_schema() -> None:
    v1 = {"type": "record", "name": "R", "namespace": "t", "fields": [{"name": "a", "type": "string"}]}
    v2 = {"type": "record", "name": "R", "namespace": "t", "fields": [{"name": "a", "type": "boolean"}]}
    c = Codec([v1])
    data = c.encode("R", {"a": "x"})
    c.register(v2)
    with pytest.raises(CodecError) as info:
        c.decode(data, "R")
    assert info.value.reason == "wrong_schema"


# --------------------------------------------------------------------------- header and errors


@pytest.mark.parametrize("filename", AVSC)
@settings(max_examples=10, deadline=None, database=None)
@given(data=st.data())
def test_header_is_magic_and_little_endian_fingerprint(filename: str, data: st.DataObject) -> None:
    schema = load(filename)
    name = full_name(schema)
    expected = crc64_avro(canonical_form(schema).encode()).to_bytes(8, "little")
    assert fingerprint(name) == expected
    assert fingerprint(name.rpartition(".")[2]) == expected
    encoded = encode(name, data.draw(records(filename)))
    assert encoded[:2] == b"\xc3\x01"
    assert encoded[2:10] == expected
    # The spec: little-endian of the signed 64-bit fingerprint (as Java writes it).
    signed = struct.unpack("<q", expected)[0]
    assert struct.pack("<q", signed) == encoded[2:10]


def test_named_types_repeated_across_files_are_identical() -> None:
    # Each file is self-contained, so shared types (EventType) are copied inline: copies must agree.
    forms: dict[str, set[str]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for x in node:
                walk(x)
        elif isinstance(node, dict):
            if node.get("type") in ("record", "enum", "fixed"):
                forms.setdefault(node["name"], set()).add(json.dumps(node))
            for x in node.values():
                walk(x)

    for f in AVSC:
        walk(json.loads(canonical_form(load(f))))
    assert {name: len(f) for name, f in forms.items() if len(f) > 1} == {}
    assert "io.hookline.events.EventType" in forms


def contact(**changes: Any) -> dict[str, Any]:
    return {
        "id": 1,
        "email": "a@example.com",
        "registeredAt": 1_600_000_000_000,
        "locale": None,
        "sourceURL": None,
        "unsubscribed": False,
        "bounced": False,
        "needsConfirmation": False,
        "fields": [{"fieldName": "First name", "slug": "first_name", "value": "Ann"}],
        "tags": [{"id": 5, "name": "vip"}],
    } | changes


def event(**changes: Any) -> dict[str, Any]:
    return {
        "eventId": "e-1",
        "accountId": "acc-1",
        "occurredAt": 1_700_000_000_123,
        "source": "crm",
        "schemaVersion": 1,
        "type": "CONTACT_CREATED",
        "payload": {"contact": contact()},
    } | changes


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({k: v for k, v in event().items() if k != "eventId"}, "eventId"),
        (event(eventId=7), "eventId"),
        (event(schemaVersion=2**31), "schemaVersion"),
        (event(schemaVersion=True), "schemaVersion"),
        (event(occurredAt=2**63), "occurredAt"),
        (event(type="CONTACT_DELETED"), "type"),
        (event(sourse="crm"), "sourse"),
        (event(source="\ud800"), "source"),
        (event(payload={"contact": contact(email=None)}), "payload.contact.email"),
        (
            event(payload={"contact": contact(tags=[{"id": 1, "name": "a"}, {"id": "2", "name": "b"}])}),
            "payload.contact.tags[1].id",
        ),
        (event(type="SALE_NEW"), "payload.customer"),
        (event(payload=("io.hookline.events.SaleNew", {"contact": contact()})), "payload"),
        (event(payload={"contact": contact(), "-type": "io.hookline.events.ContactOptIn"}), "payload"),
        (event(payload={"contact": contact(), "-type": ["unhashable"]}), "payload"),
        (event(payload=[1]), "payload"),
        (event(payload={"contact": contact(), "extra": 1}), "payload.extra"),
    ],
)
def test_encode_rejects_invalid_records_naming_the_field(record: dict[str, Any], field: str) -> None:
    with pytest.raises(CodecError) as info:
        encode("Event", record)
    assert info.value.reason == "invalid_field"
    assert info.value.field == field
    assert field in str(info.value)


def test_encode_rejects_bad_map_and_bytes_values() -> None:
    task = {
        "messageId": "m",
        "eventId": "e",
        "webhookId": "w",
        "accountId": "a",
        "eventType": "SALE_NEW",
        "eventOccurredAt": 1,
        "routedAt": 2,
        "configVersion": 3,
        "payload": b"{}",
    }
    assert decode(encode("DeliveryTask", task), "DeliveryTask")["dueAt"] == 0
    for bad, field in [({"payload": "{}"}, "payload"), ({"trigger": "cron"}, "trigger")]:
        with pytest.raises(CodecError) as info:
            encode("DeliveryTask", {**task, **bad})
        assert info.value.field == field


def test_unknown_schema_name_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        encode("Nope", {})
    with pytest.raises(KeyError):
        decode(b"\xc3\x01" + bytes(8), "Nope")


def _int_codec() -> Codec:
    return Codec(
        [{"type": "record", "name": "N", "namespace": "t", "fields": [{"name": "n", "type": "int"}]}]
    )


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda good: b"", "too_short"),
        (lambda good: good[:9], "too_short"),
        (lambda good: b"\xc3\x02" + good[2:], "bad_magic"),
        (lambda good: b"Ob" + good[2:], "bad_magic"),
        (lambda good: good[:2] + bytes(8) + good[10:], "unknown_fingerprint"),
        (lambda good: good[:2] + fingerprint("DeliveryTask") + good[10:], "wrong_schema"),
        (lambda good: good[:-1], "bad_body"),
        (lambda good: good[:10], "bad_body"),
        (lambda good: good + b"\x00", "trailing_bytes"),
    ],
)
def test_decode_refuses_bad_input(make: Callable[[bytes], bytes], reason: str) -> None:
    good = encode("Event", event())
    with pytest.raises(CodecError) as info:
        decode(make(good), "Event")
    assert info.value.reason == reason


def test_decode_refuses_none_and_wrong_reader() -> None:
    with pytest.raises(CodecError) as info:
        decode(None, "Event")  # a tombstone
    assert info.value.reason == "too_short"
    with pytest.raises(CodecError) as info:
        decode(encode("Event", event()), "DeliveryTask")
    assert info.value.reason == "wrong_schema"


def test_decode_validates_what_fastavro_accepts() -> None:
    c = _int_codec()
    header = c.encode("N", {"n": 1})[:10]
    assert c.decode(header + b"\xfe\xff\xff\xff\x0f", "N") == {"n": 2**31 - 1}
    with pytest.raises(CodecError) as info:
        c.decode(header + b"\x80\x80\x80\x80\x10", "N")  # 2**31: fits a long, not an int
    assert (info.value.reason, info.value.field) == ("invalid_field", "n")
    # Swap the type of a ContactTagAdded event for ContactTagRemoved: payload and type disagree.
    added = encode(
        "Event",
        event(type="CONTACT_TAG_ADDED", payload={"contact": contact(), "tag": {"id": 1, "name": "x"}}),
    )
    removed = encode(
        "Event",
        event(type="CONTACT_TAG_REMOVED", payload={"contact": contact(), "tag": {"id": 1, "name": "x"}}),
    )
    diff = [i for i in range(len(added)) if added[i] != removed[i]]
    assert len(diff) == 2  # the enum index, then the union index
    mixed = bytearray(added)
    mixed[diff[0]] = removed[diff[0]]
    with pytest.raises(CodecError) as info:
        decode(bytes(mixed), "Event")
    assert (info.value.reason, info.value.field) == ("invalid_field", "payload")


def test_decode_accepts_bytearray_and_memoryview() -> None:
    good = encode("Event", event())
    assert decode(bytearray(good), "Event") == event()
    assert decode(memoryview(good), "Event") == event()


@pytest.mark.parametrize(
    "schema",
    [
        # Two records in a union and no enum to say which: decode could not return a plain dict.
        {
            "type": "record",
            "name": "U",
            "fields": [
                {
                    "name": "u",
                    "type": [
                        {"type": "record", "name": "A", "fields": []},
                        {"type": "record", "name": "B", "fields": []},
                    ],
                }
            ],
        },
        # Items that encode to zero bytes: a hostile block count would spin the reader.
        {
            "type": "record",
            "name": "Z",
            "fields": [{"name": "z", "type": {"type": "array", "items": "null"}}],
        },
        {"type": "record", "name": "D", "fields": [{"name": "d", "type": "int", "default": "one"}]},
        {"type": "enum", "name": "E", "symbols": ["A"]},
    ],
)
def test_register_refuses_schemas_it_cannot_handle(schema: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Codec([schema])


def test_short_names_must_be_unambiguous() -> None:
    a = {"type": "record", "name": "R", "namespace": "a", "fields": []}
    b = {"type": "record", "name": "R", "namespace": "b", "fields": []}
    c = Codec([a, b])
    assert c.decode(c.encode("a.R", {}), "a.R") == {}
    with pytest.raises(KeyError, match="ambiguous"):
        c.encode("R", {})


def test_public_surface_is_sorted_and_complete() -> None:
    assert schemas.__all__ == sorted(schemas.__all__)
    assert set(schemas.__all__) == set(codec.__all__)
    public = {
        n
        for n, v in vars(codec).items()
        if not n.startswith("_") and getattr(v, "__module__", "") == codec.__name__
    }
    assert public == set(codec.__all__)
    assert issubclass(CodecError, ValueError)


# --------------------------------------------------------------------------- fuzzing

MUTATIONS_PER_RECORD = 100
RECORDS_PER_SCHEMA = 20_000 // (MUTATIONS_PER_RECORD * 5)


def mutations(good: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    for _ in range(MUTATIONS_PER_RECORD):
        kind = rng.choice(
            [
                "flip",
                "flip_body",
                "replace",
                "insert",
                "delete",
                "truncate",
                "extend",
                "random",
                "random_body",
                "fingerprint",
                "magic",
            ]
        )
        data = bytearray(good)
        if kind == "flip":
            for _ in range(rng.randint(1, 3)):
                i = rng.randrange(len(data) * 8)
                data[i // 8] ^= 1 << (i % 8)
        elif kind == "flip_body":  # keep the header so the body decoder sees it
            for _ in range(rng.randint(1, 3)):
                i = rng.randrange(80, len(data) * 8) if len(data) > 10 else 0
                data[i // 8] ^= 1 << (i % 8)
        elif kind == "replace":
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(10, len(data)) if len(data) > 10 else 0] = rng.randrange(256)
        elif kind == "insert":
            at = rng.randint(10, len(data))
            data[at:at] = rng.randbytes(rng.randint(1, 4))
        elif kind == "delete":
            at = rng.randrange(10, len(data)) if len(data) > 10 else 0
            del data[at : at + rng.randint(1, 4)]
        elif kind == "truncate":
            del data[rng.randrange(len(data)) :]
        elif kind == "extend":
            data += rng.randbytes(rng.randint(1, 8))
        elif kind == "random":
            data = bytearray(rng.randbytes(rng.randint(0, 64)))
        elif kind == "random_body":
            data = data[:10] + rng.randbytes(rng.randint(0, 64))
        elif kind == "fingerprint":
            data[2:10] = rng.randbytes(8)
        elif kind == "magic":
            data[rng.randrange(2)] ^= 1 << rng.randrange(8)
        yield kind, bytes(data)


@pytest.mark.parametrize("filename", AVSC)
@settings(
    max_examples=RECORDS_PER_SCHEMA,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzzed_input_only_ever_raises_codec_error(filename: str, data: st.DataObject) -> None:
    name = full_name(load(filename))
    good = encode(name, data.draw(records(filename)))
    known = {default_codec().fingerprint(n) for n in default_codec().names}
    rng = random.Random(data.draw(st.integers(0, 2**32 - 1)))
    for kind, bad in mutations(good, rng):
        try:
            got = decode(bad, name)
        except CodecError as exc:
            if kind == "extend":
                assert exc.reason == "trailing_bytes"
            if kind == "magic":
                assert exc.reason == "bad_magic"
            if kind == "fingerprint" and bad[2:10] not in known:
                assert exc.reason == "unknown_fingerprint"
            continue
        assert kind not in ("truncate", "extend", "magic"), kind
        assert bad[2:10] in known
        # Whatever decodes is a valid record: it encodes again and survives another round trip.
        again = encode(name, got)
        assert encode(name, decode(again, name)) == again


# --------------------------------------------------------------------------- earlier versions

HISTORY = sorted(
    f.name for f in resources.files("schemas").joinpath("history").iterdir() if f.name.endswith(".avsc")
)


def test_history_files_are_named_by_their_fingerprint_and_precede_a_current_schema() -> None:
    current = {n.rpartition(".")[2]: n for n in default_codec().names}
    for filename in HISTORY:
        short, fp_hex, _ = filename.split(".")
        schema = load(f"history/{filename}")
        assert full_name(schema) == current[short], filename
        fp = Codec([schema]).fingerprint(current[short])
        assert fp.hex() == fp_hex, f"{filename}: its fingerprint is {fp.hex()}"
        assert fp != fingerprint(short), f"{filename} is the current version, not an earlier one"


@pytest.mark.parametrize("filename", HISTORY or ["(none yet)"])
@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_records_written_by_an_earlier_version_still_decode(filename: str, data: st.DataObject) -> None:
    if not HISTORY:  # the mechanism itself: an older writer registered as history is resolved
        old = {"type": "record", "name": "T", "namespace": "t", "fields": [{"name": "a", "type": "int"}]}
        new = {**old, "fields": [*old["fields"], {"name": "b", "type": ["null", "string"], "default": None}]}
        reader = Codec([new])
        reader.register(old, current=False)
        assert reader.decode(Codec([old]).encode("T", {"a": 7}), "T") == {"a": 7, "b": None}
        return
    schema = load(f"history/{filename}")
    record = data.draw(_Strategies().build(schema, ""))
    name = full_name(schema)
    written = Codec([schema]).encode(name, record)
    decoded = decode(written, name)
    for key, value in record.items():
        assert decoded[key] == value, key


#: A DeliveryTask and a DeliveryResult as every earlier version could write them.
TASK: dict[str, Any] = {
    "messageId": "msg_a",
    "eventId": "e",
    "webhookId": "w",
    "accountId": "a",
    "eventType": "SALE_NEW",
    "eventOccurredAt": 1,
    "routedAt": 1,
    "configVersion": 4,
    "payload": b"{}",
}
RESULT: dict[str, Any] = {
    "messageId": "msg_a",
    "attemptId": "att_a",
    "attempt": 1,
    "eventId": "e",
    "webhookId": "w",
    "accountId": "a",
    "eventType": "SALE_NEW",
    "eventOccurredAt": 1,
    "attemptedAt": 2,
    "url": "https://example.com/",
}


def test_results_and_tasks_written_before_deferred_and_recover_still_decode() -> None:
    """The DeliveryResult and DeliveryTask schemas gained ``deferred`` / ``recover`` (issue 11):
    records the previous versions wrote keep their outcome and trigger, and the new symbols
    encode with the current fingerprint."""
    old_result = load("history/DeliveryResult.f161c608d5740aab.avsc")
    old_task = load("history/DeliveryTask.3d461e9ff25eb96a.avsc")
    result = {**RESULT, "attempt": 3, "outcome": "dead_lettered", "trigger": "manual"}
    written = Codec([old_result]).encode(full_name(old_result), result)
    assert written[2:10] != fingerprint("DeliveryResult")
    got = decode(written, "DeliveryResult")
    assert (got["outcome"], got["trigger"], got["attempt"]) == ("dead_lettered", "manual", 3)
    task = {**TASK, "trigger": "test"}
    got_task = decode(Codec([old_task]).encode(full_name(old_task), task), "DeliveryTask")
    assert (got_task["trigger"], got_task["configVersion"]) == ("test", 4)
    new = decode(
        encode("DeliveryResult", {**result, "outcome": "deferred", "trigger": "recover"}), "DeliveryResult"
    )
    assert (new["outcome"], new["trigger"]) == ("deferred", "recover")
    with pytest.raises(CodecError):  # the old writer never knew the new symbols
        Codec([old_result]).encode(full_name(old_result), {**result, "outcome": "deferred"})


#: A WebhookConfig as every earlier version could write it (only the fields all of them have).
OLD_CONFIG: dict[str, Any] = {
    "id": "wh_1",
    "accountId": "acct",
    "name": "n",
    "url": "https://example.com/",
    "secret": {"keyId": "k1", "nonce": b"n" * 12, "ciphertext": b"c" * 20},
    "subscriptions": [{"event": "SALE_NEW"}],
    "active": True,
    "createdAt": 1,
    "updatedAt": 2,
    "version": 3,
}


def test_a_config_written_before_disabled_at_still_loads() -> None:
    """WebhookConfig gained ``disabledAt`` (issue 11): a config the previous version wrote (the
    compacted topic keeps it forever) decodes with ``disabledAt`` null and loads as a Webhook."""
    from hookline.webhooks import Webhook

    old = load("history/WebhookConfig.dac77fa4434f8639.avsc")
    record = {**OLD_CONFIG, "active": False, "disabledReason": "410 Gone"}
    written = Codec([old]).encode(full_name(old), record)
    assert written[2:10] != fingerprint("WebhookConfig")
    got = decode(written, "WebhookConfig")
    assert got["disabledAt"] is None
    hook = Webhook.from_record(got)
    assert (hook.active, hook.disabled_reason, hook.disabled_at, hook.version) == (False, "410 Gone", None, 3)
    again = decode(encode("WebhookConfig", hook.to_record()), "WebhookConfig")
    assert again["disabledAt"] is None and again["disabledReason"] == "410 Gone"


def test_a_config_written_before_rate_limit_still_loads() -> None:
    """WebhookConfig gained ``rateLimit`` (issue 12): a config the previous version wrote (the
    compacted topic keeps it forever) decodes with ``rateLimit`` null (unlimited) and loads as a
    Webhook; the new field round-trips, and the old writer never knew it."""
    from hookline.webhooks import Webhook

    old = load("history/WebhookConfig.d5077298ae1926ab.avsc")
    record = {**OLD_CONFIG, "disabledAt": 5}
    written = Codec([old]).encode(full_name(old), record)
    assert written[2:10] != fingerprint("WebhookConfig")
    got = decode(written, "WebhookConfig")
    assert got["rateLimit"] is None
    hook = Webhook.from_record(got)
    assert (hook.rate_limit, hook.disabled_at, hook.version) == (None, 5, 3)
    limited = decode(encode("WebhookConfig", {**hook.to_record(), "rateLimit": 50}), "WebhookConfig")
    assert Webhook.from_record(limited).rate_limit == 50
    assert decode(encode("WebhookConfig", hook.to_record()), "WebhookConfig")["rateLimit"] is None
    assert "rateLimit" not in {f["name"] for f in old["fields"]}


def test_a_config_written_before_ordering_still_loads() -> None:
    """WebhookConfig gained ``ordering`` (issue 12, point 2): a config the previous version wrote
    (with a rate limit) decodes with ``ordering`` "none" (today's concurrent delivery) and loads as a
    Webhook; "contact" round-trips, and the old writer never knew the field."""
    from hookline.webhooks import Webhook

    old = load("history/WebhookConfig.5802dcf87cd4692d.avsc")
    record = {**OLD_CONFIG, "disabledAt": 5, "rateLimit": 50}
    written = Codec([old]).encode(full_name(old), record)
    assert written[2:10] != fingerprint("WebhookConfig")
    got = decode(written, "WebhookConfig")
    assert got["ordering"] == "none"
    hook = Webhook.from_record(got)
    assert (hook.ordering, hook.rate_limit, hook.disabled_at, hook.version) == ("none", 50, 5, 3)
    ordered = decode(encode("WebhookConfig", {**hook.to_record(), "ordering": "contact"}), "WebhookConfig")
    assert Webhook.from_record(ordered).ordering == "contact"
    assert decode(encode("WebhookConfig", hook.to_record()), "WebhookConfig")["ordering"] == "none"
    with pytest.raises(CodecError):
        encode("WebhookConfig", {**hook.to_record(), "ordering": "fifo"})
    assert "ordering" not in {f["name"] for f in old["fields"]}


def test_tasks_and_results_written_before_replay_still_decode_and_old_readers_fall_back() -> None:
    """DeliveryTask and DeliveryResult gained the trigger ``replay`` (issue 13): records the previous
    versions wrote keep their trigger; ``replay`` round-trips; a reader of the previous version (a
    worker not yet upgraded) resolves it to the enum's default, ``automatic``, instead of failing."""
    old_task = load("history/DeliveryTask.266bf10b9e64aa15.avsc")
    old_result = load("history/DeliveryResult.85f1bfb34cd29582.avsc")
    task = {**TASK, "trigger": "recover"}
    written = Codec([old_task]).encode(full_name(old_task), task)
    assert written[2:10] != fingerprint("DeliveryTask")
    assert decode(written, "DeliveryTask")["trigger"] == "recover"
    replayed = encode("DeliveryTask", {**task, "trigger": "replay"})
    assert decode(replayed, "DeliveryTask")["trigger"] == "replay"
    old_reader = Codec([old_task])
    old_reader.register(load("DeliveryTask.avsc"), current=False)
    assert old_reader.decode(replayed, full_name(old_task))["trigger"] == "automatic"
    with pytest.raises(CodecError):  # the old writer never knew the new symbol
        Codec([old_task]).encode(full_name(old_task), {**task, "trigger": "replay"})
    result = {**RESULT, "outcome": "deferred", "trigger": "recover"}
    got = decode(Codec([old_result]).encode(full_name(old_result), result), "DeliveryResult")
    assert (got["outcome"], got["trigger"]) == ("deferred", "recover")
    again = decode(encode("DeliveryResult", {**result, "trigger": "replay"}), "DeliveryResult")
    assert again["trigger"] == "replay"
