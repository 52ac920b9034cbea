//! Wall-clock helpers: unix time, RFC 3339 formatting and parsing (the `time` crate).

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Milliseconds since the Unix epoch (0 if the system clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    now_ms() / 1000
}

/// `unix_secs` as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(unix_secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix_secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        // Out of the representable range (years beyond ±9999): show the raw number.
        .unwrap_or_else(|| unix_secs.to_string())
}

/// Parses an RFC 3339 date-time with an offset (`2030-01-01T00:00:00Z`, `...+02:00`) to unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text.trim(), &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// Serde helper: an optional instant written as unix seconds, RFC 3339 text or a TOML datetime.
pub fn deserialize_opt_unix_secs<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    let value = Option::<toml::Value>::deserialize(d)?;
    match value {
        None => Ok(None),
        Some(toml::Value::Integer(secs)) => Ok(Some(secs)),
        Some(toml::Value::String(s)) => parse_rfc3339(&s).map(Some).ok_or_else(|| {
            D::Error::custom(format!("`{s}` is not an RFC 3339 date-time with an offset"))
        }),
        Some(toml::Value::Datetime(dt)) => parse_rfc3339(&dt.to_string())
            .map(Some)
            .ok_or_else(|| D::Error::custom("the date-time needs a time and an offset (e.g. Z)")),
        Some(other) => Err(D::Error::custom(format!(
            "expected unix seconds or an RFC 3339 date-time, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_and_honours_offsets() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(
            parse_rfc3339("2000-02-29T02:00:00+02:00"),
            Some(951_782_400)
        );
        assert_eq!(parse_rfc3339("2000-02-29"), None);
        let t = 1_700_000_123;
        assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
    }

    #[test]
    fn an_instant_reads_from_seconds_text_or_a_toml_datetime() {
        #[derive(serde::Deserialize)]
        struct At {
            #[serde(deserialize_with = "deserialize_opt_unix_secs")]
            at: Option<i64>,
        }
        let read = |text: &str| toml::from_str::<At>(text).map(|a| a.at);
        assert_eq!(read("at = 951782400").ok(), Some(Some(951_782_400)));
        assert_eq!(
            read("at = \"2000-02-29T00:00:00Z\"").ok(),
            Some(Some(951_782_400))
        );
        assert_eq!(
            read("at = 2000-02-29T01:00:00+01:00").ok(),
            Some(Some(951_782_400))
        );
        assert!(read("at = 2000-02-29").is_err(), "a date alone is refused");
    }
}
