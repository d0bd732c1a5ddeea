//! Redis key names, input validation and partitioning (the layouts are described in
//! the crate docs, under Keys).

use crate::error::{Error, Result};

use super::config::{Layout, StoreConfig};

/// The Redis keys one append, read or snapshot of an aggregate touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateKeys {
    /// The aggregate's stream: its full history, never trimmed.
    pub stream: String,
    /// The small hash holding the aggregate's revision counter (and the last batch
    /// appended, for retry detection).
    pub revision: String,
    /// The category stream (partition) this aggregate's events are also added to.
    pub category: String,
    /// The hash of snapshots, one field per reducer digest.
    pub snapshot: String,
    /// The partition of the category the aggregate belongs to (always 0 in the seed
    /// layout).
    pub partition: u32,
}

/// Field name under which a snapshot made by `digest` is kept in the snapshot hash.
///
/// The seed layout shares its snapshot hash with the seed's own `state` and
/// `version_id` fields, so our fields get a prefix there.
pub(crate) fn snapshot_field(layout: Layout, digest: &str) -> String {
    match layout {
        Layout::Default => digest.to_owned(),
        Layout::Seed => format!("streamfold:snapshot:{digest}"),
    }
}

/// Checks a key prefix: non-empty, no braces, no whitespace.
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Err(Error::invalid("the key prefix is empty"));
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| *c == '{' || *c == '}' || c.is_whitespace() || c.is_control())
    {
        return Err(Error::invalid(format!(
            "the key prefix {prefix:?} contains {c:?} (braces, whitespace and control characters are not allowed)"
        )));
    }
    Ok(())
}

/// Longest aggregate type, in characters (Unicode scalar values).
pub const MAX_TYPE_CHARS: usize = 128;

/// Longest aggregate id, in characters (Unicode scalar values).
pub const MAX_ID_CHARS: usize = 512;

/// The characters an aggregate type may not hold, in any layout: braces (the type is
/// part of a Redis hash tag), whitespace and control characters. As a regular
/// expression character class (ECMA-262 and Python syntax), for API schemas.
const TYPE_FORBIDDEN_CLASS: &str =
    r"{}\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// Whether an aggregate type may hold `c` in `layout`.
pub(crate) fn type_char_allowed(layout: Layout, c: char) -> bool {
    !(c == '{'
        || c == '}'
        || c.is_whitespace()
        || c.is_control()
        || (layout == Layout::Seed && c == ':'))
}

/// The regular expression (ECMA-262, as JSON Schema's `pattern` uses it) that
/// matches exactly the aggregate types [`validate_type`] accepts in `layout`, lengths
/// aside ([`MAX_TYPE_CHARS`]).
pub fn aggregate_type_pattern(layout: Layout) -> String {
    let seed = if layout == Layout::Seed { ":" } else { "" };
    format!("^[^{TYPE_FORBIDDEN_CLASS}{seed}]+$")
}

/// The regular expression (ECMA-262) that matches exactly the durable subscription
/// group and consumer names the store accepts, length aside
/// ([`MAX_GROUP_NAME_CHARS`](crate::MAX_GROUP_NAME_CHARS)): a group name lives in the
/// keys' hash tags as a type does, so it follows the default layout's type rule.
pub fn group_name_pattern() -> String {
    aggregate_type_pattern(Layout::Default)
}

/// Checks an aggregate type for the given layout: non-empty, at most
/// [`MAX_TYPE_CHARS`] characters, none of them braces, whitespace or control
/// characters (nor `:` in the seed layout). Every operation on a type checks it.
pub fn validate_type(layout: Layout, aggregate_type: &str) -> Result<()> {
    if aggregate_type.is_empty() {
        return Err(Error::invalid("the aggregate type is empty"));
    }
    if let Some(c) = aggregate_type
        .chars()
        .find(|c| !type_char_allowed(layout, *c))
    {
        return Err(Error::invalid(if c == ':' {
            format!(
                "the aggregate type {aggregate_type:?} contains ':', which the seed key layout uses as its separator"
            )
        } else {
            format!(
                "the aggregate type {aggregate_type:?} contains {c:?} (braces, whitespace and control characters are not allowed: the type is part of a Redis hash tag)"
            )
        }));
    }
    let n = aggregate_type.chars().count();
    if n > MAX_TYPE_CHARS {
        return Err(Error::invalid(format!(
            "the aggregate type is {n} characters long; at most {MAX_TYPE_CHARS} are allowed"
        )));
    }
    Ok(())
}

