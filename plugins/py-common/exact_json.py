"""JSON as the Rust reducers (serde_json) read and write it.

Python's `json` module is close, but not the same:

- it accepts `NaN`, `Infinity`, numbers that overflow to infinity, lone surrogate
  escapes (`"\\ud800"`) and any depth of nesting; serde_json refuses them all
  (at most 127 levels);
- it prints floats as `repr` does (`1e+16`, `1e-07`, `1e+21`, `1e-05`), serde_json
  as the `zmij` crate does (`1e+16`, `1e-7`, `1e+21`, `0.00001`), and `-0` as the
  integer `0`, serde_json as the float `-0.0`.

`loads` refuses what serde_json refuses and `dumps` prints what serde_json prints,
so a state is the Rust reducer's state byte for byte. Integers stay exact at any
size (serde_json keeps 64 bits and turns larger ones into floats).
"""

import json
import math
import re
from decimal import Decimal

MAX_DEPTH = 127  # serde_json's recursion limit
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class JsonError(ValueError):
    """Text that is not JSON, or not JSON that serde_json accepts."""


def _parse_int(text):
    if text == "-0":
        return -0.0  # a float in serde_json
    if len(text) > 300 and math.isinf(float(text)):
        raise JsonError("number out of range")
    return int(text)


def _parse_float(text):
    value = float(text)
    if math.isinf(value):
        raise JsonError("number out of range")
    return value


def _parse_constant(name):
    raise JsonError(f"expected value, found {name}")


def decoder(**hooks):
    """A `json.JSONDecoder` with serde_json's number rules (`hooks` adds any other)."""
    return json.JSONDecoder(
        parse_int=_parse_int,
        parse_float=_parse_float,
        parse_constant=_parse_constant,
        **hooks,
    )


_DECODER = decoder()
_SCAN = _DECODER.scan_once


def loads(text, decode=None):
    """Parses one JSON document, refusing what serde_json refuses. `decode` is a
    decoder's `decode` (`decoder(object_pairs_hook=...)`), else this module's."""
    if decode is not None:
        value = _decode(text, decode)
    else:
        # The decoder's own scanner, called directly: `decode` adds two regular
        # expression matches and a Python frame or two around it, as much as the
        # scan of a small event costs. Text it does not read to its end in one go
        # (whitespace around it, anything refused) goes through `decode`, which
        # says why.
        try:
            value, end = _SCAN(text, 0)
        except (StopIteration, ValueError, RecursionError):
            end = -1
        if end != len(text):
            value = _decode(text, _DECODER.decode)
    # Rare checks, run only when the text could fail them (128 levels need at
    # least 256 brackets).
    if len(text) > 2 * MAX_DEPTH and text.count("[") + text.count("{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise JsonError("recursion limit exceeded")
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise JsonError("lone surrogate in hex escape") from None
    return value


def _decode(text, decode):
    try:
        return decode(text)
    except RecursionError:
        raise JsonError("recursion limit exceeded") from None
    except ValueError as err:
        raise JsonError(str(err)) from None


def _depth(value):
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, (list, tuple)):
        return 1 + max(map(_depth, value), default=0)
    return 0


# One encoder, made once (`json.dumps` with arguments makes one per call): for
# values without floats it prints what serde_json prints, in C. Its C core is
# called directly where there is one: `JSONEncoder.encode` makes it anew on every
# call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_STRING = json.encoder.encode_basestring
if json.encoder.c_make_encoder is not None:
    _C_ENCODE = json.encoder.c_make_encoder(
        None, _ENCODER.default, _STRING, None, ":", ",", False, False, True
    )

    def _encode(value):
        return "".join(_C_ENCODE(value, 0))

else:
    _encode = _ENCODER.encode
_PLAIN = (str, int, bool, type(None))
_PLAIN_TYPES = frozenset(_PLAIN)  # the usual values, told by one look-up


def _plain(value):
    """Whether `value` holds no float (those print differently) and nothing that
    is not JSON: strings, integers, booleans, null, and lists and dicts of them
    with string keys."""
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str or (type(item) not in _PLAIN_TYPES and not _plain(item)):
                return False
        return True
    if isinstance(value, list):
        for item in value:
            if type(item) not in _PLAIN_TYPES and not _plain(item):
                return False
        return True
    return isinstance(value, _PLAIN) and not isinstance(value, float)


def dumps(value):
    """Compact JSON text of `value`, as serde_json prints it."""
    if _plain(value):
        return _encode(value)
    out = []
    _write(value, out)
    return "".join(out)


def _write(value, out):
    if isinstance(value, str):
        out.append(_STRING(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(format_float(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(_STRING(key))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot write {type(value).__name__} as JSON")


def format_float(value):
    """A float as serde_json (the `zmij` crate) prints it: the shortest digits
    that read back to the same float, plain from 1e-5 to 1e16 (`1.0`, `0.001`),
    in exponent form outside (`1e+16`, `1.5e-7`)."""
    if not math.isfinite(value):
        return "null"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    # repr gives the shortest digits that read back to the same float.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    all_digits = "".join(map(str, digit_tuple))
    digits = all_digits.rstrip("0")
    k = exponent + len(all_digits) - len(digits)  # |value| = digits * 10^k
    length = len(digits)
    kk = length + k  # 10^(kk-1) <= |value| < 10^kk
    if 0 <= k and kk <= 16:
        text = digits + "0" * k + ".0"
    elif 0 < kk <= 16:
        text = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        text = "0." + "0" * -kk + digits
    else:
        e = kk - 1
        text = digits[0] + ("." + digits[1:] if length > 1 else "") + ("e" if e < 0 else "e+") + str(e)
    return sign + text
