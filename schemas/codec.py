"""Avro single-object encoding of the hookline contracts: the one place ``.avsc`` files are parsed.

Wire format (Avro spec, "Single object encoding"): ``C3 01``, the 8-byte little-endian CRC-64-AVRO
fingerprint of the writer schema's Parsing Canonical Form, then the Avro binary body.

Record shape, both directions (``decode(encode(r)) == r``):

* Logical types are not converted: a ``timestamp-millis`` field carries ``int`` milliseconds since
  the epoch, never a ``datetime``. The codec parses every schema with its ``logicalType`` attributes
  removed (the Parsing Canonical Form, and so the fingerprint, ignores them anyway).
* ``bytes`` are ``bytes``; arrays are lists (tuples are accepted on encode); maps and records are
  dicts. Fields with a default may be left out on encode; decode always returns every field.
* A union of several records (``Event.payload``) must have a sibling enum that names its branch:
  symbol ``SALE_NEW`` selects record ``SaleNew``. The payload is a plain dict on both sides; encode
  picks the branch from the enum (``Event.type``), decode checks that branch and enum agree and
  returns the payload without any name (fastavro's ``return_record_name`` is used internally and
  unwrapped). For callers already written that way, encode also accepts fastavro's ``(name, dict)``
  tuple or a ``"-type"`` key, provided they name the same branch as the enum.

Every schema is parsed once (per file, with its own named-type namespace, so the inline copies of
``io.hookline.events.EventType`` do not clash) and compiled into checkers; encode validates the
record before writing, decode checks every byte was consumed and validates what fastavro produced.
"""

from __future__ import annotations

import copy
import io
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, NamedTuple, cast

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

__all__ = ["Codec", "CodecError", "decode", "default_codec", "encode", "fingerprint"]