/// Checks an aggregate id: any non-empty string of at most [`MAX_ID_CHARS`]
/// characters. It is always the last part of a key, so it cannot make two keys
/// collide.
pub fn validate_id(aggregate_id: &str) -> Result<()> {
    if aggregate_id.is_empty() {
        return Err(Error::invalid("the aggregate id is empty"));
    }
    let n = aggregate_id.chars().count();
    if n > MAX_ID_CHARS {
        return Err(Error::invalid(format!(
            "the aggregate id is {n} characters long; at most {MAX_ID_CHARS} are allowed"
        )));
    }
    Ok(())
}

/// 64-bit FNV-1a: tiny, stable across versions and platforms (unlike `std`'s hasher),
/// which is what a partition function must be — changing it would move aggregates.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The category partition of an aggregate id, for a type split into `partitions`.
pub(crate) fn partition_of(aggregate_id: &str, partitions: u32) -> u32 {
    if partitions <= 1 {
        return 0;
    }
    // The remainder is < partitions, so it fits in u32.
    (fnv1a64(aggregate_id.as_bytes()) % u64::from(partitions)) as u32
}

/// The hash-tagged part shared by every key of a type's partition: `prefix:{type:p}`.
fn tag_base(prefix: &str, aggregate_type: &str, partition: u32) -> String {
    format!("{prefix}:{{{aggregate_type}:{partition}}}")
}

/// Computes (and validates) the keys of an aggregate.
pub(crate) fn aggregate_keys(
    config: &StoreConfig,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<AggregateKeys> {
    validate_type(config.layout, aggregate_type)?;
    validate_id(aggregate_id)?;
    Ok(match config.layout {
        Layout::Default => {
            let partition = partition_of(aggregate_id, config.partitions_of(aggregate_type));
            let base = tag_base(&config.prefix, aggregate_type, partition);
            AggregateKeys {
                stream: format!("{base}:agg:{aggregate_id}"),
                revision: format!("{base}:rev:{aggregate_id}"),
                category: format!("{base}:cat"),
                snapshot: format!("{base}:snap:{aggregate_id}"),
                partition,
            }
        }
        Layout::Seed => AggregateKeys {
            stream: format!("events:{aggregate_type}:{aggregate_id}"),
            revision: format!("streamfold:rev:{aggregate_type}:{aggregate_id}"),
            category: format!("events:{aggregate_type}"),
            snapshot: format!("snapshot:{aggregate_type}:{aggregate_id}"),
            partition: 0,
        },
    })
}

/// The category stream key of one partition of a type.
pub(crate) fn category_key(
    config: &StoreConfig,
    aggregate_type: &str,
    partition: u32,
) -> Result<String> {
    validate_type(config.layout, aggregate_type)?;
    match config.layout {
        Layout::Default => {
            let partitions = config.partitions_of(aggregate_type);
            if partition >= partitions {
                return Err(Error::invalid(format!(
                    "partition {partition} of type {aggregate_type:?} does not exist (it has {partitions})"
                )));
            }
            Ok(format!(
                "{}:cat",
                tag_base(&config.prefix, aggregate_type, partition)
            ))
        }
        Layout::Seed => {
            if partition != 0 {
                return Err(Error::invalid(format!(
                    "the seed layout has a single category stream per type; partition {partition} does not exist"
                )));
            }
            Ok(format!("events:{aggregate_type}"))
        }
    }
}

/// The Redis keys of a durable subscription group on one category partition: all
/// under the partition's hash tag, so one script touches them atomically (one slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupKeys {
    /// The category stream partition, which holds the Redis consumer group.
    pub category: String,
    /// Hash: the group's settings, its consumers' last polls, workers' last errors.
    pub state: String,
    /// Stream: the group's parked entries of this partition.
    pub parked: String,
    /// List: category entry ids put back by a replay of parked entries.
    pub replay: String,
    /// Hash: the partition's trim holds (see [`holds_key`]).
    pub holds: String,
}

/// The keys of group `group` on partition `partition` of a type (default layout only;
/// the caller checks the names). After the tag comes `:grp:`, `:parked:` or
/// `:replay:` and then the group name, always last (like an aggregate id), so these
/// keys collide neither with each other nor with an aggregate's.
pub(crate) fn group_keys(
    config: &StoreConfig,
    aggregate_type: &str,
    group: &str,
    partition: u32,
) -> Result<GroupKeys> {
    let category = category_key(config, aggregate_type, partition)?;
    let base = tag_base(&config.prefix, aggregate_type, partition);
    Ok(GroupKeys {
        category,
        state: format!("{base}:grp:{group}"),
        parked: format!("{base}:parked:{group}"),
        replay: format!("{base}:replay:{group}"),
        holds: format!("{base}:holds"),
    })
}

