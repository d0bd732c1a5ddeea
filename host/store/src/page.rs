//! A page of events as read from a stream: every text field of every event in one
//! buffer, events as [`EventView`]s into it.
//!
//! Decoding a page of 1,000 events into [`RecordedEvent`]s costs 9,000 small
//! allocations, most of them freed on another thread (the replay folds on a blocking
//! thread while the next page is fetched), and malloc was the largest single cost of
//! a replay. A [`Page`] costs two allocations, whatever its length; the runtime hands
//! its fields to the reducer straight from the buffer.

use crate::error::{Error, Result};

use super::model::RecordedEvent;
use super::wire::{Frame, decimal};

/// Where each kept field of an entry lies in the page's text.
const EVENT_ID: usize = 0;
const AGGREGATE_TYPE: usize = 1;
const AGGREGATE_ID: usize = 2;
const EVENT_TYPE: usize = 3;
const DATA: usize = 4;
const TIMESTAMP: usize = 5;
const VERSION: usize = 6;
const POSITION: usize = 7;
/// Field names in the stream entry, in slot order (the position is the entry id).
const NAMES: [&str; 7] = [
    "event_id",
    "aggregate_type",
    "aggregate_id",
    "event_type",
    "data",
    "timestamp",
    "version",
];

type Span = (usize, usize);

#[derive(Debug, Clone, Copy)]
struct Spans {
    revision: u64,
    at: [Span; 8],
}

/// Events read from one stream in one request, in stream order. Iterate it for
/// [`EventView`]s (borrowed, free) or turn it into owned
/// [`RecordedEvent`]s with [`to_events`](Self::to_events).
#[derive(Debug, Clone, Default)]
pub struct Page {
    text: String,
    events: Vec<Spans>,
}

/// One event of a [`Page`], its fields borrowed from the page. The same fields as
/// [`RecordedEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventView<'a> {
    /// The event's id (a UUID, as text; empty if the entry has none).
    pub event_id: &'a str,
    /// The aggregate's type.
    pub aggregate_type: &'a str,
    /// The aggregate's id.
    pub aggregate_id: &'a str,
    /// What happened.
    pub event_type: &'a str,
    /// The payload, JSON text.
    pub data: &'a str,
    /// When it happened, RFC 3339 (as written).
    pub timestamp: &'a str,
    /// The payload's schema version (`"1"` if the entry has none).
    pub version: &'a str,
    /// 1-based position in the aggregate's history (0 in a category feed for an
    /// entry written without one).
    pub revision: u64,
    /// The entry's stream id.
    pub position: &'a str,
}

impl EventView<'_> {
    /// An owned copy.
    pub fn to_event(&self) -> RecordedEvent {
        RecordedEvent {
            event_id: self.event_id.to_owned(),
            aggregate_type: self.aggregate_type.to_owned(),
            aggregate_id: self.aggregate_id.to_owned(),
            event_type: self.event_type.to_owned(),
            data: self.data.to_owned(),
            timestamp: self.timestamp.to_owned(),
            version: self.version.to_owned(),
            revision: self.revision,
            position: self.position.to_owned(),
        }
    }
}

impl From<EventView<'_>> for RecordedEvent {
    fn from(e: EventView<'_>) -> Self {
        e.to_event()
    }
}

impl Page {
    /// How many events the page holds.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the page holds no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The `i`th event.
    pub fn get(&self, i: usize) -> Option<EventView<'_>> {
        self.events.get(i).map(|s| self.view(s))
    }

    /// The last event.
    pub fn last(&self) -> Option<EventView<'_>> {
        self.events.last().map(|s| self.view(s))
    }

    /// The events, in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            page: self,
            spans: self.events.iter(),
        }
    }

    /// Owned copies of the events.
    pub fn to_events(&self) -> Vec<RecordedEvent> {
        self.iter().map(|e| e.to_event()).collect()
    }

    /// Drops the first event (the entry a
    /// [`from_entry`](crate::ReadOptions::from_entry) read starts with, once
    /// checked).
    pub fn drop_first(&mut self) {
        if !self.events.is_empty() {
            self.events.remove(0);
        }
    }

    /// Keeps only the events whose revision passes `keep`.
    pub(crate) fn retain_revisions(&mut self, mut keep: impl FnMut(u64) -> bool) {
        self.events.retain(|s| keep(s.revision));
    }

    fn view(&self, s: &Spans) -> EventView<'_> {
        let field = |i: usize| &self.text[s.at[i].0..s.at[i].1];
        EventView {
            event_id: field(EVENT_ID),
            aggregate_type: field(AGGREGATE_TYPE),
            aggregate_id: field(AGGREGATE_ID),
            event_type: field(EVENT_TYPE),
            data: field(DATA),
            timestamp: field(TIMESTAMP),
            version: field(VERSION),
            revision: s.revision,
            position: field(POSITION),
        }
    }
}