_MAGIC = b"\xc3\x01"
_HEADER_SIZE = 10
#: Every ``CodecError.reason``, in the order decoding checks them.
REASONS: tuple[str, ...] = (
    "too_short",
    "bad_magic",
    "unknown_fingerprint",
    "wrong_schema",
    "bad_body",
    "trailing_bytes",
    "invalid_field",
)
_REASONS = frozenset(REASONS)
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_FLOAT_MAX = 3.4028234663852886e38
_NAMED = frozenset({"record", "error", "enum", "fixed"})
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class CodecError(ValueError):
    """Bad input to :func:`encode` or :func:`decode`; ``reason`` is a machine-readable code.

    Reasons: ``too_short``, ``bad_magic``, ``unknown_fingerprint``, ``wrong_schema``, ``bad_body``,
    ``trailing_bytes``, ``invalid_field`` (then ``field`` is the dotted path of the bad field).
    """

    def __init__(self, reason: str, detail: str, *, field: str | None = None) -> None:
        if reason not in _REASONS:
            raise AssertionError(f"unknown CodecError reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.field = field


# --------------------------------------------------------------------------- checkers


class _Invalid(Exception):
    """A value does not fit its schema; ``path`` collects field names innermost first."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []

    def at(self, segment: str) -> _Invalid:
        self.path.append(segment)
        return self

    def field(self) -> str:
        out = ""
        for seg in reversed(self.path):
            out += seg if seg.startswith("[") or not out else "." + seg
        return out


_Check = Callable[[Any], Any]


class _Node(NamedTuple):
    """A compiled schema node."""

    key: str  # union branch key in fastavro tuple notation: full name, or the type name
    accepts: Callable[[Any], bool]  # cheap Python type test, picks union branches
    write: _Check  # validate for encoding; returns the value to hand to fastavro
    read: _Check | None  # check/fix what fastavro decoded; None when nothing can be wrong
    min_size: int  # fewest bytes an encoded value takes


_NO_DEFAULT: Any = object()


def _same(v: Any) -> Any:
    return v


# Stands in for a discriminated union field: its record checks it (see _write_branch, _read_branch).
_DISCRIMINATED = _Node("union", lambda v: True, _same, None, 1)


def _camel(symbol: str) -> str:
    return "".join(part.capitalize() for part in symbol.split("_"))


def _type_name(v: Any) -> str:
    return type(v).__name__


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_bytes(v: Any) -> bool:
    return isinstance(v, bytes | bytearray)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_list(v: Any) -> bool:
    return isinstance(v, list | tuple)


def _is_mapping(v: Any) -> bool:
    return type(v) is dict or isinstance(v, Mapping)


def _range_check(lo: int, hi: int, what: str) -> _Check:
    def read(v: Any) -> Any:
        if not lo <= v <= hi:
            raise _Invalid(f"{v} out of range for {what}")
        return v

    return read


def _integer(kind: str, lo: int, hi: int) -> _Node:
    def write(v: Any) -> Any:
        if not _is_int(v):
            raise _Invalid(f"expected {kind}, got {_type_name(v)}")
        if not lo <= v <= hi:
            raise _Invalid(f"{v} out of range for {kind}")
        return v

    return _Node(kind, _is_int, write, _range_check(lo, hi, kind), 1)


def _floating(kind: str, limit: float, size: int) -> _Node:
    def write(v: Any) -> Any:
        if not _is_number(v):
            raise _Invalid(f"expected {kind}, got {_type_name(v)}")
        if abs(v) > limit and not (isinstance(v, float) and not math.isfinite(v)):
            raise _Invalid(f"{v} out of range for {kind}")
        return v

    return _Node(kind, _is_number, write, None, size)


def _simple(kind: str, accepts: Callable[[Any], bool], size: int) -> _Node:
    def write(v: Any) -> Any:
        if not accepts(v):
            raise _Invalid(f"expected {kind}, got {_type_name(v)}")
        return v

    return _Node(kind, accepts, write, None, size)


def _write_string(v: Any) -> Any:
    if not isinstance(v, str):
        raise _Invalid(f"expected string, got {_type_name(v)}")
    if not v.isascii():
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _Invalid(f"not encodable as UTF-8 ({exc.reason})") from None
    return v


# fastavro decodes strings with strict UTF-8, enums by index into the symbol list (out of range
# raises), booleans/floats/bytes cannot be of the wrong type: those need no read check.
_PRIMITIVE_NODES: dict[str, _Node] = {
    "null": _simple("null", lambda v: v is None, 0),
    "boolean": _simple("boolean", lambda v: type(v) is bool, 1),
    "int": _integer("int", _INT_MIN, _INT_MAX),
    "long": _integer("long", _LONG_MIN, _LONG_MAX),
    "float": _floating("float", _FLOAT_MAX, 4),
    "double": _floating("double", 1.7976931348623157e308, 8),
    "bytes": _simple("bytes", _is_bytes, 1),
    "string": _Node("string", _is_str, _write_string, None, 1),
}


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    node: _Node
    default: Callable[[], Any] | None  # fresh copy of the (converted) default
    raw_default: Any  # the parsed schema's default object, as fastavro returns it on resolution
    discriminator: _Discriminator | None


@dataclass(frozen=True, slots=True)
class _Discriminator:
    enum_field: str
    enum_default: str | None
    branches: dict[str, _Node]  # enum symbol -> record branch
    by_name: dict[str, _Node]  # full and short record name -> branch


class _Compiler:
    """Turn one parsed (logical-type free) fastavro schema into :class:`_Node` checkers."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self._named = named
        self._done: dict[str, _Node] = {}

    def node(self, schema: Any) -> _Node:
        if isinstance(schema, str):
            if schema in _PRIMITIVE_NODES:
                return _PRIMITIVE_NODES[schema]
            if schema in self._done:
                return self._done[schema]
            return self.node(self._named[schema])
        if isinstance(schema, list):
            return self._union(schema)
        kind = schema["type"]
        if kind in _NAMED and schema["name"] in self._done:
            return self._done[schema["name"]]
        if kind in _PRIMITIVES:
            return _PRIMITIVE_NODES[kind]
        if kind in ("record", "error"):
            return self._record(schema)
        if kind == "enum":
            return self._enum(schema)
        if kind == "fixed":
            return self._fixed(schema)
        if kind == "array":
            return self._array(schema)
        if kind == "map":
            return self._map(schema)
        if isinstance(kind, dict | list | str):
            return self.node(kind)
        raise ValueError(f"unsupported schema {schema!r}")

    def _enum(self, schema: Mapping[str, Any]) -> _Node:
        name = schema["name"]
        symbols = frozenset(schema["symbols"])

        def write(v: Any) -> Any:
            if not isinstance(v, str):
                raise _Invalid(f"expected a symbol of {name}, got {_type_name(v)}")
            if v not in symbols:
                raise _Invalid(f"{v!r} is not a symbol of {name}")
            return v

        node = _Node(name, _is_str, write, None, 1)
        self._done[name] = node
        return node

    def _fixed(self, schema: Mapping[str, Any]) -> _Node:
        name, size = schema["name"], schema["size"]

        def write(v: Any) -> Any:
            if not _is_bytes(v):
                raise _Invalid(f"expected {size} bytes ({name}), got {_type_name(v)}")
            if len(v) != size:
                raise _Invalid(f"expected {size} bytes ({name}), got {len(v)}")
            return v

        node = _Node(name, _is_bytes, write, None, size)
        self._done[name] = node
        return node

    def _array(self, schema: Mapping[str, Any]) -> _Node:
        item = self.node(schema["items"])
        if item.min_size == 0:
            # A hostile block count would make the reader spin without consuming input.
            raise ValueError(f"array items {schema['items']!r} may encode to zero bytes")
        iwrite, iread = item.write, item.read

        def write(v: Any) -> Any:
            if not isinstance(v, list | tuple):
                raise _Invalid(f"expected array, got {_type_name(v)}")
            out = []
            for i, x in enumerate(v):
                try:
                    out.append(iwrite(x))
                except _Invalid as exc:
                    raise exc.at(f"[{i}]") from None
            return out

        read: _Check | None = None
        if iread is not None:

            def read(v: Any) -> Any:
                for i, x in enumerate(v):
                    try:
                        v[i] = iread(x)
                    except _Invalid as exc:
                        raise exc.at(f"[{i}]") from None
                return v

        return _Node("array", _is_list, write, read, 1)

    def _map(self, schema: Mapping[str, Any]) -> _Node:
        value = self.node(schema["values"])
        vwrite, vread = value.write, value.read

        def write(v: Any) -> Any:
            if not _is_mapping(v):
                raise _Invalid(f"expected map, got {_type_name(v)}")
            out = {}
            for k, x in v.items():
                try:
                    if not isinstance(k, str):
                        raise _Invalid(f"map key must be a string, got {_type_name(k)}")
                    _write_string(k)
                    out[k] = vwrite(x)
                except _Invalid as exc:
                    raise exc.at(f"[{k!r}]") from None
            return out

        read: _Check | None = None
        if vread is not None:

            def read(v: Any) -> Any:
                for k, x in v.items():
                    try:
                        v[k] = vread(x)
                    except _Invalid as exc:
                        raise exc.at(f"[{k!r}]") from None
                return v

        return _Node("map", _is_mapping, write, read, 1)

    def _union(self, schema: list[Any]) -> _Node:
        branches = [self.node(s) for s in schema]
        records = [b for b, s in zip(branches, schema, strict=True) if self._is_record(s)]
        if len(records) > 1:
            # A record field has its sibling enum (see _discriminator); elsewhere nothing names the branch.
            raise ValueError(
                f"union {[b.key for b in branches]} has several records but no sibling enum naming them"
            )
        names = [b.key for b in branches]

        def write(v: Any) -> Any:
            first: _Invalid | None = None
            for b in branches:
                if b.accepts(v):
                    try:
                        # Tuple notation pins the branch fastavro writes (and spares its guessing).
                        return (b.key, b.write(v))
                    except _Invalid as exc:
                        first = first or exc
            raise first or _Invalid(f"{_type_name(v)} fits none of {names}")

        read: _Check | None = None
        if any(b.read is not None for b in branches):

            def read(v: Any) -> Any:
                first: _Invalid | None = None
                for b in branches:
                    if b.accepts(v):
                        try:
                            return v if b.read is None else b.read(v)
                        except _Invalid as exc:
                            first = first or exc
                raise first or _Invalid(f"{_type_name(v)} fits none of {names}")

        return _Node("union", lambda v: any(b.accepts(v) for b in branches), write, read, 1)

    def _is_record(self, schema: Any) -> bool:
        if isinstance(schema, str):
            schema = self._named.get(schema)
        return isinstance(schema, dict) and schema.get("type") in ("record", "error")

    def _record(self, schema: Mapping[str, Any]) -> _Node:
        name = schema["name"]
        fields: list[_Field] = []
        # Recursive references resolve through this placeholder until the record is complete.
        cell: list[_Node] = []
        self._done[name] = _Node(
            name, _is_mapping, lambda v: cell[0].write(v), lambda v: _read_or_same(cell[0], v), 0
        )

        specs = schema["fields"]
        for spec in specs:
            disc = self._discriminator(spec, specs)
            node = _DISCRIMINATED if disc is not None else self.node(spec["type"])
            default: Callable[[], Any] | None = None
            raw = spec.get("default", _NO_DEFAULT)
            if raw is not _NO_DEFAULT:
                value = _convert_default(spec["type"], raw, self._named)
                try:
                    node.write(value)
                except _Invalid as exc:
                    raise ValueError(f"{name}.{spec['name']}: bad default {raw!r}: {exc.message}") from None
                default = (
                    (lambda c=value: copy.deepcopy(c))
                    if isinstance(value, dict | list)
                    else (lambda c=value: c)
                )
            fields.append(_Field(spec["name"], node, default, raw, disc))

        node = _Node(
            name, _is_mapping, *self._record_checks(name, fields), sum(f.node.min_size for f in fields)
        )
        cell.append(node)
        self._done[name] = node
        return node

    def _discriminator(
        self, spec: Mapping[str, Any], specs: list[Mapping[str, Any]]
    ) -> _Discriminator | None:
        union = spec["type"]
        if not isinstance(union, list) or sum(self._is_record(s) for s in union) < 2:
            return None
        if not all(self._is_record(s) for s in union):
            raise ValueError(f"union field {spec['name']!r} mixes several records with other types")
        by_short: dict[str, _Node] = {}
        by_name: dict[str, _Node] = {}
        for s in union:
            node = self.node(s)
            by_short[node.key.rpartition(".")[2]] = node
            by_name[node.key] = by_name[node.key.rpartition(".")[2]] = node
        found = []
        for other in specs:
            enum = other["type"]
            if isinstance(enum, str):
                enum = self._named.get(enum)
            if isinstance(enum, dict) and enum.get("type") == "enum":
                symbols = enum["symbols"]
                if sorted(_camel(s) for s in symbols) == sorted(by_short):
                    branches = {s: by_short[_camel(s)] for s in symbols}
                    found.append(_Discriminator(other["name"], other.get("default"), branches, by_name))
        if len(found) != 1:
            raise ValueError(
                f"union field {spec['name']!r} has several records but {len(found)} sibling enums naming "
                f"them (need exactly one, symbol SALE_NEW for record SaleNew)"
            )
        return found[0]

    def _record_checks(self, name: str, fields: list[_Field]) -> tuple[_Check, _Check | None]:
        names = frozenset(f.name for f in fields)
        plan = [(f.name, f.node.write, f.default, f.discriminator) for f in fields]

        def write(v: Any) -> Any:
            if not _is_mapping(v):
                raise _Invalid(f"expected record {name}, got {_type_name(v)}")
            out = {}
            present = 0
            for fname, fwrite, default, disc in plan:
                try:
                    x = v.get(fname, _NO_DEFAULT)
                    if x is not _NO_DEFAULT:
                        present += 1
                    elif default is not None:
                        x = default()
                    else:
                        raise _Invalid("missing (no default)")
                    out[fname] = _write_branch(disc, v, x) if disc is not None else fwrite(x)
                except _Invalid as exc:
                    raise exc.at(fname) from None
            if present != len(v):
                extra = sorted(str(k) for k in v if k not in names)
                raise _Invalid(f"unknown field of {name}").at(extra[0])
            return out

        checks = []
        for f in fields:
            fix = isinstance(f.raw_default, dict | list) or (
                f.default is not None
                and (type(f.default()) is not type(f.raw_default) or f.default() != f.raw_default)
            )
            if f.node.read is not None or f.discriminator is not None or fix:
                checks.append(
                    (f.name, f.node.read, f.raw_default if fix else _NO_DEFAULT, f.default, f.discriminator)
                )
        if not checks:
            return write, None

        def read(v: Any) -> Any:
            for fname, fread, raw, default, disc in checks:
                x = v[fname]
                try:
                    if x is raw and default is not None:
                        # fastavro hands out the schema's own default object (shared, and with
                        # ``bytes`` defaults still as ``str``): replace it with a fresh value.
                        x = default()
                    elif disc is not None:
                        x = _read_branch(disc, v, x)
                    elif fread is not None:
                        x = fread(x)
                except _Invalid as exc:
                    raise exc.at(fname) from None
                v[fname] = x
            return v

        return write, read


def _read_or_same(node: _Node, v: Any) -> Any:
    return v if node.read is None else node.read(v)


def _write_branch(disc: _Discriminator, record: Mapping[str, Any], value: Any) -> Any:
    symbol = record.get(disc.enum_field, disc.enum_default)
    branch = disc.branches.get(symbol) if isinstance(symbol, str) else None
    if branch is None:
        raise _Invalid(f"union branch follows from {disc.enum_field!r}, which is {symbol!r}")
    hint = None
    if isinstance(value, tuple) and len(value) == 2:
        hint, value = value
    elif _is_mapping(value) and "-type" in value:
        hint = value["-type"]
        value = {k: x for k, x in value.items() if k != "-type"}
    if hint is not None and (not isinstance(hint, str) or disc.by_name.get(hint) is not branch):
        raise _Invalid(f"names branch {hint!r} but {disc.enum_field} is {symbol!r} ({branch.key})")
    return (branch.key, branch.write(value))


def _read_branch(disc: _Discriminator, record: Mapping[str, Any], value: Any) -> Any:
    if type(value) is not tuple:  # the reader's default, used when the writer lacked the field
        return value
    name, value = value
    branch = disc.branches[record[disc.enum_field]]
    if name != branch.key:
        raise _Invalid(f"holds {name} but {disc.enum_field} is {record[disc.enum_field]}")
    return _read_or_same(branch, value)


def _convert_default(schema: Any, raw: Any, named: Mapping[str, Any]) -> Any:
    """The Python value of a JSON default (Avro spec: bytes as code points 0-255, union = 1st branch)."""
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        return _convert_default(schema[0], raw, named)
    kind = schema["type"] if isinstance(schema, dict) else schema
    if isinstance(kind, dict | list):
        return _convert_default(kind, raw, named)
    if kind in ("bytes", "fixed") and isinstance(raw, str):
        return raw.encode("latin-1")
    if kind == "array" and isinstance(raw, list):
        return [_convert_default(schema["items"], x, named) for x in raw]
    if kind == "map" and isinstance(raw, dict):
        return {k: _convert_default(schema["values"], x, named) for k, x in raw.items()}
    if kind in ("record", "error") and isinstance(raw, dict):
        out = {}
        for f in schema["fields"]:
            x = raw.get(f["name"], f.get("default", _NO_DEFAULT))
            if x is not _NO_DEFAULT:
                out[f["name"]] = _convert_default(f["type"], x, named)
        return out
    if kind in ("float", "double") and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    return raw


def _strip_logical_types(schema: Any) -> Any:
    """A copy of ``schema`` without ``logicalType`` in any type position (defaults untouched)."""
    if isinstance(schema, list):
        return [_strip_logical_types(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: v for k, v in schema.items() if k != "logicalType"}
    kind = out.get("type")
    if kind in ("record", "error"):
        out["fields"] = [{**f, "type": _strip_logical_types(f["type"])} for f in out["fields"]]
    elif kind == "array":
        out["items"] = _strip_logical_types(out["items"])
    elif kind == "map":
        out["values"] = _strip_logical_types(out["values"])
    elif isinstance(kind, dict | list):
        out["type"] = _strip_logical_types(kind)
    return out


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True, slots=True)
class _Schema:
    name: str  # full name
    parsed: dict[str, Any]
    fingerprint: bytes
    header: bytes
    write: _Check
    read: _Check | None


def _compile(schema: Mapping[str, Any] | str) -> _Schema:
    source = json.loads(schema) if isinstance(schema, str) else dict(schema)
    if not isinstance(source, dict) or source.get("type") not in ("record", "error"):
        raise ValueError("a top-level schema must be a named record")
    named: dict[str, Any] = {}  # one namespace per schema: inline copies of shared types may repeat
    try:
        fp = bytes.fromhex(_fastavro_fingerprint(to_parsing_canonical_form(source), "CRC-64-AVRO"))
        parsed = cast(dict[str, Any], parse_schema(_strip_logical_types(source), named_schemas=named))
    except Exception as exc:  # fastavro's SchemaParseException is no ValueError
        raise ValueError(f"invalid schema {source.get('name')!r}: {exc}") from exc
    node = _Compiler(named).node(parsed)
    return _Schema(parsed["name"], parsed, fp, _MAGIC + fp, node.write, node.read)


class Codec:
    """Registry of schemas by name and by fingerprint; encodes and decodes single objects.

    The *current* schema of a name is used to encode and as the reader schema to decode. Every
    registered schema stays known as a writer (by fingerprint), so data written with an older
    version is resolved into the current one (evolution: add fields with defaults).
    """

    def __init__(self, schemas: Iterable[Mapping[str, Any] | str] = ()) -> None:
        self._writers: dict[bytes, _Schema] = {}
        self._current: dict[str, _Schema] = {}
        self._short: dict[str, str | None] = {}  # short name -> full name; None when ambiguous
        for schema in schemas:
            self.register(schema)

    @classmethod
    def from_package(cls) -> Codec:
        """A codec with every ``schemas/*.avsc`` file shipped in this package, current, and every
        ``schemas/history/*.avsc`` file as a writer only (the earlier versions of an evolved schema:
        records they wrote stay readable, resolved to the current schema by Avro's rules)."""
        root = resources.files(__package__ or "schemas")
        files = sorted((f for f in root.iterdir() if f.name.endswith(".avsc")), key=lambda f: f.name)
        codec = cls(f.read_text(encoding="utf-8") for f in files)
        history = root / "history"
        if history.is_dir():
            for f in sorted((f for f in history.iterdir() if f.name.endswith(".avsc")), key=lambda f: f.name):
                codec.register(f.read_text(encoding="utf-8"), current=False)
        return codec

    def register(self, schema: Mapping[str, Any] | str, *, current: bool = True) -> bytes:
        """Add a record schema (JSON text or object); return its fingerprint.

        With ``current=False`` it is only known as a writer schema, e.g. an older version.
        Raise ``ValueError`` for a schema the codec cannot handle safely.
        """
        compiled = _compile(schema)
        # The wire format of a fingerprint never changes, so the first writer of it is kept; a
        # current schema may still differ from it in what the fingerprint ignores (defaults).
        self._writers.setdefault(compiled.fingerprint, compiled)
        if current:
            name = compiled.name
            self._current[name] = compiled
            short = name.rpartition(".")[2]
            self._short[short] = name if self._short.get(short, name) == name else None
        return compiled.fingerprint

    @property
    def names(self) -> list[str]:
        """Full names of the current schemas, sorted."""
        return sorted(self._current)

    def fingerprint(self, schema: str) -> bytes:
        """The 8-byte CRC-64-AVRO fingerprint (little-endian) of the current ``schema``."""
        return self._lookup(schema).fingerprint

    def encode(self, schema: str, record: Mapping[str, Any]) -> bytes:
        """Validate ``record`` against ``schema`` (short or full name) and encode it."""
        s = self._lookup(schema)
        try:
            value = s.write(record)
        except _Invalid as exc:
            field = exc.field()
            raise CodecError("invalid_field", f"{s.name}.{field}: {exc.message}", field=field) from None
        out = io.BytesIO()
        out.write(s.header)
        try:
            schemaless_writer(out, s.parsed, value)
        except Exception as exc:  # validated above, so a codec bug; still report it as bad input
            raise CodecError("invalid_field", f"{s.name}: {exc!r}") from exc
        return out.getvalue()

    def decode(self, data: bytes | bytearray | memoryview | None, schema: str) -> dict[str, Any]:
        """Decode one single-object-encoded record into the current ``schema``; raise CodecError."""
        reader = self._lookup(schema)
        if data is None:
            raise CodecError("too_short", "no data (a tombstone?)")
        size = len(data)
        if size < _HEADER_SIZE:
            raise CodecError("too_short", f"{size} bytes")
        if data[:2] != _MAGIC:
            raise CodecError("bad_magic", f"starts with {bytes(data[:2]).hex()}, not c301")
        fp = bytes(data[2:_HEADER_SIZE])
        writer = self._writers.get(fp)
        if writer is None:
            raise CodecError("unknown_fingerprint", fp.hex())
        if writer.name != reader.name:
            raise CodecError("wrong_schema", f"written as {writer.name}, read as {reader.name}")
        buf = io.BytesIO(data)
        buf.seek(_HEADER_SIZE)
        try:
            value = schemaless_reader(
                buf,
                writer.parsed,
                None if writer is reader else reader.parsed,
                return_record_name=True,
                return_record_name_override=True,
            )
        except SchemaResolutionError as exc:
            raise CodecError("wrong_schema", f"{writer.name}: {exc}") from None
        except Exception as exc:  # fastavro raises anything from EOFError to MemoryError
            raise CodecError("bad_body", f"{reader.name}: {type(exc).__name__}: {exc}") from None
        if buf.tell() != size:
            raise CodecError("trailing_bytes", f"{size - buf.tell()} of {size} bytes left over")
        if reader.read is not None:
            try:
                value = reader.read(value)
            except _Invalid as exc:
                field = exc.field()
                raise CodecError(
                    "invalid_field", f"{reader.name}.{field}: {exc.message}", field=field
                ) from None
        return cast(dict[str, Any], value)

    def _lookup(self, schema: str) -> _Schema:
        found = self._current.get(schema)
        if found is None:
            full = self._short.get(schema)
            if full is None:
                raise KeyError(
                    f"no schema named {schema!r}" + (" (ambiguous)" if schema in self._short else "")
                )
            found = self._current[full]
        return found


@cache
def default_codec() -> Codec:
    """The codec with this package's ``.avsc`` files, loaded on first use."""
    return Codec.from_package()


def encode(schema: str, record: Mapping[str, Any]) -> bytes:
    """Encode ``record`` as ``schema`` (e.g. ``"Event"``) with the default codec."""
    return default_codec().encode(schema, record)


def decode(data: bytes | bytearray | memoryview | None, schema: str) -> dict[str, Any]:
    """Decode ``data`` into ``schema`` with the default codec; raise only CodecError for bad data."""
    return default_codec().decode(data, schema)


def fingerprint(schema: str) -> bytes:
    """The 8-byte fingerprint the default codec writes for ``schema``."""
    return default_codec().fingerprint(schema)
