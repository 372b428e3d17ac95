//! Go `time.ParseDuration` syntax, which cert-manager's `duration` and `renewBefore` fields use
//! (`"2160h0m0s"`, `"1h30m"`, `"90m"`, `"1.5h"`, `"300ms"`).
//!
//! Written here rather than taken from a crate: the one crate that ports it (`go-parse-duration` 0.1) returns
//! signed nanoseconds with a string-only error and has not had a release in years; certificate durations
//! must be non-negative, so we return `std::time::Duration` and an error that says what is wrong. The rules
//! follow Go's exactly: an optional sign, then one or more `<decimal><unit>` terms; units `ns`, `us`, `µs`,
//! `μs`, `ms`, `s`, `m`, `h`; a bare `0` is zero; every other number needs a unit; the total must fit in an
//! `int64` of nanoseconds (about 292 years). Fractions are computed exactly (Go rounds through `float64`,
//! which can differ in the last nanosecond for fractions with more than ~15 significant digits).

use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}: empty")]
    Empty(String),
    #[error("invalid duration {0:?}: expected a number")]
    ExpectedNumber(String),
    #[error(
        "invalid duration {input:?}: missing unit after {number:?} (use h, m, s, ms, us or ns)"
    )]
    MissingUnit { input: String, number: String },
    #[error("invalid duration {input:?}: unknown unit {unit:?} (use h, m, s, ms, us or ns)")]
    UnknownUnit { input: String, unit: String },
    #[error("invalid duration {0:?}: too large")]
    Overflow(String),
    #[error("invalid duration {0:?}: negative durations are not allowed here")]
    Negative(String),
}

/// The largest duration Go can represent: `math.MaxInt64` nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parse a Go duration string. Negative durations (other than `-0…`) are an error.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let mut rest = input;
    let mut negative = false;
    if let Some(r) = rest.strip_prefix('-') {
        negative = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(DurationError::Empty(input.to_owned()));
    }

    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            // No digits at all: "h", ".s", "-.s".
            return Err(DurationError::ExpectedNumber(input.to_owned()));
        }
        let unit_len = after_number
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(after_number.len(), |(i, _)| i);
        let (unit, after_unit) = after_number.split_at(unit_len);
        let number = &rest[..rest.len() - after_number.len()];
        if unit.is_empty() {
            return Err(DurationError::MissingUnit {
                input: input.to_owned(),
                number: number.to_owned(),
            });
        }
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => {
                return Err(DurationError::UnknownUnit {
                    input: input.to_owned(),
                    unit: unit.to_owned(),
                });
            }
        };
        let overflow = || DurationError::Overflow(input.to_owned());
        let whole = if int_part.is_empty() {
            0
        } else {
            // More than 39 digits cannot fit a u128 and is far past the limit anyway.
            int_part.parse::<u128>().map_err(|_| overflow())?
        };
        let mut term = whole.checked_mul(unit_nanos).ok_or_else(overflow)?;
        if term > MAX_NANOS {
            return Err(overflow());
        }
        // Digits beyond the 19th cannot change the result by a whole nanosecond for units up to an hour
        // (1 h = 3.6e12 ns), so they are dropped to keep the arithmetic in range.
        let significant = &frac_part[..frac_part.len().min(19)];
        if !significant.is_empty() {
            let digits: u128 = significant.parse().map_err(|_| overflow())?;
            let scale = 10u128.pow(significant.len() as u32);
            term += digits * unit_nanos / scale;
        }
        total = total.checked_add(term).ok_or_else(overflow)?;
        if total > MAX_NANOS {
            return Err(overflow());
        }
        rest = after_unit;
    }
    if negative && total != 0 {
        return Err(DurationError::Negative(input.to_owned()));
    }
    let nanos = u64::try_from(total).map_err(|_| DurationError::Overflow(input.to_owned()))?;
    Ok(Duration::from_nanos(nanos))
}

