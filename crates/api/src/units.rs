//! How sizes read, the same on every screen: `0 B`, `812 KB`, `3.0 MB`, `1.1 GB`, `118 GB` (binary
//! multiples; one decimal below 100, none above). The dashboard's `bytes()` (ui/src/lib/format.ts) follows
//! the same rule, held by the same cases in both tests.

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else if v >= 100.0 {
        format!("{v:.0} {}", UNITS[i])
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_the_same_everywhere() {
        // The same cases as format.test.ts.
        for (n, want) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KB"),
            (3 << 20, "3.0 MB"),
            (150 << 20, "150 MB"),
            (1_181_116_006, "1.1 GB"),
            (128 << 30, "128 GB"),
        ] {
            assert_eq!(super::bytes(n), want, "{n}");
        }
    }
}
