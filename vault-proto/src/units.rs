//! Byte sizes as people write them (`512`, `512KiB`, `12MiB`, `1GiB`, `1GB`, `10 GiB`), and
//! counts as people read them (`1 file`, `2 files`).

/// `n` and the noun for that many (`1 entry`, `2 entries`, `0 files`).
pub fn plural<N: TryInto<u64> + Copy + std::fmt::Display>(n: N, one: &str, many: &str) -> String {
    let is_one = n.try_into().ok() == Some(1);
    format!("{n} {}", if is_one { one } else { many })
}

/// Parses a size in bytes; binary (KiB, MiB, GiB, TiB) and decimal (KB, MB, GB, TB) units.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad =
        || format!("invalid size {text:?}: use bytes or a unit, e.g. 512KiB, 12MiB, 1GiB or 1GB");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Formats a byte count with a binary unit, e.g. `1.5 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512").expect("ok"), 512);
        assert_eq!(parse_size("512KiB").expect("ok"), 512 * 1024);
        assert_eq!(parse_size("12MiB").expect("ok"), 12 << 20);
        assert_eq!(parse_size("1GiB").expect("ok"), 1 << 30);
        assert_eq!(parse_size("1GB").expect("ok"), 1_000_000_000);
        assert_eq!(parse_size("10 gib").expect("ok"), 10 << 30);
        for bad in ["", "GiB", "1.5GiB", "-1", "12XB", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert!(parse_size("99999999TiB").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(10 << 30), "10.0 GiB");
    }
}
