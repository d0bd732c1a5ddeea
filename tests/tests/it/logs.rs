//! Reducer log lines as the host emits them: `tracing` events with the target
//! `streamfold::reducer`, captured by a process-wide subscriber that this test
//! binary installs once. Tests find their own lines by their aggregate (`type/id`
//! unique to the test).

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One captured event: its level and its fields (`message`, `plugin`, `aggregate`).
#[derive(Debug, Clone)]
pub struct Line {
    pub level: tracing::Level,
    pub fields: BTreeMap<String, String>,
}

impl Line {
    pub fn field(&self, name: &str) -> &str {
        self.fields.get(name).map(String::as_str).unwrap_or("")
    }
}

static LINES: OnceLock<Mutex<Vec<Line>>> = OnceLock::new();

struct Capture;

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "streamfold::reducer" {
            return;
        }
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        lines().lock().unwrap().push(Line {
            level: *event.metadata().level(),
            fields,
        });
    }
}

fn lines() -> &'static Mutex<Vec<Line>> {
    LINES.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(Capture);
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in the test binary");
        Mutex::new(Vec::new())
    })
}

/// Installs the capture (call before the code under test runs).
pub fn capture() {
    lines();
}

/// The captured reducer log lines of `aggregate` (`type/id`).
pub fn of(aggregate: &str) -> Vec<Line> {
    lines()
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.field("aggregate") == aggregate)
        .cloned()
        .collect()
}
