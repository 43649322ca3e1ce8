//! What a sweep is asked for on the command line: seeds (`0..9`, `3`, `0,2,5`) and grid
//! axes (`key=v1,v2,…`), checked before anything is created.

use crate::{Error, Result};

/// The most points one sweep may have: beyond that a typo (`0..99999`) is likelier
/// than an intent, and the manifest and the directory listing become unwieldy.
pub const MAX_POINTS: usize = 10_000;

/// `--seeds`: `A..B` is A to B inclusive (`0..9` is ten seeds), `A` one seed, `A,B,C`
/// a list; pieces combine (`0..4,10`). Duplicates are refused.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>> {
    let bad = |why: String| {
        Error::Usage(format!(
            "--seeds {text}: {why}; give a range `0..9` (both ends included), one seed `3`, or a list `0,2,5`"
        ))
    };
    let number = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| bad(format!("`{}` is not a non-negative integer", s.trim())))
    };
    let mut seeds = vec![];
    if text.trim().is_empty() {
        return Err(bad("no seeds given".into()));
    }
    for piece in text.split(',') {
        match piece.split_once("..") {
            Some((a, b)) => {
                let b = b.strip_prefix('=').unwrap_or(b);
                let (a, b) = (number(a)?, number(b)?);
                if b < a {
                    return Err(bad(format!(
                        "the range {a}..{b} is reversed (write {b}..{a})"
                    )));
                }
                if (b - a) as usize >= MAX_POINTS {
                    return Err(bad(format!(
                        "{} seeds is more than one sweep takes ({MAX_POINTS})",
                        b - a + 1
                    )));
                }
                seeds.extend(a..=b);
            }
            None => seeds.push(number(piece)?),
        }
    }
    let mut sorted = seeds.clone();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(bad(format!("seed {} is given twice", w[0])));
    }
    Ok(seeds)
}

/// One `--grid key=v1,v2,…` axis: the values are TOML values, split on commas outside
/// brackets and quotes (`dynamics=["gd","sgd"],["gd"]` is two values).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GridAxis {
    pub key: String,
    pub values: Vec<String>,
}

pub fn parse_grid(text: &str) -> Result<GridAxis> {
    let bad = |why: &str| {
        Error::Usage(format!(
            "--grid {text}: {why}; write --grid KEY=V1,V2,… (e.g. --grid fashion_mnist.eta=0.05,0.07)"
        ))
    };
    let (key, values) = text.split_once('=').ok_or_else(|| bad("no `=`"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(bad("the key is empty"));
    }
    if key == "seed" {
        return Err(Error::Usage(format!(
            "--grid {text}: seeds are given with --seeds (e.g. --seeds 0..9), not as a grid axis"
        )));
    }
    let values = split_values(values);
    if values.iter().any(|v| v.is_empty()) {
        return Err(bad("a value is empty"));
    }
    let mut seen = values.clone();
    seen.sort();
    if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
        return Err(bad(&format!("the value {} is given twice", w[0])));
    }
    Ok(GridAxis {
        key: key.to_string(),
        values,
    })
}

/// Splits on commas at depth 0 (outside `[…]`, `{…}` and quotes).
fn split_values(text: &str) -> Vec<String> {
    let (mut out, mut current, mut depth, mut quote) = (vec![], String::new(), 0i32, None);
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                out.push(current.trim().to_string());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    out.push(current.trim().to_string());
    out
}

/// Every combination of the axes' values, the first axis varying slowest.
pub fn combinations(axes: &[GridAxis]) -> Vec<Vec<(String, String)>> {
    axes.iter().fold(vec![vec![]], |acc, axis| {
        acc.iter()
            .flat_map(|prefix| {
                axis.values.iter().map(move |v| {
                    let mut c = prefix.clone();
                    c.push((axis.key.clone(), v.clone()));
                    c
                })
            })
            .collect()
    })
}

/// A point's directory name: its index, seed and grid values, in characters every file
/// system and shell takes (`p007-seed3-eta0.05`).
pub fn point_dir_name(index: usize, seed: u64, settings: &[(String, String)]) -> String {
    let mut name = format!("p{index:03}-seed{seed}");
    for (key, value) in settings {
        let short = key.rsplit('.').next().unwrap_or(key);
        let clean: String = format!("{short}{value}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        name.push('-');
        name.push_str(clean.trim_matches('_'));
    }
    name.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds() {
        assert_eq!(parse_seeds("0..9").unwrap(), (0..10).collect::<Vec<_>>());
        assert_eq!(parse_seeds("3").unwrap(), vec![3]);
        assert_eq!(parse_seeds("0,2,5").unwrap(), vec![0, 2, 5]);
        assert_eq!(parse_seeds("0..2,10").unwrap(), vec![0, 1, 2, 10]);
        assert_eq!(parse_seeds("0..=2").unwrap(), vec![0, 1, 2]);
        for bad in ["", "9..0", "a..3", "-1", "1,1", "0..2,2", "0..100000"] {
            assert!(
                matches!(parse_seeds(bad), Err(Error::Usage(_))),
                "{bad:?} accepted"
            );
        }
        let Err(Error::Usage(m)) = parse_seeds("9..0") else {
            unreachable!()
        };
        assert!(m.contains("reversed"), "{m}");
    }

    #[test]
    fn grid() {
        let g = parse_grid("fashion_mnist.eta=0.05, 0.07").unwrap();
        assert_eq!(g.values, vec!["0.05", "0.07"]);
        let g = parse_grid(r#"dynamics=["gd","sgd"],["gd"]"#).unwrap();
        assert_eq!(g.values, vec![r#"["gd","sgd"]"#, r#"["gd"]"#]);
        for bad in ["eta", "=1,2", "eta=1,,2", "eta=1,1", "seed=1,2"] {
            assert!(parse_grid(bad).is_err(), "{bad:?} accepted");
        }
        let axes = [parse_grid("a=1,2").unwrap(), parse_grid("b=x,y,z").unwrap()];
        let c = combinations(&axes);
        assert_eq!(c.len(), 6);
        assert_eq!(
            c[1],
            vec![("a".into(), "1".into()), ("b".into(), "y".into())]
        );
        assert_eq!(combinations(&[]), vec![Vec::<(String, String)>::new()]);
        assert_eq!(point_dir_name(7, 3, &c[1]), "p007-seed3-a1-by".to_string());
        assert_eq!(
            point_dir_name(0, 0, &[("d".into(), r#"["gd"]"#.into())]),
            "p000-seed0-d__gd"
        );
    }
}