/// The hash of a category partition's trim holds: the lowest entry each reader that
/// holds the trim (a durable subscription) still needs. The append script trims the
/// partition no further. `None` in the seed layout, which has no groups.
pub(crate) fn holds_key(
    config: &StoreConfig,
    aggregate_type: &str,
    partition: u32,
) -> Option<String> {
    match config.layout {
        Layout::Default => Some(format!(
            "{}:holds",
            tag_base(&config.prefix, aggregate_type, partition)
        )),
        Layout::Seed => None,
    }
}

/// The hash of every group of every type (`type group` -> settings as JSON), for
/// listing: type and group names hold no whitespace, so the space separates them.
pub(crate) fn groups_registry_key(config: &StoreConfig) -> String {
    format!("{}:groups", config.prefix)
}

/// The literal key prefixes before the aggregate id of a type's aggregate streams (one
/// per partition), for discovering aggregate ids with `SCAN`.
pub(crate) fn aggregate_stream_prefixes(
    config: &StoreConfig,
    aggregate_type: &str,
) -> Result<Vec<String>> {
    validate_type(config.layout, aggregate_type)?;
    Ok(match config.layout {
        Layout::Default => (0..config.partitions_of(aggregate_type))
            .map(|p| format!("{}:agg:", tag_base(&config.prefix, aggregate_type, p)))
            .collect(),
        Layout::Seed => vec![format!("events:{aggregate_type}:")],
    })
}

/// Escapes the glob characters of `SCAN ... MATCH` (`*`, `?`, `[`, `]`, `\`) so that a
/// literal key prefix matches only itself.
pub(crate) fn glob_escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len() + 4);
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The Redis keys of one projection version: all under the hash tag `{name:vid}`, so
/// one script touches them atomically (one slot on a Redis Cluster). They live under
/// `prefix:pj:`, like other modules' keys (no `{` right after the prefix), so they
/// cannot collide with an aggregate's; the version id holds no `:`, so the tag's last
/// `:` separates it from the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProjectionKeys {
    /// Hash: document key -> JSON.
    pub docs: String,
    /// Sorted set: every document key with score 0, for paging in key order.
    pub keys: String,
    /// Hash: source partition stream key -> last position applied.
    pub ckpt: String,
    /// Hash: counters and the recorded failure.
    pub stat: String,
    /// String: `<token> <holder>` with an expiry.
    pub lease: String,
    /// Counter: the last fencing token handed out.
    pub fence: String,
    /// Stream: dead letters.
    pub dead: String,
    /// Stream (capped): document changes.
    pub changes: String,
}

impl ProjectionKeys {
    /// Every key, in the order the projections script takes them.
    pub(crate) fn all(&self) -> [&str; 8] {
        [
            &self.docs,
            &self.keys,
            &self.ckpt,
            &self.stat,
            &self.lease,
            &self.fence,
            &self.dead,
            &self.changes,
        ]
    }
}

/// The keys of version `vid` of projection `name` (the caller checks the names).
pub(crate) fn projection_keys(config: &StoreConfig, name: &str, vid: &str) -> ProjectionKeys {
    let base = format!("{}:pj:{{{name}:{vid}}}", config.prefix);
    ProjectionKeys {
        docs: format!("{base}:docs"),
        keys: format!("{base}:keys"),
        ckpt: format!("{base}:ckpt"),
        stat: format!("{base}:stat"),
        lease: format!("{base}:lease"),
        fence: format!("{base}:fence"),
        dead: format!("{base}:dead"),
        changes: format!("{base}:changes"),
    }
}