impl<'a> IntoIterator for &'a Page {
    type Item = EventView<'a>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// The events of a [`Page`], from [`Page::iter`].
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    page: &'a Page,
    spans: std::slice::Iter<'a, Spans>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = EventView<'a>;

    fn next(&mut self) -> Option<EventView<'a>> {
        self.spans.next().map(|s| self.page.view(s))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.spans.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.spans.next_back().map(|s| self.page.view(s))
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// Decodes an `XRANGE` reply into a page.
///
/// `aggregate`: when reading an aggregate stream, its type and id (the defaults for
/// entries that lack them) and the revision the next entry has if it carries none;
/// entries are never removed from an aggregate stream, so position gives the revision.
/// `None` for a category stream, where entries must name their aggregate.
///
/// Fields of other writers are ignored; a missing `event_type` or `data`, a revision
/// that is not a number, or text that is not UTF-8 is [`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt), naming the
/// entry.
pub(crate) fn decode_page(
    mut reply: Frame<'_>,
    key: &str,
    mut aggregate: Option<((&str, &str), &mut u64)>,
) -> Result<Page> {
    let corrupt = |reason: String| Error::corrupt(key, reason);
    let Some(count) = reply.array().map_err(corrupt)? else {
        return Ok(Page::default());
    };
    let mut text: Vec<u8> = Vec::with_capacity(count * 256);
    let mut push = |bytes: &[u8]| {
        let start = text.len();
        text.extend_from_slice(bytes);
        (start, text.len())
    };
    // Defaults shared by every entry that lacks the field.
    let empty = (0, 0);
    let version_one = push(b"1");
    let defaults = aggregate
        .as_ref()
        .map(|((t, i), _)| (push(t.as_bytes()), push(i.as_bytes())));

    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        if reply.array().map_err(corrupt)? != Some(2) {
            return Err(corrupt("a stream entry is not [id, fields]".to_owned()));
        }
        let id = reply
            .bulk()
            .map_err(corrupt)?
            .ok_or_else(|| corrupt("a stream entry has no id".to_owned()))?;
        let entry = || String::from_utf8_lossy(id);
        let mut at: [Option<Span>; 8] = [None; 8];
        at[POSITION] = Some(push(id));
        let mut revision = None;
        // A nil field list: an entry deleted under a consumer group's reader.
        let fields = reply.array().map_err(corrupt)?.unwrap_or(0);
        if fields % 2 != 0 {
            return Err(corrupt(format!(
                "entry {}: an odd number of fields",
                entry()
            )));
        }
        for _ in 0..fields / 2 {
            let (name, value) = match (reply.bulk(), reply.bulk()) {
                (Ok(Some(name)), Ok(Some(value))) => (name, value),
                (Err(e), _) | (_, Err(e)) => {
                    return Err(corrupt(format!("entry {}: {e}", entry())));
                }
                _ => return Err(corrupt(format!("entry {}: a nil field", entry()))),
            };
            if name == b"revision" {
                revision = Some(decimal(value).ok_or_else(|| {
                    corrupt(format!(
                        "entry {}: revision {:?} is not a number",
                        entry(),
                        String::from_utf8_lossy(value)
                    ))
                })?);
            } else if let Some(slot) = NAMES.iter().position(|n| n.as_bytes() == name) {
                at[slot] = Some(push(value));
            }
        }

        let missing = |field: &str| corrupt(format!("entry {} has no {field}", entry()));
        let revision = match (&mut aggregate, defaults) {
            (Some((_, next)), Some((t, i))) => {
                at[AGGREGATE_TYPE].get_or_insert(t);
                at[AGGREGATE_ID].get_or_insert(i);
                let rev = revision.unwrap_or(**next);
                **next = rev.saturating_add(1);
                rev
            }
            _ => {
                for slot in [AGGREGATE_TYPE, AGGREGATE_ID] {
                    if at[slot].is_none() {
                        return Err(missing(NAMES[slot]));
                    }
                }
                revision.unwrap_or(0)
            }
        };
        for slot in [EVENT_TYPE, DATA] {
            if at[slot].is_none() {
                return Err(missing(NAMES[slot]));
            }
        }
        at[VERSION].get_or_insert(version_one);
        events.push(Spans {
            revision,
            at: at.map(|s| s.unwrap_or(empty)), // no event_id or timestamp: ""
        });
    }

