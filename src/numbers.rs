//! How numbers are written for people: in a fixed width (the dashboard's cells,
//! `inspect`'s columns) and with thousands grouped.

/// A number in at most 7 columns: 4 significant digits in [0.01, 10⁴), otherwise 3
/// with an SI suffix (12.3µ, 45.6k), scientific beyond the suffixes.
pub fn fit(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if (0.01..1e4).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        let s = format!("{v:.decimals$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
        return s;
    }
    const SUFFIXES: [(i32, &str); 10] = [
        (-15, "f"),
        (-12, "p"),
        (-9, "n"),
        (-6, "µ"),
        (-3, "m"),
        (3, "k"),
        (6, "M"),
        (9, "G"),
        (12, "T"),
        (15, "P"),
    ];
    let exp3 = (a.log10() / 3.0).floor() as i32 * 3;
    match SUFFIXES.iter().find(|(e, _)| *e == exp3) {
        Some((e, suffix)) => {
            let m = v / 10f64.powi(*e);
            // Rounding may carry to 1000: the next suffix then.
            let decimals = (2 - m.abs().log10().floor() as i32).max(0) as usize;
            let s = format!("{m:.decimals$}");
            if s.trim_start_matches('-').starts_with("1000") {
                return fit(v.signum() * 10f64.powi(e + 3));
            }
            format!("{s}{suffix}")
        }
        None => format!("{v:.0e}"),
    }
}

/// An integer with its thousands grouped by commas (3,500; 15,000).
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_fit_seven_columns_and_keep_their_value() {
        let cases = [
            (0.1005, "0.1005"),
            (0.8123456, "0.8123"),
            (2.0e-5, "20.0µ"),
            (1.234e-3, "1.23m"),
            (123456.0, "123k"),
            (999_999.0, "1.00M"),
            (-0.000_456, "-456µ"),
            (1234.4, "1234"),
            (0.0, "0"),
            (3.0e-21, "3e-21"),
        ];
        for (v, want) in cases {
            assert_eq!(fit(v), want, "{v}");
        }
        for k in -20..20 {
            for m in [1.0, 1.5, 9.999, -7.3] {
                let v = m * 10f64.powi(k);
                let s = fit(v);
                assert!(s.chars().count() <= 7, "{v} → {s}");
            }
        }
    }

    #[test]
    fn grouped_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(3500), "3,500");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }
}
