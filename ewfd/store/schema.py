"""The SQLite schema and its migrations (``PRAGMA user_version`` counts them)."""

from __future__ import annotations

_NOW = "(strftime('%Y-%m-%dT%H:%M:%fZ','now'))"
_UUID4 = (
    "(lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || "
    "substr(lower(hex(randomblob(2))), 2) || '-' || "
    "substr('89ab', 1 + (abs(random()) % 4), 1) || substr(lower(hex(randomblob(2))), 2) || "
    "'-' || lower(hex(randomblob(6))))"
)

# Outside programs insert into jobs: types SQLite would let through are refused at the
# INSERT, with an error naming the constraint, instead of reaching a worker.
_ISO = "{} GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9]*'"

# The finished rows, as the partial index jobs_finished names them: a query must repeat this
# term verbatim for SQLite to use the index (it cannot prove "status IN (?)" implies it).
FINISHED = "status IN ('completed','failed','cancelled')"

# Each entry moves the schema from version i to i+1; never edit one that has shipped.
MIGRATIONS: list[str] = [
    f"""
    CREATE TABLE jobs (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        uuid             TEXT NOT NULL UNIQUE DEFAULT {_UUID4},
        queue            TEXT DEFAULT 'default',
        workflow         TEXT NOT NULL,
        state            TEXT NOT NULL DEFAULT '{{}}' CHECK (typeof(state) = 'text'),
        display_name     TEXT NOT NULL DEFAULT '',
        metadata         TEXT NOT NULL DEFAULT '{{}}',
        status           TEXT NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending','running','completed','failed','cancelled')),
        current_step     INTEGER NOT NULL DEFAULT 0
                         CHECK (typeof(current_step) = 'integer' AND current_step >= 0),
        error            TEXT,
        created_at       TEXT NOT NULL DEFAULT {_NOW} CHECK ({_ISO.format('created_at')}),
        updated_at       TEXT NOT NULL DEFAULT {_NOW} CHECK ({_ISO.format('updated_at')}),
        steps            TEXT,
        not_before       REAL NOT NULL DEFAULT 0,
        lease_owner      TEXT,
        lease_expires    REAL,
        token            INTEGER NOT NULL DEFAULT 0,
        attempt          INTEGER NOT NULL DEFAULT 0,
        crashes          INTEGER NOT NULL DEFAULT 0,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        step_started_at  TEXT
    );
    CREATE INDEX jobs_pending ON jobs (queue, id) WHERE status = 'pending';
    CREATE INDEX jobs_status ON jobs (status, queue);
    CREATE INDEX jobs_running ON jobs (lease_owner) WHERE status = 'running';
    CREATE INDEX jobs_workflow ON jobs (workflow);

    CREATE TABLE history (
        id           INTEGER PRIMARY KEY,
        job_id       INTEGER NOT NULL,
        step         TEXT NOT NULL,
        step_index   INTEGER NOT NULL,
        attempt      INTEGER NOT NULL,
        started_at   TEXT NOT NULL,
        finished_at  TEXT,
        duration_ms  REAL,
        outcome      TEXT NOT NULL,
        error        TEXT,
        worker_pid   INTEGER
    );
    CREATE INDEX history_job ON history (job_id);

    CREATE TABLE templates (
        name        TEXT PRIMARY KEY,
        steps       TEXT NOT NULL,
        updated_at  TEXT NOT NULL DEFAULT {_NOW}
    );

    CREATE TABLE queues (
        name                 TEXT PRIMARY KEY,
        workers              INTEGER NOT NULL DEFAULT 1,
        poll_interval        REAL NOT NULL DEFAULT 0.1,
        auto_delete          INTEGER NOT NULL DEFAULT 0,
        delete_after         REAL NOT NULL DEFAULT 0,
        pop_timeout          REAL NOT NULL DEFAULT 0,
        lease                REAL NOT NULL DEFAULT 30,
        max_crashes          INTEGER NOT NULL DEFAULT 5,
        max_tasks_per_worker INTEGER NOT NULL DEFAULT 0,
        max_memory           INTEGER NOT NULL DEFAULT 0,
        paused               INTEGER NOT NULL DEFAULT 0,
        created_at           TEXT NOT NULL DEFAULT {_NOW},
        updated_at           TEXT NOT NULL DEFAULT {_NOW}
    );
    """,
    # 2: leases and retry due times on the host clock (ewfd.clock), whose anchor per boot is
    # kept here; a retry's wait is stored beside its due time, so a due time further away
    # than its wait (written under another boot's clock) counts as due.
    """
    ALTER TABLE jobs ADD COLUMN retry_wait REAL;
    CREATE TABLE clocks (
        boot_id  TEXT PRIMARY KEY,
        anchor   REAL NOT NULL
    );
    """,
    # 3: the progress a running step last reported (ctx.progress), as JSON; NULL otherwise
    """
    ALTER TABLE jobs ADD COLUMN progress TEXT;
    """,
    # 4: prune (retention, ctl prune) seeks old finished rows instead of scanning them all
    f"""
    CREATE INDEX jobs_finished ON jobs (status, updated_at) WHERE {FINISHED};
    """,
]

VERSION = len(MIGRATIONS)