    // One UTF-8 check for the whole page; on failure, find the entry to name.
    let text = String::from_utf8(text).map_err(|e| {
        let bad = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let place = events.iter().find_map(|s| {
            let slot = s.at.iter().position(|&(a, b)| a <= bad && bad < b)?;
            let (a, b) = s.at[POSITION];
            let name = NAMES.get(slot).copied().unwrap_or("its id");
            Some(format!(
                "entry {}: {name}",
                String::from_utf8_lossy(&bytes[a..b])
            ))
        });
        corrupt(format!(
            "{} is not UTF-8",
            place.unwrap_or_else(|| "a field".to_owned())
        ))
    })?;
    Ok(Page { text, events })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::xrange_reply;

    fn decode(reply: &[u8], aggregate: Option<((&str, &str), &mut u64)>) -> Result<Page> {
        decode_page(Frame::new(reply), "k", aggregate)
    }

    #[test]
    fn decodes_seed_entries_by_position() {
        let reply = xrange_reply(&[
            (
                "1-0",
                &[
                    ("event_id", "a"),
                    ("event_type", "T"),
                    ("data", "{}"),
                    ("other", "x"),
                ],
            ),
            (
                "2-0",
                &[("event_id", "b"), ("event_type", "T"), ("data", "[]")],
            ),
            (
                "3-0",
                &[
                    ("event_id", "c"),
                    ("event_type", "T"),
                    ("data", "1"),
                    ("revision", "3"),
                    ("version", "2"),
                    ("aggregate_id", "own"),
                ],
            ),
        ]);
        let mut next = 1;
        let page = decode(&reply, Some((("user", "1"), &mut next))).unwrap();
        assert_eq!(
            page.iter().map(|e| e.revision).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(next, 4);
        let first = page.get(0).unwrap();
        assert_eq!(
            (
                first.aggregate_type,
                first.aggregate_id,
                first.version,
                first.data
            ),
            ("user", "1", "1", "{}")
        );
        assert_eq!(page.get(1).unwrap().position, "2-0");
        let last = page.last().unwrap();
        assert_eq!((last.version, last.aggregate_id), ("2", "own"));
        let owned = page.to_events();
        assert_eq!(owned[2].event_id, "c");
        assert_eq!(RecordedEvent::from(page.get(2).unwrap()), owned[2]);
    }

    #[test]
    fn bad_entries_are_corrupt_not_panics() {
        let cases = vec![
            b":3\r\n".to_vec(),
            b"*1\r\n:1\r\n".to_vec(),
            b"*1\r\n*1\r\n$3\r\n1-0\r\n".to_vec(),
            b"*1\r\n*2\r\n$3\r\n1-0\r\n*1\r\n$1\r\na\r\n".to_vec(),
            b"*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$4\r\ndata\r\n$-1\r\n".to_vec(),
            b"*2\r\n".to_vec(), // ends early
            xrange_reply(&[("1-0", &[("event_id", "a")])]),
            xrange_reply(&[(
                "1-0",
                &[("event_type", "T"), ("data", "{}"), ("revision", "x")],
            )]),
            xrange_reply(&[(
                "1-0",
                &[
                    ("event_type", "T"),
                    ("data", "{}"),
                    ("revision", "99999999999999999999999"),
                ],
            )]),
            // A category entry must name its aggregate.
            xrange_reply(&[("1-0", &[("event_type", "T"), ("data", "{}")])]),
        ];
        for reply in cases {
            let r = decode(&reply, None);
            assert!(matches!(&r, Err(e) if e.is_corrupt()), "{reply:?}: {r:?}");
        }
        // A nil reply is an empty page.
        assert!(decode(b"*-1\r\n", None).unwrap().is_empty());
    }

    #[test]
    fn text_that_is_not_utf8_names_the_entry_and_field() {
        let mut reply = xrange_reply(&[
            ("1-0", &[("event_type", "T"), ("data", "{}")]),
            ("2-0", &[("event_type", "T"), ("data", "{?}")]),
        ]);
        let at = reply.iter().rposition(|&b| b == b'?').unwrap();
        reply[at] = 0xff;
        let mut next = 1;
        let err = decode(&reply, Some((("user", "1"), &mut next))).unwrap_err();
        assert!(
            err.to_string().contains("entry 2-0: data is not UTF-8"),
            "{err}"
        );
    }
}
