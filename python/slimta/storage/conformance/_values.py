"""Tagged values of the vectors, their JSON wire form, and how results are compared.

Vectors write bytes, non-finite numbers and values found at run time as
objects of exactly one ``$`` key, and an object whose keys start with
``$`` as ``{"$object": {...}}``. :func:`resolve` turns such a vector
value into the Python value a call takes or returns. :func:`to_wire` and
:func:`from_wire` convert between Python values and the JSON form that
adapters exchange, which uses only ``$bytes``, ``$text_bytes``,
``$float`` and ``$object``: the runner resolves the other tags itself.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "OBJECT_TAG",
    "Variables",
    "VectorValueError",
    "WireError",
    "canonical",
    "decode_text_bytes",
    "from_wire",
    "key_to_wire",
    "resolve",
    "same",
    "text_to_bytes",
    "to_wire",
]

Variables = Mapping[str, Any]

_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
# The tag of an object whose keys are taken literally, for keys that start with $.
OBJECT_TAG = "$object"
WIRE_TAGS = ("$bytes", "$text_bytes", "$float", OBJECT_TAG)


class VectorValueError(ValueError):
    """A tagged value of a vector is malformed or names an unbound variable."""


class WireError(ValueError):
    """A value has no JSON wire form, or a wire value is malformed."""


def text_to_bytes(text: str) -> bytes:
    """Return the stored form of text: UTF-8, with surrogate escapes as the bytes they encode."""
    return text.encode("utf-8", "surrogateescape")


def decode_text_bytes(data: bytes) -> str:
    """Return the text whose stored form is ``data``, keeping bytes that are not valid UTF-8."""
    return data.decode("utf-8", "surrogateescape")


def _tag(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        (key,) = value
        if isinstance(key, str) and key.startswith("$"):
            return key
    return None


def _base64(encoded: Any, tag: str) -> bytes:
    if not isinstance(encoded, str):
        raise VectorValueError(f"{tag} must hold a base64 string, not {encoded!r}")
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error as error:
        raise VectorValueError(f"{tag} contains invalid base64 {encoded[:40]!r}: {error}") from None


# Vector values


def resolve(value: Any, variables: Variables) -> Any:
    """Resolve every tag in a vector value, returning the Python value it is.

    :raises VectorValueError: a tag is unknown or malformed, or a ``$var``
        names a variable that no earlier step bound.
    """
    tag = _tag(value)
    if tag is not None:
        return _resolve_tag(tag, value[tag], variables)
    if isinstance(value, list):
        return [resolve(item, variables) for item in value]
    if isinstance(value, dict):
        return {key: resolve(item, variables) for key, item in value.items()}
    return value


def _resolve_tag(tag: str, body: Any, variables: Variables) -> Any:
    resolver = _RESOLVERS.get(tag)
    if resolver is None:
        known = ", ".join(_RESOLVERS)
        raise VectorValueError(f"unknown tag {tag}; this runner knows {known}")
    return resolver(body, variables)


def _bytes_pattern(body: Any) -> bytes:
    if not isinstance(body, dict) or set(body) != {"base64", "length"}:
        raise VectorValueError(f"$bytes_pattern must hold base64 and length, not {body!r}")
    pattern = _base64(body["base64"], "$bytes_pattern")
    length = body["length"]
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise VectorValueError(f"$bytes_pattern length must be a whole number of at least 0, not {length!r}")
    if not pattern and length:
        raise VectorValueError("$bytes_pattern has an empty pattern but a length above 0")
    if not length:
        return b""
    repeats = -(-length // len(pattern))
    return (pattern * repeats)[:length]


def _variable(path: Any, variables: Variables) -> Any:
    """Return a bound value, or the member or element of it that a path such as ``p1.cursor`` names."""
    if not isinstance(path, str):
        raise VectorValueError(f"$var must hold a variable name, not {path!r}")
    name, *steps = path.split(".")
    if name not in variables:
        raise VectorValueError(f"variable {name!r} is not bound: no earlier step has bind: {name}")
    value = variables[name]
    for step in steps:
        value = _member(value, step, path)
    return value


def _member(value: Any, step: str, path: str) -> Any:
    """Return the member ``step`` of an object, or the element at index ``step`` of a list."""
    if isinstance(value, dict) and step in value:
        return value[step]
    if isinstance(value, list) and step.isascii() and step.isdigit() and int(step) < len(value):
        return value[int(step)]
    raise VectorValueError(f"$var {path}: the bound value has no member or element {step!r}: {value!r:.80}")


def _float(name: Any) -> float:
    if name not in _FLOATS:
        raise VectorValueError(f'$float must be "nan", "inf" or "-inf", not {name!r}')
    return _FLOATS[name]


def _sorted(items: Any) -> list[Any]:
    if not isinstance(items, list):
        raise VectorValueError(f"$sorted must hold a list, or a tag that resolves to one, not {items!r:.80}")

    def key(item: Any) -> bytes:
        if isinstance(item, str):
            return text_to_bytes(item)
        if isinstance(item, bytes):
            return item
        raise VectorValueError(f"$sorted can only sort text and bytes, not {item!r}")

    return sorted(items, key=key)


def _concat(body: Any, variables: Variables) -> list[Any]:
    if not isinstance(body, list):
        raise VectorValueError(f"$concat must hold a list of lists, not {body!r}")
    joined: list[Any] = []
    for part in body:
        resolved = resolve(part, variables)
        if not isinstance(resolved, list):
            raise VectorValueError(f"$concat can only join lists, not {resolved!r}")
        joined += resolved
    return joined


def _literal_object(body: Any, values: Callable[[Any], Any], error: type[ValueError]) -> dict[str, Any]:
    """Return the object of an ``$object`` tag: its keys as they are, each value converted by ``values``."""
    if not isinstance(body, dict):
        raise error(f"{OBJECT_TAG} must hold an object, not {body!r:.80}")
    return {key: values(item) for key, item in body.items()}


def _text_repeat(body: Any) -> str:
    if not isinstance(body, dict) or set(body) != {"text", "count"}:
        raise VectorValueError(f"$text_repeat must hold text and count, not {body!r}")
    text, count = body["text"], body["count"]
    if not isinstance(text, str):
        raise VectorValueError(f"$text_repeat text must be a string, not {text!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise VectorValueError(f"$text_repeat count must be a whole number of at least 0, not {count!r}")
    return text * count


def _repeat(body: Any, variables: Variables) -> list[Any]:
    if not isinstance(body, dict) or set(body) != {"value", "count"}:
        raise VectorValueError(f"$repeat must hold value and count, not {body!r:.80}")
    count = body["count"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise VectorValueError(f"$repeat count must be a whole number of at least 0, not {count!r}")
    value = resolve(body["value"], variables)
    return [value] * count


def _entries(body: Any, variables: Variables) -> dict[str, Any]:
    """Return the object of an ``$entries`` tag, whose keys are resolved like its values."""
    if not isinstance(body, list):
        raise VectorValueError(f"$entries must hold a list of [key, value] pairs, not {body!r:.80}")
    entries: dict[str, Any] = {}
    for pair in body:
        if not isinstance(pair, list) or len(pair) != 2:
            raise VectorValueError(f"$entries must hold [key, value] pairs, not {pair!r:.80}")
        key = resolve(pair[0], variables)
        if not isinstance(key, str):
            raise VectorValueError(f"$entries keys must be text, not {key!r:.80}")
        if key in entries:
            raise VectorValueError(f"$entries has the key {key!r} twice")
        entries[key] = resolve(pair[1], variables)
    return entries


_RESOLVERS: dict[str, Callable[[Any, Variables], Any]] = {
    "$bytes": lambda body, _: _base64(body, "$bytes"),
    "$bytes_pattern": lambda body, _: _bytes_pattern(body),
    "$text_bytes": lambda body, _: decode_text_bytes(_base64(body, "$text_bytes")),
    "$var": _variable,
    "$float": lambda body, _: _float(body),
    "$sorted": lambda body, variables: _sorted(resolve(body, variables)),
    "$concat": _concat,
    "$text_repeat": lambda body, _: _text_repeat(body),
    "$repeat": _repeat,
    "$entries": _entries,
    OBJECT_TAG: lambda body, variables: _literal_object(
        body, lambda item: resolve(item, variables), VectorValueError
    ),
}


# The wire form


def to_wire(value: Any) -> Any:
    """Return the JSON wire form of a Python value.

    Bytes become ``$bytes``, text that is not valid UTF-8 (it contains
    surrogate escapes) becomes ``$text_bytes`` and NaN and infinities
    become ``$float``. A mapping with a key that starts with ``$`` becomes
    ``$object``, so that it cannot be read as a tag. Tuples become lists.

    :raises WireError: the value has no wire form, such as a set, or
        an object key that is not valid UTF-8.
    """
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": _float_name(value)}
    if isinstance(value, str):
        return _text_to_wire(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [to_wire(item) for item in value]
    if isinstance(value, Mapping):
        wire = {key_to_wire(key): to_wire(item) for key, item in value.items()}
        return {OBJECT_TAG: wire} if any(key.startswith("$") for key in wire) else wire
    raise WireError(f"a value of type {type(value).__name__} has no JSON wire form: {value!r:.80}")


def _float_name(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"


def _text_to_wire(text: str) -> Any:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        return text
    try:
        data = text_to_bytes(text)
    except UnicodeEncodeError:
        raise WireError(f"text {text!r:.80} contains a lone surrogate that encodes no byte") from None
    return {"$text_bytes": base64.b64encode(data).decode("ascii")}


def key_to_wire(key: Any) -> str:
    if not isinstance(key, str):
        raise WireError(f"an object key must be text, not {key!r:.80}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        # JSON object keys cannot be tagged, so such a key has no portable form.
        raise WireError(
            f"object key {key!r:.80} is not valid UTF-8 and cannot be a JSON object key"
        ) from None
    return key


def from_wire(value: Any) -> Any:
    """Return the Python value of a JSON wire value.

    :raises WireError: a tag other than ``$bytes``, ``$text_bytes``,
        ``$float`` and ``$object``, a malformed one, or an object of
        several keys of which one starts with ``$`` outside ``$object``.
    """
    tag = _tag(value)
    if tag is not None:
        return _tag_from_wire(tag, value[tag])
    if isinstance(value, list):
        return [from_wire(item) for item in value]
    if isinstance(value, dict):
        dollar_keys = sorted(key for key in value if key.startswith("$"))
        if dollar_keys:
            raise WireError(
                f"an object with the keys {dollar_keys} that start with $ must be sent as"
                f' {{"{OBJECT_TAG}": {{...}}}}'
            )
        return {key: from_wire(item) for key, item in value.items()}
    return value


def _tag_from_wire(tag: str, body: Any) -> Any:
    try:
        if tag == "$bytes":
            return _base64(body, tag)
        if tag == "$text_bytes":
            return decode_text_bytes(_base64(body, tag))
        if tag == "$float":
            return _float(body)
    except VectorValueError as error:
        raise WireError(str(error)) from None
    if tag == OBJECT_TAG:
        return _literal_object(body, from_wire, WireError)
    raise WireError(f"tag {tag} is not allowed on the wire: only {', '.join(WIRE_TAGS)} are")


# Comparison


def canonical(value: Any) -> Any:
    """Return a hashable form of a value in which only equal values are equal.

    Unlike ``==``, it distinguishes True from 1 and text from bytes, and NaN
    equals NaN. An int equals the float of the same value.
    """
    if value is None or isinstance(value, (bool, int, float, str, bytes, bytearray, memoryview)):
        return _canonical_scalar(value)
    if isinstance(value, (list, tuple)):
        return ("list", tuple(canonical(item) for item in value))
    if isinstance(value, Mapping):
        items = sorted((canonical(key), canonical(item)) for key, item in value.items())
        return ("object", tuple(items))
    return ("other", repr(value))


def _canonical_scalar(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, str):
        return ("text", value)
    return ("bytes", bytes(value))


def same(left: Any, right: Any) -> bool:
    """Return whether two values are deeply equal, distinguishing True from 1 and text from bytes."""
    return bool(canonical(left) == canonical(right))