/// A projection registry key (not hash-tagged: each command touches one of them):
/// `prefix:pj:versions:NAME` (hash: version id -> the caller's metadata),
/// `prefix:pj:serving` and `prefix:pj:active` (hashes: name -> version id),
/// `prefix:pj:names` (set of names). `rest` never starts with `{`.
pub(crate) fn projection_registry_key(config: &StoreConfig, rest: &str) -> String {
    format!("{}:pj:{rest}", config.prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> StoreConfig {
        StoreConfig::default()
    }

    /// The published pattern, which is ECMA-262 (`\uXXXX`), as a Rust regex.
    fn rust_regex(pattern: &str) -> regex::Regex {
        let mut out = String::new();
        let mut rest = pattern;
        while let Some(i) = rest.find("\\u") {
            out.push_str(&rest[..i]);
            out.push_str(&format!("\\u{{{}}}", &rest[i + 2..i + 6]));
            rest = &rest[i + 6..];
        }
        out.push_str(rest);
        regex::Regex::new(&out).unwrap()
    }

    #[test]
    fn the_published_type_pattern_accepts_exactly_what_validation_accepts() {
        for layout in [Layout::Default, Layout::Seed] {
            let re = rust_regex(&aggregate_type_pattern(layout));
            let mut buf = [0u8; 4];
            for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
                let one = c.encode_utf8(&mut buf);
                let text = format!("a{one}b");
                assert_eq!(
                    re.is_match(&text),
                    validate_type(layout, &text).is_ok(),
                    "{layout:?} U+{:04X}",
                    c as u32
                );
            }
            assert!(!re.is_match(""));
            assert!(validate_type(layout, "").is_err());
        }
        let longest = "t".repeat(MAX_TYPE_CHARS);
        assert!(validate_type(Layout::Default, &longest).is_ok());
        assert!(validate_type(Layout::Default, &format!("{longest}t")).is_err());
        let longest = "é".repeat(MAX_ID_CHARS);
        assert!(validate_id(&longest).is_ok(), "characters, not bytes");
        assert!(validate_id(&format!("{longest}i")).is_err());
    }

    #[test]
    fn default_layout_keys_share_one_hash_tag() {
        let k = aggregate_keys(&cfg(), "user", "1").unwrap();
        assert_eq!(k.stream, "sf:{user:0}:agg:1");
        assert_eq!(k.revision, "sf:{user:0}:rev:1");
        assert_eq!(k.category, "sf:{user:0}:cat");
        assert_eq!(k.snapshot, "sf:{user:0}:snap:1");
        for key in [&k.stream, &k.revision, &k.category, &k.snapshot] {
            let tag = &key[key.find('{').unwrap() + 1..key.find('}').unwrap()];
            assert_eq!(tag, "user:0");
        }
    }

    #[test]
    fn seed_layout_keys() {
        let c = cfg().layout(Layout::Seed);
        let k = aggregate_keys(&c, "user", "1").unwrap();
        assert_eq!(k.stream, "events:user:1");
        assert_eq!(k.category, "events:user");
        assert_eq!(k.snapshot, "snapshot:user:1");
        assert_eq!(k.revision, "streamfold:rev:user:1");
        assert!(
            aggregate_keys(&c, "a:b", "1")
                .unwrap_err()
                .is_invalid_input()
        );
        // ':' is fine in the default layout.
        assert!(aggregate_keys(&cfg(), "a:b", "1").is_ok());
    }

    #[test]
    fn rejects_bad_names() {
        for t in ["", "a{b", "a}b", "a b", "a\tb", "a\nb"] {
            assert!(
                aggregate_keys(&cfg(), t, "1")
                    .unwrap_err()
                    .is_invalid_input(),
                "{t:?}"
            );
        }
        assert!(
            aggregate_keys(&cfg(), "user", "")
                .unwrap_err()
                .is_invalid_input()
        );
        assert!(validate_prefix("a{").is_err());
        assert!(validate_prefix("").is_err());
        assert!(validate_prefix("sf").is_ok());
    }

    #[test]
    fn odd_ids_do_not_collide() {
        let c = cfg();
        let mut keys = std::collections::HashSet::new();
        let ids = [
            "1", "1:cat", "x}:cat", "cat", "agg:1", "rev:1", "{user:0}", "snap:1", ":", "*",
        ];
        for id in ids {
            let k = aggregate_keys(&c, "user", id).unwrap();
            for key in [k.stream, k.revision, k.snapshot] {
                assert!(keys.insert(key.clone()), "duplicate key {key}");
            }
        }
        assert!(keys.insert(category_key(&c, "user", 0).unwrap()));
        // A type with ':' and another type cannot share a tag.
        let a = aggregate_keys(&c, "a:1", "x").unwrap();
        let b = aggregate_keys(&c, "a", "x").unwrap();
        assert_ne!(a.category, b.category);
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        let c = cfg().partitions_for("order", 8);
        let mut seen = [false; 8];
        for i in 0..200 {
            let id = format!("order-{i}");
            let k = aggregate_keys(&c, "order", &id).unwrap();
            assert!(k.partition < 8);
            seen[k.partition as usize] = true;
            assert_eq!(k, aggregate_keys(&c, "order", &id).unwrap());
            assert!(
                k.category
                    .ends_with(&format!("{{order:{}}}:cat", k.partition))
            );
        }
        assert!(
            seen.iter().all(|s| *s),
            "200 ids should hit all 8 partitions"
        );
        // Known value: changing the hash would silently move aggregates between partitions.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            aggregate_keys(&cfg(), "user", "anything")
                .unwrap()
                .partition,
            0
        );
        assert!(category_key(&c, "order", 8).unwrap_err().is_invalid_input());
    }

    #[test]
    fn glob_escaping() {
        assert_eq!(glob_escape("sf:{a*b?}:agg:"), "sf:{a\\*b\\?}:agg:");
        assert_eq!(glob_escape("[x]\\"), "\\[x\\]\\\\");
    }
}
