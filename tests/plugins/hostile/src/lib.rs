//! A reducer that tries to abuse the host with the text it hands back. For each
//! event type:
//! - `Shout`: logs a line that clears the screen, moves the cursor home, and forges
//!   a line of the host's own output, followed by 100,000 bytes of padding.
//! - `Refuse`: rejects the event with a message that sets the terminal's title,
//!   forges a line, carries markup a web page must show as text (a `<script>` and
//!   an attribute breakout), and runs on for 100,000 bytes.
//! - anything else: counted.

use streamfold_guest::{Event, Reducer, Rejection, log};

/// What a terminal would obey, and what would look like the host's own output.
pub const ESCAPES: &str =
    "\u{1b}[2J\u{1b}[H\u{1b}]0;pwned\u{7}\r\nerror: forged by the reducer\u{202e}";
/// Markup a page that inserted the message as HTML would run.
pub const MARKUP: &str =
    "<script>window.__pwned=1</script>\"><img src=x onerror=\"window.__pwned=1\">";
/// Padding after the escapes, in bytes.
pub const PADDING: usize = 100_000;

/// The hostile reducer.
#[derive(Debug)]
pub struct Hostile;

impl Reducer for Hostile {
    const AGGREGATE_TYPE: &'static str = "hostile";
    const HANDLES: &'static [&'static str] = &[];
    type State = u64;

    fn apply(count: &mut u64, event: &Event) -> Result<(), Rejection> {
        match event.event_type() {
            "Shout" => log::warn(&format!("{ESCAPES}{}", "x".repeat(PADDING))),
            "Refuse" => {
                return Err(Rejection::invalid_data(format!(
                    "{ESCAPES}{MARKUP}{}",
                    "A".repeat(PADDING)
                )));
            }
            _ => {}
        }
        *count += 1;
        Ok(())
    }
}

streamfold_guest::export!(Hostile);
