-- The API database of a data-platform service shaped like the one in the
-- 2017-10-23 postmortem: accounts and their users, API keys, databases and
-- tables (Presto CREATE TABLE goes through the API and inserts a row here),
-- Hive/Presto jobs, scheduled queries and data transfers, bulk imports,
-- notifications and web console sessions.
--
-- coldswap loads it with `coldswap seed` (crates/db/src/seed.rs) and the
-- load mixes in loadtests/ query it. Statements are separated by ';' at the
-- end of a line.

CREATE TABLE accounts (
  id            BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  name          VARCHAR(64)  NOT NULL,
  plan          VARCHAR(16)  NOT NULL,
  status        VARCHAR(16)  NOT NULL DEFAULT 'active',
  created_at    DATETIME     NOT NULL
) ENGINE=InnoDB;

CREATE TABLE users (
  id            BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  account_id    BIGINT UNSIGNED NOT NULL,
  email         VARCHAR(128) NOT NULL,
  name          VARCHAR(64)  NOT NULL,
  created_at    DATETIME     NOT NULL,
  last_login_at DATETIME     NULL,
  KEY idx_users_account (account_id),
  UNIQUE KEY uk_users_email (email)
) ENGINE=InnoDB;

CREATE TABLE api_keys (
  id            BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  user_id       BIGINT UNSIGNED NOT NULL,
  account_id    BIGINT UNSIGNED NOT NULL,
  api_key       CHAR(19)     NOT NULL,
  scope         VARCHAR(16)  NOT NULL,
  created_at    DATETIME     NOT NULL,
  last_used_at  DATETIME     NULL,
  UNIQUE KEY uk_api_keys_key (api_key),
  KEY idx_api_keys_user (user_id)
) ENGINE=InnoDB;

CREATE TABLE `databases` (
  id            BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  account_id    BIGINT UNSIGNED NOT NULL,
  name          VARCHAR(64)  NOT NULL,
  created_at    DATETIME     NOT NULL,
  UNIQUE KEY uk_databases_account_name (account_id, name)
) ENGINE=InnoDB;

CREATE TABLE `tables` (
  id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  database_id   BIGINT UNSIGNED NOT NULL,
  account_id    BIGINT UNSIGNED NOT NULL,
  name          VARCHAR(96)  NOT NULL,
  schema_json   VARCHAR(512) NOT NULL,
  row_count     BIGINT UNSIGNED NOT NULL DEFAULT 0,
  created_at    DATETIME     NOT NULL,
  UNIQUE KEY uk_tables_db_name (database_id, name)
) ENGINE=InnoDB;

CREATE TABLE jobs (
  id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  account_id    BIGINT UNSIGNED NOT NULL,
  user_id       BIGINT UNSIGNED NOT NULL,
  database_id   BIGINT UNSIGNED NOT NULL,
  engine        VARCHAR(8)   NOT NULL,
  query         VARCHAR(1024) NOT NULL,
  status        VARCHAR(16)  NOT NULL,
  result_url    VARCHAR(160) NULL,
  num_records   BIGINT UNSIGNED NULL,
  created_at    DATETIME(3)  NOT NULL,
  started_at    DATETIME(3)  NULL,
  finished_at   DATETIME(3)  NULL,
  updated_at    DATETIME(3)  NOT NULL,
  KEY idx_jobs_account_created (account_id, created_at, status),
  KEY idx_jobs_created (created_at)
) ENGINE=InnoDB;

-- Scheduled queries and data transfers. The notification dispatcher of 2017
-- compared last_run_status with last_notified_status to find schedules that
-- started failing or recovered; no index serves that comparison, so it read
-- every row. The fixed dispatcher only looks at schedules that ran since its
-- last pass, through idx_schedules_last_run.
CREATE TABLE schedules (
  id                   BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  account_id           BIGINT UNSIGNED NOT NULL,
  user_id              BIGINT UNSIGNED NOT NULL,
  database_id          BIGINT UNSIGNED NOT NULL,
  name                 VARCHAR(96)   NOT NULL,
  kind                 VARCHAR(16)   NOT NULL,
  cron                 VARCHAR(32)   NOT NULL,
  query                VARCHAR(2048) NOT NULL,
  notify_email         VARCHAR(128)  NOT NULL,
  next_run_at          DATETIME      NOT NULL,
  last_run_at          DATETIME(3)   NULL,
  last_run_status      VARCHAR(16)   NOT NULL,
  last_notified_status VARCHAR(16)   NOT NULL,
  created_at           DATETIME      NOT NULL,
  KEY idx_schedules_account (account_id),
  KEY idx_schedules_last_run (last_run_at)
) ENGINE=InnoDB;

CREATE TABLE schedule_runs (
  id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  schedule_id   BIGINT UNSIGNED NOT NULL,
  job_id        BIGINT UNSIGNED NULL,
  status        VARCHAR(16)  NOT NULL,
  started_at    DATETIME(3)  NOT NULL,
  finished_at   DATETIME(3)  NULL,
  KEY idx_schedule_runs_schedule (schedule_id, started_at)
) ENGINE=InnoDB;

CREATE TABLE bulk_imports (
  id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  account_id    BIGINT UNSIGNED NOT NULL,
  database_id   BIGINT UNSIGNED NOT NULL,
  table_name    VARCHAR(96)  NOT NULL,
  name          VARCHAR(64)  NOT NULL,
  status        VARCHAR(16)  NOT NULL,
  job_id        BIGINT UNSIGNED NULL,
  num_records   BIGINT UNSIGNED NOT NULL DEFAULT 0,
  created_at    DATETIME(3)  NOT NULL,
  updated_at    DATETIME(3)  NOT NULL,
  KEY idx_bulk_imports_account (account_id, created_at),
  UNIQUE KEY uk_bulk_imports_name (name)
) ENGINE=InnoDB;

CREATE TABLE notifications (
  id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  schedule_id   BIGINT UNSIGNED NOT NULL,
  account_id    BIGINT UNSIGNED NOT NULL,
  status_from   VARCHAR(16)  NOT NULL,
  status_to     VARCHAR(16)  NOT NULL,
  sent_at       DATETIME(3)  NOT NULL,
  KEY idx_notifications_schedule (schedule_id)
) ENGINE=InnoDB;

CREATE TABLE console_sessions (
  id            BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  user_id       BIGINT UNSIGNED NOT NULL,
  token         CHAR(19)     NOT NULL,
  created_at    DATETIME     NOT NULL,
  expires_at    DATETIME     NOT NULL,
  last_seen_at  DATETIME(3)  NOT NULL,
  UNIQUE KEY uk_console_sessions_token (token)
) ENGINE=InnoDB;

-- Writes the load makes carry ids; the checker looks every acknowledged one
-- up on the new primary after the switchover (see crates/checker).
CREATE TABLE write_ledger (
  id            BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  txn           VARCHAR(48)  NOT NULL,
  created_at    DATETIME(6)  NOT NULL
) ENGINE=InnoDB;
