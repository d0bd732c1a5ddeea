//! Medians, ranges and ratios of repeated measurements, and the loop that takes them:
//! warm-up rounds first (discarded), then rounds in which every variant of a
//! comparison runs once, in an order that rotates from round to round.

use std::future::Future;

use serde::Serialize;

/// Median, min and max of a set of runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Stat {
    /// The statistics of `values` (none: all NaN, 0 runs).
    pub fn of(values: &[f64]) -> Stat {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Stat {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                runs: 0,
            };
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if !n.is_multiple_of(2) {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Stat {
            median,
            min: v[0],
            max: v[n - 1],
            runs: n,
        }
    }
}

/// Per-round ratios of two series measured in the same rounds (`f(ours, theirs)`).
pub fn ratio(ours: &[f64], theirs: &[f64], f: impl Fn(f64, f64) -> f64) -> Stat {
    let per_round: Vec<f64> = ours.iter().zip(theirs).map(|(a, b)| f(*a, *b)).collect();
    Stat::of(&per_round)
}

/// Runs `warmup + rounds` rounds; in each, every variant once, starting at a
/// different variant each round (round `r` starts with variant `r % n`), so that no
/// variant always runs first or right after the same neighbour. Returns, per variant,
/// the values of the measured rounds, in round order: index `i` of every series
/// comes from the same round, which is what [`ratio`] pairs.
pub async fn alternate<V, F, Fut>(
    variants: &[V],
    warmup: usize,
    rounds: usize,
    mut run: F,
) -> anyhow::Result<Vec<Vec<f64>>>
where
    V: Copy,
    F: FnMut(V, usize) -> Fut,
    Fut: Future<Output = anyhow::Result<f64>>,
{
    let n = variants.len();
    let mut out = vec![Vec::with_capacity(rounds); n];
    for round in 0..warmup + rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let value = run(variants[i], round).await?;
            if round >= warmup {
                out[i].push(value);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let s = Stat::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 3.0, 3));
        assert_eq!(Stat::of(&[1.0, 2.0, 3.0, 10.0]).median, 2.5);
        assert_eq!(Stat::of(&[]).runs, 0);
    }

    #[test]
    fn ratios_pair_rounds() {
        let r = ratio(&[2.0, 4.0, 9.0], &[1.0, 1.0, 3.0], |a, b| a / b);
        assert_eq!((r.median, r.min, r.max), (3.0, 2.0, 4.0));
    }

    #[test]
    fn alternation_rotates_and_drops_warmup() {
        let order = std::cell::RefCell::new(Vec::new());
        let out = futures::executor::block_on(alternate(&['a', 'b', 'c'], 1, 2, |v, r| {
            order.borrow_mut().push((r, v));
            async move { Ok(r as f64) }
        }))
        .unwrap();
        assert_eq!(
            order.into_inner(),
            [
                (0, 'a'),
                (0, 'b'),
                (0, 'c'),
                (1, 'b'),
                (1, 'c'),
                (1, 'a'),
                (2, 'c'),
                (2, 'a'),
                (2, 'b')
            ]
        );
        assert_eq!(out, vec![vec![1.0, 2.0]; 3]);
    }
}
