//! A second version of the `user` reducer for the live-update tests: it folds the
//! same events but stores names in upper case and counts the events it applied, so
//! every state shows which version made it, and a state mixing versions is visible.

use serde_json::{Map, Value};
use streamfold_guest::{Event, Reducer, Rejection};

struct UserV2;

impl Reducer for UserV2 {
    const AGGREGATE_TYPE: &'static str = "user";
    const HANDLES: &'static [&'static str] = &["UserCreated", "EmailChanged", "NameChanged"];
    type State = Map<String, Value>;

    fn apply(state: &mut Self::State, event: &Event) -> Result<(), Rejection> {
        let data = event.data::<Map<String, Value>>()?;
        if let Some(Value::String(name)) = data.get("name") {
            state.insert("name".into(), Value::String(name.to_uppercase()));
        }
        if let Some(email) = data.get("email") {
            state.insert("email".into(), email.clone());
        }
        let applied = state.get("v2_events").and_then(Value::as_u64).unwrap_or(0);
        state.insert("v2_events".into(), Value::from(applied + 1));
        Ok(())
    }
}

streamfold_guest::export!(UserV2);
