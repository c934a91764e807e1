//! Durations as written in workflows: `"300ms"`, `"2s"`, `"1m"`, `"1h"`, `"1m30s"`.

use std::time::Duration;

/// Parses a duration; the error says what is accepted.
/// The duration someone who wrote `5 seconds` or `2 mins` meant.
fn suggest(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut words = text.split_whitespace().peekable();
    while let Some(word) = words.next() {
        let (number, unit) = match word.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
            Some(0) => return None,
            Some(i) => (&word[..i], word[i..].to_string()),
            None => (word, words.next()?.to_string()),
        };
        number.parse::<f64>().ok()?;
        let unit = match unit.to_ascii_lowercase().trim_end_matches([',', '.']) {
            "ms" | "msec" | "msecs" | "millis" | "millisecond" | "milliseconds" => "ms",
            "s" | "sec" | "secs" | "second" | "seconds" => "s",
            "m" | "min" | "mins" | "minute" | "minutes" => "m",
            "h" | "hr" | "hrs" | "hour" | "hours" => "h",
            "d" | "day" | "days" => "d",
            _ => return None,
        };
        out.push_str(number);
        out.push_str(unit);
        if words.peek() == Some(&"and") {
            words.next();
        }
    }
    (!out.is_empty()).then_some(out)
}

pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || match suggest(text) {
        Some(near) => format!("{text:?} is not a duration; did you mean \"{near}\"?"),
        None => format!(
            "{text:?} is not a duration; write it like \"300ms\", \"2s\", \"1m30s\" or \"1h\""
        ),
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let seconds = match unit {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            "d" => number * 86400.0,
            _ => return Err(bad()),
        };
        total += Duration::try_from_secs_f64(seconds).map_err(|_| bad())?;
    }
    Ok(total)
}

/// Formats a duration for people: `850ms`, `2.3s`, `4m05s`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1.5h").unwrap(), Duration::from_secs(5400));
        for bad in ["", "5", "ms", "3 weeks", "-1s", "1x"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
