//! Wall-clock helpers: unix time, RFC 3339 formatting and parsing (UTC only; no calendar crate
//! needed for the few places that show or read a timestamp).

use serde::Deserialize;

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    crate::store::now_ms() / 1000
}

/// `unix_secs` as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(unix_secs: i64) -> String {
    let (y, m, d) = civil_from_days(unix_secs.div_euclid(86_400));
    let sod = unix_secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Parses an RFC 3339 date-time with an offset (`2030-01-01T00:00:00Z`, `...+02:00`) to unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let dt: toml::value::Datetime = text.trim().parse().ok()?;
    datetime_secs(&dt)
}

fn datetime_secs(dt: &toml::value::Datetime) -> Option<i64> {
    let (date, time, offset) = (dt.date?, dt.time?, dt.offset?);
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let local = days * 86_400
        + i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second);
    let offset_secs = match offset {
        toml::value::Offset::Z => 0,
        toml::value::Offset::Custom { minutes } => i64::from(minutes) * 60,
    };
    Some(local - offset_secs)
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
        Some(toml::Value::Datetime(dt)) => datetime_secs(&dt)
            .map(Some)
            .ok_or_else(|| D::Error::custom("the date-time needs a time and an offset (e.g. Z)")),
        Some(other) => Err(D::Error::custom(format!(
            "expected unix seconds or an RFC 3339 date-time, got {other}"
        ))),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
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
}
