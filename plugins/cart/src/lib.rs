//! A shopping cart: items added and removed, quantities, totals, and a state machine
//! from open to checked out (or abandoned). Its rules refuse invalid events with a
//! `rule-violation`; payloads of the wrong shape are `invalid-data`. See README.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use streamfold_guest::{Event, Reducer, Rejection};

/// The `cart` reducer.
struct Cart;

/// Where a cart is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Items can be added, removed and changed.
    Open,
    /// Paid for: nothing changes any more.
    CheckedOut,
    /// Given up: nothing changes any more.
    Abandoned,
}

/// One line of the cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The product's name, as it was when first added.
    pub name: String,
    /// How many; at least 1 (a line at 0 is removed).
    pub quantity: u64,
    /// The price of one, in cents.
    pub unit_price_cents: u64,
    /// `quantity * unit_price_cents`.
    pub line_total_cents: u64,
}

/// The state of one cart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartState {
    /// `null` until `CartOpened`.
    pub status: Option<Status>,
    /// Who the cart belongs to.
    pub customer: Option<String>,
    /// The lines, by SKU.
    pub items: BTreeMap<String, Line>,
    /// The number of units, all lines together.
    pub item_count: u64,
    /// The sum of the line totals, in cents.
    pub total_cents: u64,
    /// When `CartOpened` was appended.
    pub opened_at: Option<String>,
    /// When `CheckedOut` was appended.
    pub checked_out_at: Option<String>,
    /// When `CartAbandoned` was appended.
    pub abandoned_at: Option<String>,
}

#[derive(Deserialize)]
struct CartOpened {
    customer: String,
}

#[derive(Deserialize)]
struct ItemAdded {
    sku: String,
    name: String,
    quantity: i64,
    unit_price_cents: i64,
}

#[derive(Deserialize)]
struct ItemRemoved {
    sku: String,
    /// Absent: the whole line.
    quantity: Option<i64>,
}

#[derive(Deserialize)]
struct QuantityChanged {
    sku: String,
    quantity: i64,
}

impl Reducer for Cart {
    const AGGREGATE_TYPE: &'static str = "cart";
    const HANDLES: &'static [&'static str] = &[
        "CartOpened",
        "ItemAdded",
        "ItemRemoved",
        "QuantityChanged",
        "CheckedOut",
        "CartAbandoned",
    ];
    type State = CartState;

    fn apply(cart: &mut CartState, event: &Event) -> Result<(), Rejection> {
        let at = event.timestamp().to_owned();
        match event.event_type() {
            "CartOpened" => {
                let CartOpened { customer } = event.data()?;
                if let Some(status) = cart.status {
                    return Err(Rejection::rule(format!(
                        "the cart is already {}",
                        name(status)
                    )));
                }
                cart.status = Some(Status::Open);
                cart.customer = Some(customer);
                cart.opened_at = Some(at);
            }
            "ItemAdded" => {
                let added: ItemAdded = event.data()?;
                cart.must_be_open("add items to")?;
                let quantity = positive("quantity", added.quantity)?;
                let unit_price_cents = u64::try_from(added.unit_price_cents)
                    .map_err(|_| Rejection::rule("unit_price_cents cannot be negative"))?;
                let line = match cart.items.get(&added.sku) {
                    Some(line) if line.unit_price_cents != unit_price_cents => {
                        return Err(Rejection::rule(format!(
                            "sku {:?} is in the cart at {} cents, not {unit_price_cents}",
                            added.sku, line.unit_price_cents
                        )));
                    }
                    Some(line) => (
                        line.name.clone(),
                        add(line.quantity, quantity)?,
                        unit_price_cents,
                    ),
                    None => (added.name, quantity, unit_price_cents),
                };
                cart.set_line(added.sku, Some(line))?;
            }
            "ItemRemoved" => {
                let removed: ItemRemoved = event.data()?;
                cart.must_be_open("remove items from")?;
                let line = cart.line(&removed.sku)?;
                let left = match removed.quantity {
                    None => 0,
                    Some(quantity) => {
                        let quantity = positive("quantity", quantity)?;
                        line.quantity.checked_sub(quantity).ok_or_else(|| {
                            Rejection::rule(format!(
                                "cannot remove {quantity} of sku {:?}: the cart holds {}",
                                removed.sku, line.quantity
                            ))
                        })?
                    }
                };
                let line = (left > 0).then(|| (line.name.clone(), left, line.unit_price_cents));
                cart.set_line(removed.sku, line)?;
            }
            "QuantityChanged" => {
                let changed: QuantityChanged = event.data()?;
                cart.must_be_open("change quantities in")?;
                let quantity = positive("quantity", changed.quantity)?;
                let line = cart.line(&changed.sku)?;
                let line = (line.name.clone(), quantity, line.unit_price_cents);
                cart.set_line(changed.sku, Some(line))?;
            }
            "CheckedOut" => {
                cart.must_be_open("check out")?;
                if cart.items.is_empty() {
                    return Err(Rejection::rule("cannot check out an empty cart"));
                }
                cart.status = Some(Status::CheckedOut);
                cart.checked_out_at = Some(at);
            }
            "CartAbandoned" => {
                cart.must_be_open("abandon")?;
                cart.status = Some(Status::Abandoned);
                cart.abandoned_at = Some(at);
            }
            _ => {}
        }
        Ok(())
    }
}

