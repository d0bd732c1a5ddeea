"""A shopping cart, in Python: the same reducer as plugins/cart (Rust), state for
state and error for error. Items are added, removed and changed while the cart is
open; then it is checked out or abandoned. See README.md (and plugins/cart).

componentize-py builds this module into a component of the world `plugin`
(wit/reducer.wit): the class `Reducer` implements the exported interface
`reducer` (its `info`), and the class `Aggregate` its resource `aggregate`.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import reducer as reducer_exports
from wit_world.imports.types import ErrorKind, Info, ReducerError

import exact_json

INFO = Info(
    name="cart-py",
    version="0.1.0",
    aggregate_type="cart",
    handles=["CartOpened", "ItemAdded", "ItemRemoved", "QuantityChanged", "CheckedOut", "CartAbandoned"],
)

U64_MAX = 2**64 - 1
I64 = range(-(2**63), 2**63)
STATUS_NAMES = {"open": "open", "checked_out": "checked out", "abandoned": "abandoned"}


class Rejected(Exception):
    """An event refused: `kind` is the WIT error kind."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


def rule(message):
    return Rejected(ErrorKind.RULE_VIOLATION, message)


def invalid(message):
    return Rejected(ErrorKind.INVALID_DATA, message)


def debug_str(s):
    """A string quoted as Rust's `{:?}` quotes it (for the usual SKUs)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Payloads are read as strictly as the Rust reducer's serde structs read them:
# an object with the listed fields (others are ignored, a repeated one is an
# error) or an array of them in order, strings as strings, integers as 64-bit
# signed integers.


class Obj(dict):
    """A JSON object that remembers the keys it had more than once."""

    def __init__(self, pairs):
        super().__init__(pairs)
        self.repeated = set()
        if len(self) != len(pairs):
            seen = set()
            for key, _ in pairs:
                if key in seen:
                    self.repeated.add(key)
                seen.add(key)


_DECODE = exact_json.decoder(object_pairs_hook=Obj).decode


def payload(event, struct, fields):
    """Reads `event.data` as the struct `struct` with `fields` {name: (type, required)}."""
    try:
        data = exact_json.loads(event.data, decode=_DECODE)
    except exact_json.JsonError as err:
        raise invalid(str(err)) from None
    if isinstance(data, list):
        if len(data) != len(fields):
            raise invalid(f"invalid length {len(data)}, expected struct {struct} with {len(fields)} elements")
        data = Obj(list(zip(fields, data)))
    if not isinstance(data, Obj):
        raise invalid(f"invalid type: {json_kind(data)}, expected struct {struct}")
    for key in data.repeated:
        if key in fields:
            raise invalid(f"duplicate field `{key}`")
    values = {}
    for key, (kind, required) in fields.items():
        if key not in data:
            if required:
                raise invalid(f"missing field `{key}`")
            values[key] = None
            continue
        value = values[key] = data[key]
        if value is None and not required:
            continue
        if kind == "string" and not isinstance(value, str):
            raise invalid(f"{key}: invalid type: {json_kind(value)}, expected a string")
        if kind == "i64" and not (type(value) is int and value in I64):
            raise invalid(f"{key}: invalid type: {json_kind(value)}, expected i64")
    return values


def json_kind(value):
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "sequence"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{exact_json.format_float(value)}`"
    if isinstance(value, str):
        return f"string {exact_json.dumps(value)}"
    return "null"


def positive(field, value):
    if value <= 0:
        raise rule(f"{field} must be at least 1, not {value}")
    return value


def add(a, b):
    if a + b > U64_MAX:
        raise rule("the cart's totals would overflow")
    return a + b


class Cart:
    """The state of one cart; `to_json` gives the Rust reducer's JSON, field for field."""

    def __init__(self):
        self.status = None  # None, "open", "checked_out" or "abandoned"
        self.customer = None
        self.items = {}  # sku -> {"name", "quantity", "unit_price_cents", "line_total_cents"}
        self.item_count = 0
        self.total_cents = 0
        self.opened_at = None
        self.checked_out_at = None
        self.abandoned_at = None

    def to_json(self):
        return {
            "status": self.status,
            "customer": self.customer,
            "items": {sku: self.items[sku] for sku in sorted(self.items)},
            "item_count": self.item_count,
            "total_cents": self.total_cents,
            "opened_at": self.opened_at,
            "checked_out_at": self.checked_out_at,
            "abandoned_at": self.abandoned_at,
        }

    def must_be_open(self, action):
        if self.status == "open":
            return
        if self.status is None:
            raise rule(f"cannot {action} a cart before CartOpened")
        raise rule(f"cannot {action} a cart that is {STATUS_NAMES[self.status]}")

    def line(self, sku):
        line = self.items.get(sku)
        if line is None:
            raise rule(f"sku {debug_str(sku)} is not in the cart")
        return line

    def set_line(self, sku, line):
        """Replaces the line of `sku` (None removes it) and the totals, or changes
        nothing if a total would overflow."""
        old = self.items.get(sku)
        old_count, old_total = (old["quantity"], old["line_total_cents"]) if old else (0, 0)
        if line is not None:
            name, quantity, unit_price_cents = line
            line_total = quantity * unit_price_cents
            if line_total > U64_MAX:
                raise rule("the cart's totals would overflow")
            line = {
                "name": name,
                "quantity": quantity,
                "unit_price_cents": unit_price_cents,
                "line_total_cents": line_total,
            }
        new_count, new_total = (line["quantity"], line["line_total_cents"]) if line else (0, 0)
        if self.item_count < old_count or self.total_cents < old_total:
            raise rule("the cart's totals do not match its items")  # only a hand-made snapshot
        item_count = add(self.item_count - old_count, new_count)
        total_cents = add(self.total_cents - old_total, new_total)
        self.item_count = item_count
        self.total_cents = total_cents
        if line is None:
            del self.items[sku]
        else:
            self.items[sku] = line

    def apply(self, event):
        at = event.timestamp
        kind = event.event_type
        if kind == "CartOpened":
            data = payload(event, "CartOpened", {"customer": ("string", True)})
            if self.status is not None:
                raise rule(f"the cart is already {STATUS_NAMES[self.status]}")
            self.status = "open"
            self.customer = data["customer"]
            self.opened_at = at
        elif kind == "ItemAdded":
            data = payload(
                event,
                "ItemAdded",
                {
                    "sku": ("string", True),
                    "name": ("string", True),
                    "quantity": ("i64", True),
                    "unit_price_cents": ("i64", True),
                },
            )
            self.must_be_open("add items to")
            quantity = positive("quantity", data["quantity"])
            price = data["unit_price_cents"]
            if price < 0:
                raise rule("unit_price_cents cannot be negative")
            sku = data["sku"]
            line = self.items.get(sku)
            if line is not None and line["unit_price_cents"] != price:
                raise rule(f"sku {debug_str(sku)} is in the cart at {line['unit_price_cents']} cents, not {price}")
            if line is not None:
                new = (line["name"], add(line["quantity"], quantity), price)
            else:
                new = (data["name"], quantity, price)
            self.set_line(sku, new)
        elif kind == "ItemRemoved":
            data = payload(event, "ItemRemoved", {"sku": ("string", True), "quantity": ("i64", False)})
            self.must_be_open("remove items from")
            sku = data["sku"]
            line = self.line(sku)
            left = 0
            if data["quantity"] is not None:
                quantity = positive("quantity", data["quantity"])
                if quantity > line["quantity"]:
                    raise rule(f"cannot remove {quantity} of sku {debug_str(sku)}: the cart holds {line['quantity']}")
                left = line["quantity"] - quantity
            self.set_line(sku, (line["name"], left, line["unit_price_cents"]) if left > 0 else None)
        elif kind == "QuantityChanged":
            data = payload(event, "QuantityChanged", {"sku": ("string", True), "quantity": ("i64", True)})
            self.must_be_open("change quantities in")
            quantity = positive("quantity", data["quantity"])
            sku = data["sku"]
            line = self.line(sku)
            self.set_line(sku, (line["name"], quantity, line["unit_price_cents"]))
        elif kind == "CheckedOut":
            self.must_be_open("check out")
            if not self.items:
                raise rule("cannot check out an empty cart")
            self.status = "checked_out"
            self.checked_out_at = at
        elif kind == "CartAbandoned":
            self.must_be_open("abandon")
            self.status = "abandoned"
            self.abandoned_at = at

    @staticmethod
    def from_json(value):
        """The cart of a snapshot; ValueError if it is not one `to_json` could make."""
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        cart = Cart()

        def u64(v, what):
            if type(v) is not int or not 0 <= v <= U64_MAX:
                raise ValueError(f"{what} is not a 64-bit unsigned integer")
            return v

        def opt_str(key):
            v = value.get(key)
            if v is not None and not isinstance(v, str):
                raise ValueError(f"{key} is not a string")
            return v

        status = value.get("status")
        if status is not None and status not in STATUS_NAMES:
            raise ValueError(f"unknown status {status!r}")
        cart.status = status
        cart.customer = opt_str("customer")
        for key in ("items", "item_count", "total_cents"):
            if key not in value:
                raise ValueError(f"missing field `{key}`")
        items = value["items"]
        if not isinstance(items, dict):
            raise ValueError("items is not an object")
        for sku, line in items.items():
            if not isinstance(line, dict) or not isinstance(line.get("name"), str):
                raise ValueError(f"items.{sku} is not a line")
            cart.items[sku] = {
                "name": line["name"],
                "quantity": u64(line.get("quantity"), f"items.{sku}.quantity"),
                "unit_price_cents": u64(line.get("unit_price_cents"), f"items.{sku}.unit_price_cents"),
                "line_total_cents": u64(line.get("line_total_cents"), f"items.{sku}.line_total_cents"),
            }
        cart.item_count = u64(value["item_count"], "item_count")
        cart.total_cents = u64(value["total_cents"], "total_cents")
        cart.opened_at = opt_str("opened_at")
        cart.checked_out_at = opt_str("checked_out_at")
        cart.abandoned_at = opt_str("abandoned_at")
        return cart


class Reducer(exports.Reducer):
    def info(self) -> Info:
        return INFO


class Aggregate(reducer_exports.Aggregate):
    def __init__(self, id: str) -> None:
        self.cart = Cart()

    def restore(self, snapshot: str) -> None:
        try:
            self.cart = Cart.from_json(exact_json.loads(snapshot))
        except ValueError as err:
            raise Err(ReducerError(ErrorKind.INVALID_SNAPSHOT, None, f"cannot read the snapshot: {err}"))

    def apply(self, events) -> None:
        for index, event in enumerate(events):
            try:
                self.cart.apply(event)
            except Rejected as r:
                raise Err(ReducerError(r.kind, index, r.message))

    def state(self) -> str:
        return exact_json.dumps(self.cart.to_json())