/// Format a duration the way Go's `Duration.String()` does for whole seconds and above (`2160h0m0s`,
/// `1h30m0s`, `45s`), which is what cert-manager writes back; sub-second parts are printed as fractional
/// seconds (`1.5s`), and zero as `0s`.
pub fn format_go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let seconds = if nanos == 0 {
        format!("{s}s")
    } else {
        let frac = format!("{nanos:09}");
        format!("{s}.{}s", frac.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{seconds}")
    } else if m > 0 {
        format!("{m}m{seconds}")
    } else {
        seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_go_duration(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn parses_what_cert_manager_writes() {
        assert_eq!(ok("2160h0m0s"), Duration::from_secs(2160 * 3600));
        assert_eq!(ok("360h"), Duration::from_secs(360 * 3600));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("90m"), Duration::from_secs(5400));
        assert_eq!(ok("45s"), Duration::from_secs(45));
    }

    #[test]
    fn parses_sub_second_units_and_their_spellings() {
        assert_eq!(ok("300ms"), Duration::from_millis(300));
        assert_eq!(ok("10us"), Duration::from_micros(10));
        assert_eq!(ok("10\u{b5}s"), Duration::from_micros(10));
        assert_eq!(ok("10\u{3bc}s"), Duration::from_micros(10));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("1s500ms"), Duration::from_millis(1500));
    }

    #[test]
    fn parses_fractions_exactly() {
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1.s"), Duration::from_secs(1));
        assert_eq!(ok("0.000000001s"), Duration::from_nanos(1));
        assert_eq!(ok("1.0000000000000000000001h"), Duration::from_secs(3600));
    }

    #[test]
    fn zero_needs_no_unit_but_other_numbers_do() {
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("+0"), Duration::ZERO);
        assert_eq!(ok("-0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(
            parse_go_duration("10"),
            Err(DurationError::MissingUnit {
                input: "10".into(),
                number: "10".into()
            })
        );
        assert!(matches!(
            parse_go_duration("1h30"),
            Err(DurationError::MissingUnit { .. })
        ));
    }

    #[test]
    fn rejects_unknown_units_naming_the_unit() {
        let err = parse_go_duration("90d").err();
        assert_eq!(
            err,
            Some(DurationError::UnknownUnit {
                input: "90d".into(),
                unit: "d".into()
            })
        );
        assert_eq!(
            err.map(|e| e.to_string()).unwrap_or_default(),
            "invalid duration \"90d\": unknown unit \"d\" (use h, m, s, ms, us or ns)"
        );
        assert!(matches!(
            parse_go_duration("1H"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_go_duration("1 h"),
            Err(DurationError::UnknownUnit { .. })
        ));
    }

    #[test]
    fn rejects_empty_and_numberless_input() {
        assert_eq!(parse_go_duration(""), Err(DurationError::Empty("".into())));
        assert_eq!(
            parse_go_duration("-"),
            Err(DurationError::Empty("-".into()))
        );
        assert!(matches!(
            parse_go_duration("h"),
            Err(DurationError::ExpectedNumber(_))
        ));
        assert!(matches!(
            parse_go_duration(".s"),
            Err(DurationError::ExpectedNumber(_))
        ));
        assert!(matches!(
            parse_go_duration("1h "),
            Err(DurationError::UnknownUnit { .. })
        ));
    }

    #[test]
    fn rejects_negative_durations() {
        assert_eq!(
            parse_go_duration("-1h"),
            Err(DurationError::Negative("-1h".into()))
        );
    }

    #[test]
    fn accepts_go_maximum_and_rejects_beyond_it() {
        // math.MaxInt64 ns is 2562047h47m16.854775807s.
        assert_eq!(
            ok("9223372036854775807ns"),
            Duration::from_nanos(i64::MAX as u64)
        );
        assert_eq!(
            ok("2562047h47m16.854775807s"),
            Duration::from_nanos(i64::MAX as u64)
        );
        for s in [
            "9223372036854775808ns",
            "2562048h",
            "99999999999999999999999999999999999999999h",
            "2562047h47m16.854775808s",
        ] {
            assert_eq!(
                parse_go_duration(s),
                Err(DurationError::Overflow(s.into())),
                "{s}"
            );
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in [
            "µ",
            "1µ",
            "1.",
            "..",
            "1..2s",
            "1e3s",
            "\u{0}",
            "1s\u{3bc}",
            "+",
            "--1s",
        ] {
            let _ = parse_go_duration(s);
        }
    }

    #[test]
    fn formats_like_go_duration_string() {
        assert_eq!(
            format_go_duration(Duration::from_secs(2160 * 3600)),
            "2160h0m0s"
        );
        assert_eq!(format_go_duration(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(format_go_duration(Duration::from_secs(61)), "1m1s");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
        assert_eq!(
            ok(&format_go_duration(Duration::from_secs(7777))),
            Duration::from_secs(7777)
        );
    }
}
