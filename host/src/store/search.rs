//! Finding events for operators: one filter ([`EventFilter`]) that the events list, the bulk
//! replay ([`super::replay`]) and the per-candidate timeline share, newest first with a cursor
//! (the last id seen). Portable SQL: `?N` parameters, `LIKE … ESCAPE` for text (no `instr`),
//! case-insensitive for ASCII on both backends (`LOWER` on both sides: SQLite's `LIKE` already
//! ignores ASCII case, PostgreSQL's does not).

use serde::{Deserialize, Serialize};

use super::queue::event_row;
use super::sql::{Db, Value};
use super::{Event, EventState, Result, Store};

/// Which events: every field set narrows the match (all must hold).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    /// Only these integrations (the admin API resolves `integration`, `connector` and `ats` to
    /// this list); `None`: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrations: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<EventState>,
    /// Text in the payload: a candidate's or opportunity's id, an email, an order ref.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Text in the last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Received at or after (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    /// Received before (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern that matches `text` anywhere.
fn contains(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl EventFilter {
    /// The `WHERE` clause (starting with `WHERE 1 = 1`) and its parameters, numbered from 1.
    pub(super) fn sql(&self) -> (String, Vec<Value>) {
        let mut sql = String::from("WHERE 1 = 1");
        let mut args: Vec<Value> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, v: Value| {
            args.push(v);
            sql.push_str(&clause.replace("?", &format!("?{}", args.len())));
        };
        if let Some(ids) = &self.integrations {
            if ids.is_empty() {
                sql.push_str(" AND 1 = 0");
            } else {
                sql.push_str(" AND integration IN (");
                for (n, id) in ids.iter().enumerate() {
                    let sep = if n == 0 { "?" } else { ", ?" };
                    arg(&mut sql, sep, id.clone().into());
                }
                sql.push(')');
            }
        }
        if let Some(state) = self.state {
            arg(
                &mut sql,
                " AND state = ?",
                state.as_str().to_string().into(),
            );
        }
        if let Some(text) = self.text.as_deref().filter(|t| !t.is_empty()) {
            arg(
                &mut sql,
                " AND EXISTS (SELECT 1 FROM event_bodies b WHERE b.event_id = events.id
                     AND LOWER(b.body) LIKE LOWER(CAST(? AS TEXT)) ESCAPE '\\')",
                contains(text).into(),
            );
        }
        if let Some(text) = self.error.as_deref().filter(|t| !t.is_empty()) {
            arg(
                &mut sql,
                " AND LOWER(last_error) LIKE LOWER(CAST(? AS TEXT)) ESCAPE '\\'",
                contains(text).into(),
            );
        }
        if let Some(t) = self.since_ms {
            arg(&mut sql, " AND received_at >= ?", t.into());
        }
        if let Some(t) = self.until_ms {
            arg(&mut sql, " AND received_at < ?", t.into());
        }
        (sql, args)
    }
}

/// Events matching `filter` with an id below `before`, newest first, at most `limit`.
pub(super) fn search_on(
    db: &dyn Db,
    filter: &EventFilter,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<Event>> {
    let (mut clause, mut args) = filter.sql();
    if let Some(before) = before {
        args.push(before.into());
        clause.push_str(&format!(" AND id < ?{}", args.len()));
    }
    args.push(i64::from(limit).into());
    let sql = format!(
        "SELECT {} FROM events {clause} ORDER BY id DESC LIMIT ?{}",
        super::queue::EVENT_COLS,
        args.len()
    );
    db.query(&sql, &args)?.iter().map(event_row).collect()
}

/// How many events match `filter`.
pub(super) fn count_on(db: &dyn Db, filter: &EventFilter) -> Result<i64> {
    let (clause, args) = filter.sql();
    let sql = format!("SELECT COUNT(*) FROM events {clause}");
    db.query_one(&sql, &args)?.int(0)
}

impl Store {
    /// Events matching `filter`, newest first, below the id `before` (the cursor: the last id
    /// of the previous page), at most `limit`.
    pub fn search_events(
        &self,
        filter: &EventFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Event>> {
        self.db(|db| search_on(db, filter, before, limit))
    }

    /// How many events match `filter`.
    pub fn count_events(&self, filter: &EventFilter) -> Result<i64> {
        self.db(|db| count_on(db, filter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::on_both;

    #[test]
    fn every_field_narrows_and_the_cursor_pages_newest_first() {
        on_both(|s| {
            for n in 0..5 {
                let integration = if n % 2 == 0 { "a" } else { "b" };
                let payload = format!("{{\"opportunityId\":\"opp_{n}\"}}");
                s.enqueue(integration, "k", &n.to_string(), &payload)
                    .unwrap();
            }
            // A wildcard in the text is taken literally.
            s.enqueue("a", "k", "w", "{\"opportunityId\":\"100%\"}")
                .unwrap();
            let only_a = EventFilter {
                integrations: Some(vec!["a".into()]),
                ..EventFilter::default()
            };
            assert_eq!(s.count_events(&only_a).unwrap(), 4);
            let text = |t: &str| EventFilter {
                text: Some(t.into()),
                ..EventFilter::default()
            };
            assert_eq!(s.count_events(&text("opp_3")).unwrap(), 1);
            // ASCII case is ignored, on both backends.
            assert_eq!(s.count_events(&text("OPP_3")).unwrap(), 1);
            assert_eq!(s.count_events(&text("OPPORTUNITYID")).unwrap(), 6);
            assert_eq!(s.count_events(&text("0%")).unwrap(), 1);
            assert_eq!(s.count_events(&text("opp_%")).unwrap(), 0);
            let dead = EventFilter {
                state: Some(EventState::Dead),
                ..EventFilter::default()
            };
            assert_eq!(s.count_events(&dead).unwrap(), 0);
            let none = EventFilter {
                integrations: Some(vec![]),
                ..EventFilter::default()
            };
            assert_eq!(s.count_events(&none).unwrap(), 0);

            let all = EventFilter::default();
            let first = s.search_events(&all, None, 4).unwrap();
            let cursor = first.last().map(|e| e.id);
            let rest = s.search_events(&all, cursor, 4).unwrap();
            let ids: Vec<i64> = first.iter().chain(&rest).map(|e| e.id).collect();
            let mut sorted = ids.clone();
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            assert_eq!((ids.len(), &ids), (6, &sorted));
        });
    }
}
