//! Byte counts, rates and durations as people write them.

/// What kind of quantity was asked for (named in errors, with examples).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    Rate,
    Size,
    Duration,
}

impl Quantity {
    fn example(self) -> &'static str {
        match self {
            Quantity::Rate => "a byte count (e.g. 500k, 10M, 1Gi)",
            Quantity::Size => "a size (e.g. 500M, 20G)",
            Quantity::Duration => "a duration (e.g. 90s, 10m, 24h, 7d)",
        }
    }

    fn units(self) -> &'static str {
        match self {
            Quantity::Rate => "k, M, G, Ki, Mi or Gi",
            Quantity::Size => "k, M, G or T",
            Quantity::Duration => "s, m, h or d",
        }
    }
}

/// Why a quantity as written cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnitError {
    #[error("{input:?} is not {}", .kind.example())]
    NotANumber { input: String, kind: Quantity },
    #[error("{input:?}: unknown unit {unit:?} (use {})", .kind.units())]
    UnknownUnit {
        input: String,
        unit: String,
        kind: Quantity,
    },
    #[error("{input:?} is out of range")]
    OutOfRange { input: String },
}

fn not_a_number(s: &str, kind: Quantity) -> UnitError {
    UnitError::NotANumber {
        input: s.to_owned(),
        kind,
    }
}

fn unknown_unit(s: &str, unit: &str, kind: Quantity) -> UnitError {
    UnitError::UnknownUnit {
        input: s.to_owned(),
        unit: unit.to_owned(),
        kind,
    }
}

fn out_of_range(s: &str) -> UnitError {
    UnitError::OutOfRange {
        input: s.to_owned(),
    }
}

/// Parses `1000`, `500k`, `10M`, `1G`, `64Ki`, `8MiB/s`… into bytes (per second).
pub fn parse_rate(s: &str) -> Result<u64, UnitError> {
    let t = s.trim().trim_end_matches("/s").trim_end_matches(['B', 'b']);
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| not_a_number(s, Quantity::Rate))?;
    let mult: f64 = match unit {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" | "m" => 1e6,
        "G" | "g" => 1e9,
        "Ki" | "KI" | "ki" => 1024.0,
        "Mi" | "MI" | "mi" => 1024.0 * 1024.0,
        "Gi" | "GI" | "gi" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(unknown_unit(s, unit, Quantity::Rate));
        }
    };
    let v = n * mult;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(out_of_range(s));
    }
    Ok(v as u64)
}

/// Parses a size of storage: `20G` and `20GiB` are 20 GiB (k, M, G, T in powers of
/// 1024, as disks are counted by the tools people compare), `1500` is bytes.
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let t = s
        .trim()
        .trim_end_matches(['B', 'b'])
        .trim_end_matches(['i', 'I']);
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| not_a_number(s, Quantity::Size))?;
    let exp = match unit {
        "" => 0,
        "k" | "K" => 1,
        "m" | "M" => 2,
        "g" | "G" => 3,
        "t" | "T" => 4,
        _ => return Err(unknown_unit(s, unit, Quantity::Size)),
    };
    let v = n * 1024f64.powi(exp);
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(out_of_range(s));
    }
    Ok(v as u64)
}

/// Parses `90s`, `10m`, `24h`, `7d` (a bare number is seconds) into seconds.
pub fn parse_duration(s: &str) -> Result<u64, UnitError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| not_a_number(s, Quantity::Duration))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(unknown_unit(s, unit, Quantity::Duration)),
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| out_of_range(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_count_in_powers_of_1024() {
        assert_eq!(parse_size("20G"), Ok(20 << 30));
        assert_eq!(parse_size("20GiB"), Ok(20 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1500"), Ok(1500));
        assert!(parse_size("3X").is_err() && parse_size("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Ok(86_400));
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("1000"), Ok(1000));
        assert_eq!(parse_rate("500k"), Ok(500_000));
        assert_eq!(parse_rate("10M"), Ok(10_000_000));
        assert_eq!(parse_rate("1MiB/s"), Ok(1 << 20));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10X").is_err());
        assert_eq!(
            parse_rate("10X").map_err(|e| e.to_string()),
            Err(r#""10X": unknown unit "X" (use k, M, G, Ki, Mi or Gi)"#.to_owned())
        );
    }
}
