//! The seed document's `user` aggregate: its state after any history equals the
//! seed's `user_handlers` replay, key order and JSON types included.

use serde_json::{Map, Value};
use streamfold_guest::{Event, Reducer, Rejection};

/// The `user` reducer.
#[derive(Debug)]
pub struct User;

impl Reducer for User {
    const AGGREGATE_TYPE: &'static str = "user";
    const HANDLES: &'static [&'static str] = &["UserCreated", "EmailChanged", "NameChanged"];
    /// A JSON object whose keys keep their insertion order, like a Python dict.
    type State = Map<String, Value>;

    fn apply(state: &mut Self::State, event: &Event) -> Result<(), Rejection> {
        let mut data = event.data::<Map<String, Value>>()?;
        // Take every field first: a missing one refuses the event before any change.
        let mut take = |field: &str| {
            data.remove(field)
                .ok_or_else(|| Rejection::invalid_data(format!("field \"{field}\" is missing")))
        };
        let changes = match event.event_type() {
            "UserCreated" => vec![
                ("id", take("id")?),
                ("name", take("name")?),
                ("email", take("email")?),
                ("created_at", take("timestamp")?),
            ],
            "EmailChanged" => vec![
                ("email", take("email")?),
                ("email_updated_at", take("timestamp")?),
            ],
            "NameChanged" => vec![("name", take("name")?)],
            _ => vec![],
        };
        for (key, value) in changes {
            state.insert(key.to_owned(), value);
        }
        Ok(())
    }
}

streamfold_guest::export!(User);

#[cfg(test)]
mod tests;
