//! A projection of the `hostile` category for the host's sandbox tests. What it
//! does depends on each event's type:
//! - `Count`: reads `count` (absent is 0), writes it back plus one: a batch's reads
//!   must see its own writes;
//! - `Forget`: deletes `count`, then reads it: a rule violation unless it is gone;
//! - `Spin`: never returns; `Bomb`: allocates without bound;
//! - `Flood`: puts 1,000,000 distinct keys; `ReadFlood`: gets 1,000,000 times;
//! - `BigDoc`: puts a 2 MiB document; `NotJson`: puts text that is not JSON;
//! - `LongKey`: puts under a 10,000-byte key; `EscapeKey`: puts under a key with
//!   terminal escapes;
//! - `Shout`: logs a line of terminal escapes and 100,000 bytes of padding;
//! - `Refuse`: rejects the event with such a message;
//! - anything else: ignored.

use streamfold_guest::{Projection, ProjectionEvent, ReadModel, Rejection, log};

/// What a terminal would obey, and what would look like the host's own output.
pub const ESCAPES: &str =
    "\u{1b}[2J\u{1b}[H\u{1b}]0;pwned\u{7}\r\nerror: forged by the projection\u{202e}";

/// The hostile projection.
#[derive(Debug)]
pub struct Hostile;

impl Projection for Hostile {
    const SOURCES: &'static [&'static str] = &["hostile"];
    const HANDLES: &'static [&'static str] = &[];

    fn apply(event: &ProjectionEvent, model: &mut ReadModel<'_>) -> Result<(), Rejection> {
        match event.event_type() {
            "Count" => {
                let count: u64 = model.get_json("count")?.unwrap_or(0);
                model.put_json("count", &(count + 1))?;
            }
            "Forget" => {
                model.delete("count");
                if model.get("count").is_some() {
                    return Err(Rejection::rule("count is still there after delete"));
                }
            }
            "Spin" => {
                let mut n = 0_u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "Bomb" => {
                let mut hoard = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![0xA5_u8; 1 << 20]));
                }
            }
            "Flood" => {
                for i in 0..1_000_000 {
                    model.put(&format!("flood/{i}"), "{}");
                }
            }
            "ReadFlood" => {
                for _ in 0..1_000_000 {
                    std::hint::black_box(model.get("count"));
                }
            }
            "BigDoc" => model.put("big", &format!("\"{}\"", "x".repeat(2 << 20))),
            "NotJson" => model.put("bad", "{not json"),
            "LongKey" => model.put(&"k".repeat(10_000), "{}"),
            "EscapeKey" => model.put(&format!("key{ESCAPES}"), "{}"),
            "Shout" => log::warn(&format!("{ESCAPES}{}", "x".repeat(100_000))),
            "Refuse" => {
                return Err(Rejection::invalid_data(format!(
                    "{ESCAPES}{}",
                    "A".repeat(100_000)
                )));
            }
            _ => {}
        }
        Ok(())
    }
}

streamfold_guest::export_projection!(Hostile);
