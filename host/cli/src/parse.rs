//! Parsers for flag values: durations, sizes, key layouts, expected revisions.

use std::time::Duration;

use streamfold::{Durability, ExpectedRevision, Layout};

/// `500ms`, `5s`, `2m`.
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 5s, 2m or 8h"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{s:?} is not a duration like 500ms, 5s, 2m or 8h")),
    };
    if d.is_zero() {
        return Err("the duration must be longer than zero".to_owned());
    }
    Ok(d)
}

/// `65536`, `64KiB`, `256MiB`, `1GiB` (also `K`, `M`, `G`, binary all the same).
pub(crate) fn bytes(s: &str) -> Result<usize, String> {
    let bad = || format!("{s:?} is not a size like 64MiB or 1GiB");
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: usize = n.parse().map_err(|_| bad())?;
    let shift = match unit.trim().trim_end_matches("iB").trim_end_matches('B') {
        "" => 0,
        "K" | "k" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(bad()),
    };
    let bytes = n
        .checked_shl(shift)
        .filter(|b| b >> shift == n)
        .ok_or_else(bad)?;
    if bytes < 1 << 20 {
        return Err(format!(
            "{s:?} is less than the 1 MiB a reducer needs at least"
        ));
    }
    Ok(bytes)
}

/// `default` or `seed`.
pub(crate) fn layout(s: &str) -> Result<Layout, String> {
    s.parse::<Layout>().map_err(|e| e.to_string())
}

/// `primary`, `replicas=N` or `replicas=N,timeout=MS`.
pub(crate) fn durability(s: &str) -> Result<Durability, String> {
    s.parse::<Durability>().map_err(|e| e.to_string())
}

/// `TYPE=N`: a type's partition count.
pub(crate) fn partitions(s: &str) -> Result<(String, u32), String> {
    let (t, n) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not TYPE=N (e.g. order=8)"))?;
    let n: u32 = n
        .trim()
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("the partition count in {s:?} is not a number >= 1"))?;
    if t.trim().is_empty() {
        return Err(format!("{s:?} names no type (TYPE=N, e.g. order=8)"));
    }
    Ok((t.trim().to_owned(), n))
}

/// `any`, `no-stream`, `exists` or a number.
pub(crate) fn expected(s: &str) -> Result<ExpectedRevision, String> {
    s.parse::<ExpectedRevision>().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse_with_units() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["", "5", "s", "0s", "1.5s", "-1s", "5 hours"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
        assert_eq!(bytes("256MiB"), Ok(256 << 20));
        assert_eq!(bytes("1GiB"), Ok(1 << 30));
        assert_eq!(bytes("2M"), Ok(2 << 20));
        assert_eq!(bytes("4096K"), Ok(4 << 20));
        assert_eq!(bytes("2097152"), Ok(2 << 20));
        for bad in [
            "",
            "MiB",
            "1KiB",
            "12TiB",
            "1.5GiB",
            "99999999999999999999G",
        ] {
            assert!(bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn layouts_and_expected_revisions_parse() {
        assert!(layout("default").is_ok());
        assert!(layout("seed").is_ok());
        assert!(layout("nonsense").is_err());
        assert_eq!(expected("any"), Ok(ExpectedRevision::Any));
        assert_eq!(expected("no-stream"), Ok(ExpectedRevision::NoStream));
        assert_eq!(expected("3"), Ok(ExpectedRevision::Exact(3)));
        assert!(expected("three").is_err());
    }
}
