"""Hypothesis strategies for any protobuf request, built from its descriptor.

Every field is drawn or left unset: strings with Unicode, NUL, control
characters, braces and sizes past every limit; integers at their type's
bounds; enums with unknown numbers; repeated fields empty, short or past the
limits; nested messages; Timestamps and Durations out of range; FieldMasks of
junk paths; Structs of any JSON (NaN, deep nesting). `overrides` draw chosen
fields by name from realistic values as well, so that calls also get past
validation and reach the stores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf import (
    duration_pb2,
    field_mask_pb2,
    message_factory,
    struct_pb2,
    timestamp_pb2,
)
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

Strategy = st.SearchStrategy[Any]

_SPECIAL_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\n",
    "\x7f",
    "{u}",
    "}",
    "\u202e",
    "é",
    "😀",
    "%s",
    "%(user)s",
    "'; DROP TABLE memories; --",
    "\\",
    "x" * 129,
    "é" * 1025,
    "x" * 70_000,
]


def strings(*, huge: bool = True) -> Strategy:
    """Any valid Unicode (protobuf strings are UTF-8), the edge cases above,
    and with `huge` strings past every size limit."""
    special = _SPECIAL_STRINGS if huge else [s for s in _SPECIAL_STRINGS if len(s) < 200]
    return st.one_of(
        st.sampled_from(special),
        st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40),
    )


def _int_range(kind: int) -> tuple[int, int]:
    signed32 = (
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SFIXED32,
    )
    unsigned32 = (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32)
    unsigned64 = (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64)
    if kind in signed32:
        return -(2**31), 2**31 - 1
    if kind in unsigned32:
        return 0, 2**32 - 1
    if kind in unsigned64:
        return 0, 2**64 - 1
    return -(2**63), 2**63 - 1


def integers(low: int, high: int) -> Strategy:
    edges = [
        v for v in (0, 1, -1, 2, 10, 20, 100, 101, 1000, 1001, 10**9, low, high) if low <= v <= high
    ]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def timestamps() -> Strategy:
    # Valid: 0001-01-01 .. 9999-12-31; beyond both, and nanos out of 0..999999999.
    seconds = integers(-(2**62), 2**62) | st.sampled_from(
        [-62135596800, -62135596801, 253402300799, 253402300800, 0, 1_700_000_000]
    )
    nanos = st.sampled_from([0, 1, 999_999_999, 1_000_000_000, -1]) | integers(-(2**31), 2**31 - 1)
    return st.builds(timestamp_pb2.Timestamp, seconds=seconds, nanos=nanos)


def durations() -> Strategy:
    # Valid: +-315576000000 s (10,000 years), nanos with the sign of seconds.
    seconds = integers(-(2**62), 2**62) | st.sampled_from(
        [0, 1, -1, 60, 86_400, 315_576_000_000, 315_576_000_001, -315_576_000_001]
    )
    nanos = st.sampled_from([0, 1, -1, 999_999_999, 1_000_000_000]) | integers(-(2**31), 2**31 - 1)
    return st.builds(duration_pb2.Duration, seconds=seconds, nanos=nanos)


def field_masks(names: list[str]) -> Strategy:
    paths = st.lists(st.sampled_from([*names, "id", "kind", "state", "content.x", ""]) | strings())
    return paths.map(lambda p: field_mask_pb2.FieldMask(paths=p))


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"n": value}
    return value


def structs() -> Strategy:
    json_values = st.recursive(
        st.none() | st.booleans() | st.floats() | strings(huge=False),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(strings(huge=False), inner, max_size=3)
        ),
        max_leaves=8,
    )
    objects = st.one_of(
        st.dictionaries(strings(huge=False), json_values, max_size=4),
        # Deeper than ~30 would pass protobuf's nesting limit of 100 (each
        # JSON level is three messages) and could not even be built here;
        # tests/integration/test_limits.py sends such bytes by hand.
        st.integers(5, 25).map(_nested),
        st.just({"blob": "x" * 40_000}),
    )
    return objects.map(_struct)


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


_WELL_KNOWN: dict[str, Callable[[], Strategy]] = {
    "google.protobuf.Timestamp": timestamps,
    "google.protobuf.Duration": durations,
    "google.protobuf.Struct": structs,
}


def _scalar(field: FieldDescriptor) -> Strategy:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return strings()
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        known = [value.number for value in field.enum_type.values]
        return st.sampled_from(known) | integers(-(2**31), 2**31 - 1)
    return integers(*_int_range(kind))


def _field(field: FieldDescriptor, overrides: Mapping[str, Strategy], depth: int) -> Strategy:
    if field.message_type is not None:
        name = field.message_type.full_name
        if name == "google.protobuf.FieldMask":
            parent = field.containing_type
            return field_masks([f.name for f in parent.fields] if parent is not None else [])
        if name in _WELL_KNOWN:
            element = _WELL_KNOWN[name]()
        else:
            element = requests(field.message_type, overrides, depth=depth + 1)
        if _is_repeated(field):
            return st.lists(element, max_size=3)
        return element
    element = _scalar(field)
    if field.name in overrides:
        # Mostly the realistic values, so that the other fields' edge cases
        # get past validation of this one.
        element = st.one_of(overrides[field.name], overrides[field.name], element)
    if _is_repeated(field):
        # Short lists, and long lists of small values, past the limits
        # (topics, ids, kinds) but not megabytes each.
        small = strings(huge=False) if field.type == FieldDescriptor.TYPE_STRING else element
        if field.name in overrides:
            small = overrides[field.name] | small
        return st.lists(element, max_size=3) | st.lists(small, min_size=30, max_size=130)
    return element


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def requests(
    descriptor: Descriptor | Any, overrides: Mapping[str, Strategy] | None = None, *, depth: int = 0
) -> Strategy:
    """Messages of `descriptor`'s type with any subset of fields set."""
    overrides = overrides or {}
    if depth > 2:
        return st.just(_message_class(descriptor)())
    fields = {
        field.name: st.none() | _field(field, overrides, depth) for field in descriptor.fields
    }
    return st.fixed_dictionaries(fields).map(lambda values: _build(descriptor, values))