impl CartState {
    fn must_be_open(&self, action: &str) -> Result<(), Rejection> {
        match self.status {
            Some(Status::Open) => Ok(()),
            None => Err(Rejection::rule(format!(
                "cannot {action} a cart before CartOpened"
            ))),
            Some(status) => Err(Rejection::rule(format!(
                "cannot {action} a cart that is {}",
                name(status)
            ))),
        }
    }

    fn line(&self, sku: &str) -> Result<&Line, Rejection> {
        self.items
            .get(sku)
            .ok_or_else(|| Rejection::rule(format!("sku {sku:?} is not in the cart")))
    }

    /// Replaces the line of `sku` (`None` removes it) and the totals, or changes
    /// nothing if a total would overflow.
    fn set_line(&mut self, sku: String, line: Option<(String, u64, u64)>) -> Result<(), Rejection> {
        let (old_count, old_total) = self
            .items
            .get(&sku)
            .map_or((0, 0), |line| (line.quantity, line.line_total_cents));
        let line = match line {
            Some((name, quantity, unit_price_cents)) => Some(Line {
                name,
                quantity,
                unit_price_cents,
                line_total_cents: quantity
                    .checked_mul(unit_price_cents)
                    .ok_or_else(overflow)?,
            }),
            None => None,
        };
        let (new_count, new_total) = line
            .as_ref()
            .map_or((0, 0), |line| (line.quantity, line.line_total_cents));
        let item_count = self
            .item_count
            .checked_sub(old_count)
            .ok_or_else(inconsistent);
        let total_cents = self
            .total_cents
            .checked_sub(old_total)
            .ok_or_else(inconsistent);
        let item_count = add(item_count?, new_count)?;
        let total_cents = add(total_cents?, new_total)?;

        self.item_count = item_count;
        self.total_cents = total_cents;
        match line {
            Some(line) => self.items.insert(sku, line),
            None => self.items.remove(&sku),
        };
        Ok(())
    }
}

fn positive(field: &str, value: i64) -> Result<u64, Rejection> {
    u64::try_from(value)
        .ok()
        .filter(|&value| value > 0)
        .ok_or_else(|| Rejection::rule(format!("{field} must be at least 1, not {value}")))
}

fn add(a: u64, b: u64) -> Result<u64, Rejection> {
    a.checked_add(b).ok_or_else(overflow)
}

fn overflow() -> Rejection {
    Rejection::rule("the cart's totals would overflow")
}

/// Only a hand-made snapshot can get here.
fn inconsistent() -> Rejection {
    Rejection::rule("the cart's totals do not match its items")
}

fn name(status: Status) -> &'static str {
    match status {
        Status::Open => "open",
        Status::CheckedOut => "checked out",
        Status::Abandoned => "abandoned",
    }
}

