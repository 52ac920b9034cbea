-- Each event's inbound request headers (masked) and its attempts' outbound calls (store/traffic.rs).
CREATE TABLE inbound_requests (
    event_id INTEGER PRIMARY KEY,
    headers TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE TABLE outbound_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    target TEXT NOT NULL,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    status INTEGER,
    error TEXT,
    started_at INTEGER NOT NULL,
    took_ms INTEGER NOT NULL
);
CREATE INDEX outbound_calls_by_event ON outbound_calls (event_id, id);

-- Replay jobs: a filter's events replayed in the background (store/replay.rs).
CREATE TABLE replay_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    filter TEXT NOT NULL,
    include_done INTEGER NOT NULL,
    state TEXT NOT NULL,
    total INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE replay_job_events (
    job_id INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    step TEXT NOT NULL,
    PRIMARY KEY (job_id, event_id)
);
CREATE INDEX replay_jobs_by_state ON replay_jobs (state, id);

-- The console's sessions, sign-in counters and audit log (store/console.rs).
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    csrf TEXT NOT NULL,
    client TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
CREATE TABLE console_sign_ins (
    client TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    failures INTEGER NOT NULL
);
CREATE TABLE console_audit (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    before_value TEXT,
    after_value TEXT
);
