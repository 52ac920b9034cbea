//! Shared revisions (`shared_revisions`): one counter per kind of state that every host on the
//! database holds in memory (connector versions, integrations). The write that changes such
//! state bumps its counter in the same transaction; each host polls [`Store::revisions`] (one
//! small read) and reloads what changed. A NOTIFY could wake that poll sooner; the poll stays
//! the fallback.

use super::sql::{args, Db};
use super::{Result, Store};

/// A kind of shared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::store) enum Topic {
    /// Uploaded components (`connector_blobs`) and which version serves (`deployments`).
    Connectors,
    /// Integrations changed through the admin API (`integrations`).
    Integrations,
}

impl Topic {
    fn name(self) -> &'static str {
        match self {
            Topic::Connectors => "connectors",
            Topic::Integrations => "integrations",
        }
    }
}

/// The counters as one host last read them; a difference means: reload that part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Revisions {
    pub connectors: i64,
    pub integrations: i64,
}

/// Bumps `topic`'s counter; call it inside the transaction that changes the state.
pub(in crate::store) fn bump(db: &dyn Db, topic: Topic) -> Result<()> {
    db.execute(
        "INSERT INTO shared_revisions (topic, revision) VALUES (?1, 1)
         ON CONFLICT (topic) DO UPDATE SET revision = shared_revisions.revision + 1",
        args![topic.name()],
    )?;
    Ok(())
}

impl Store {
    /// The shared revisions now (0 for a topic never changed).
    pub fn revisions(&self) -> Result<Revisions> {
        let rows = self.db(|db| db.query("SELECT topic, revision FROM shared_revisions", &[]))?;
        let mut revisions = Revisions::default();
        for row in rows {
            let revision = row.int(1)?;
            match row.text(0)?.as_str() {
                "connectors" => revisions.connectors = revision,
                "integrations" => revisions.integrations = revision,
                _ => {}
            }
        }
        Ok(revisions)
    }
}

#[cfg(test)]
mod tests {
    use super::{bump, Topic};

    #[test]
    fn each_topic_counts_its_own_changes() {
        crate::store::testing::on_both(|s| {
            let start = s.revisions().unwrap();
            assert_eq!(start.connectors, 0);
            s.transaction(|db| bump(db, Topic::Connectors)).unwrap();
            s.transaction(|db| bump(db, Topic::Connectors)).unwrap();
            s.transaction(|db| bump(db, Topic::Integrations)).unwrap();
            let now = s.revisions().unwrap();
            assert_eq!((now.connectors, now.integrations), (2, 1));
        });
    }
}