def _message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


def _build(descriptor: Descriptor, values: dict[str, Any]) -> Message:
    message = _message_class(descriptor)()
    for name, value in values.items():
        if value is not None:
            _build_into(message, descriptor.fields_by_name[name], value)
    return message


@st.composite
def variants(
    draw: st.DrawFn, base: Message, overrides: Mapping[str, Strategy] | None = None
) -> Message:
    """`base` (a valid request) with one or two of its fields, at any depth,
    replaced by fuzzed values: the rest stays valid, so each edge case gets
    past validation of the other fields and reaches the stores."""
    message = type(base)()
    message.CopyFrom(base)
    _mutate(draw, message, overrides or {})
    return message


def _mutate(draw: st.DrawFn, message: Message, overrides: Mapping[str, Strategy]) -> None:
    descriptor: Any = message.DESCRIPTOR  # the upb and Python descriptor types differ
    fields: list[FieldDescriptor] = list(descriptor.fields)
    chosen: list[FieldDescriptor] = draw(
        st.lists(st.sampled_from(fields), min_size=1, max_size=2, unique=True)
    )
    for field in chosen:
        current = getattr(message, field.name)
        nested = field.message_type is not None and field.message_type.full_name not in (
            *_WELL_KNOWN,
            "google.protobuf.FieldMask",
        )
        if nested and _is_repeated(field) and len(current) and draw(st.booleans()):
            _mutate(draw, current[draw(st.integers(0, len(current) - 1))], overrides)
        elif (
            nested
            and not _is_repeated(field)
            and message.HasField(field.name)
            and draw(st.booleans())
        ):
            _mutate(draw, current, overrides)
        else:
            value = draw(_field(field, overrides, depth=1))
            message.ClearField(field.name)
            _build_into(message, field, value)


def _build_into(message: Message, field: FieldDescriptor, value: Any) -> None:
    target = getattr(message, field.name)
    if _is_repeated(field):
        target.extend(value)
    elif field.message_type is not None:
        target.CopyFrom(value)
    else:
        setattr(message, field.name, value)