streamfold_guest::export!(Cart);

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use streamfold_guest::{Aggregate, ErrorKind, ReducerError};

    use super::*;

    /// Event types and payloads, in order.
    type History = Vec<(&'static str, Value)>;

    /// Events at revisions 1, 2, ..., appended at second 1, 2, ...
    fn history(events: &[(&str, Value)]) -> Vec<Event> {
        (1..)
            .zip(events)
            .map(|(revision, (ty, data))| {
                Event::new(revision, *ty, data.to_string())
                    .with_timestamp(format!("2026-11-26T06:00:{revision:02}Z"))
            })
            .collect()
    }

    fn replay(events: &[(&str, Value)]) -> Result<Value, ReducerError> {
        let mut cart = Aggregate::<Cart>::new("c-1");
        cart.apply(history(events))?;
        Ok(serde_json::from_str(&cart.state_json()?).unwrap())
    }

    fn opened() -> (&'static str, Value) {
        ("CartOpened", json!({"customer": "alice"}))
    }

    fn add(sku: &str, quantity: i64, price: i64) -> (&'static str, Value) {
        (
            "ItemAdded",
            json!({"sku": sku, "name": format!("{sku} name"), "quantity": quantity, "unit_price_cents": price}),
        )
    }

    fn rejected(events: &[(&str, Value)]) -> ReducerError {
        replay(events).unwrap_err()
    }

    #[test]
    fn a_full_history() {
        let state = replay(&[
            opened(),
            add("apple", 3, 50),
            add("pear", 1, 120),
            add("apple", 2, 50),
            ("ItemRemoved", json!({"sku": "pear"})),
            add("fig", 4, 30),
            ("ItemRemoved", json!({"sku": "fig", "quantity": 1})),
            ("QuantityChanged", json!({"sku": "apple", "quantity": 10})),
            ("Unrelated", json!(null)),
            ("CheckedOut", json!({})),
        ])
        .unwrap();
        assert_eq!(
            state,
            json!({
                "status": "checked_out",
                "customer": "alice",
                "items": {
                    "apple": {"name": "apple name", "quantity": 10, "unit_price_cents": 50, "line_total_cents": 500},
                    "fig": {"name": "fig name", "quantity": 3, "unit_price_cents": 30, "line_total_cents": 90},
                },
                "item_count": 13,
                "total_cents": 590,
                "opened_at": "2026-11-26T06:00:01Z",
                "checked_out_at": "2026-11-26T06:00:10Z",
                "abandoned_at": null,
            })
        );
    }

    #[test]
    fn abandoned() {
        let state = replay(&[opened(), add("a", 1, 1), ("CartAbandoned", json!({}))]).unwrap();
        assert_eq!(state["status"], "abandoned");
        assert_eq!(state["abandoned_at"], "2026-11-26T06:00:03Z");
    }

    #[test]
    fn rules() {
        let cases: Vec<(History, u32, &str)> = vec![
            (
                vec![add("a", 1, 1)],
                0,
                "cannot add items to a cart before CartOpened",
            ),
            (
                vec![("CheckedOut", json!({}))],
                0,
                "cannot check out a cart before CartOpened",
            ),
            (vec![opened(), opened()], 1, "the cart is already open"),
            (
                vec![opened(), ("ItemRemoved", json!({"sku": "a"}))],
                1,
                "sku \"a\" is not in the cart",
            ),
            (
                vec![
                    opened(),
                    add("a", 2, 1),
                    ("ItemRemoved", json!({"sku": "a", "quantity": 3})),
                ],
                2,
                "cannot remove 3 of sku \"a\": the cart holds 2",
            ),
            (
                vec![opened(), add("a", 0, 1)],
                1,
                "quantity must be at least 1, not 0",
            ),
            (
                vec![opened(), add("a", -2, 1)],
                1,
                "quantity must be at least 1, not -2",
            ),
            (
                vec![opened(), add("a", 1, -1)],
                1,
                "unit_price_cents cannot be negative",
            ),
            (
                vec![
                    opened(),
                    add("a", 1, 1),
                    ("QuantityChanged", json!({"sku": "a", "quantity": 0})),
                ],
                2,
                "quantity must be at least 1, not 0",
            ),
            (
                vec![
                    opened(),
                    add("a", 1, 1),
                    ("ItemRemoved", json!({"sku": "a", "quantity": 0})),
                ],
                2,
                "quantity must be at least 1, not 0",
            ),
            (
                vec![opened(), add("a", 1, 1), add("a", 1, 2)],
                2,
                "sku \"a\" is in the cart at 1 cents, not 2",
            ),
            (
                vec![opened(), ("CheckedOut", json!({}))],
                1,
                "cannot check out an empty cart",
            ),
            (
                vec![
                    opened(),
                    add("a", 1, 1),
                    ("CheckedOut", json!({})),
                    add("b", 1, 1),
                ],
                3,
                "cannot add items to a cart that is checked out",
            ),
            (
                vec![
                    opened(),
                    add("a", 1, 1),
                    ("CartAbandoned", json!({})),
                    ("CheckedOut", json!({})),
                ],
                3,
                "cannot check out a cart that is abandoned",
            ),
            (
                vec![opened(), add("a", i64::MAX, 3)],
                1,
                "the cart's totals would overflow",
            ),
        ];
        for (events, index, message) in cases {
            let err = rejected(&events);
            assert_eq!(
                err,
                ReducerError {
                    kind: ErrorKind::RuleViolation,
                    event_index: Some(index),
                    message: message.into(),
                },
                "{events:?}"
            );
        }
    }

    #[test]
    fn a_refused_event_changes_nothing() {
        let mut cart = Aggregate::<Cart>::new("c-1");
        cart.apply(history(&[opened(), add("a", 2, i64::MAX)]))
            .unwrap();
        let before = cart.state().clone();
        let err = cart.apply(history(&[add("b", 1, 2)])).unwrap_err();
        assert_eq!(err.message, "the cart's totals would overflow");
        assert_eq!(cart.state(), &before);
    }

    #[test]
    fn wrong_shapes_are_invalid_data() {
        for (data, message) in [
            (
                json!({"sku": "a", "name": "A", "quantity": "2", "unit_price_cents": 1}),
                "quantity: invalid type: string \"2\", expected i64",
            ),
            (
                json!({"sku": "a", "quantity": 2, "unit_price_cents": 1}),
                "missing field `name`",
            ),
            (
                json!(5),
                "invalid type: integer `5`, expected struct ItemAdded",
            ),
        ] {
            let err = rejected(&[opened(), ("ItemAdded", data)]);
            assert_eq!(err.kind, ErrorKind::InvalidData);
            assert_eq!(err.event_index, Some(1));
            assert!(err.message.starts_with(message), "{}", err.message);
        }
    }

    #[test]
    fn snapshots_round_trip() {
        let mut cart = Aggregate::<Cart>::new("c-1");
        cart.apply(history(&[opened(), add("a", 2, 5)])).unwrap();
        let snapshot = cart.state_json().unwrap();
        let mut restored = Aggregate::<Cart>::new("c-1");
        restored.restore(&snapshot).unwrap();
        assert_eq!(restored.state(), cart.state());
    }
}
