//! PostgreSQL for tests: a new, empty database per test on the throwaway cluster that
//! `scripts/pg.sh start` runs (`scripts/test.sh` starts one for the whole suite).

/// The URL of a new database on the test cluster. Panics, naming the script that starts the
/// cluster, when `SWITCHYARD_TEST_PG_URL` is unset or its server does not answer: a PostgreSQL
/// test fails, it never skips.
pub fn database() -> String {
    switchyard::store::pg::test_database().unwrap_or_else(|e| panic!("{e}"))
}

/// Setting this to `postgres` runs every stack on a new PostgreSQL database instead of SQLite
/// (`SWITCHYARD_TEST_STORE=postgres cargo test … --test e2e -- spine::`). Tests that open the
/// SQLite file themselves do not apply.
pub const STORE_VAR: &str = "SWITCHYARD_TEST_STORE";

/// The `storage.url` of a new stack: a new database when [`STORE_VAR`] asks for PostgreSQL.
pub fn stack_database() -> Option<String> {
    (std::env::var(STORE_VAR).as_deref() == Ok("postgres")).then(database)
}
