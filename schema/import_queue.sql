-- The backend Import task queue of the postmortem: workers claim tasks,
-- heartbeat while they run and complete them; a reaper kills tasks whose
-- heartbeat is too old. The 2017 race left completed Bulk Import jobs
-- 'killed'; coldswap's import_queue mix reproduces it (naive reaper) and
-- its fix (compare-and-set reaper).

CREATE TABLE tasks (
  id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  owner         VARCHAR(64)  NULL,
  account_id    BIGINT UNSIGNED NOT NULL,
  kind          VARCHAR(16)  NOT NULL,
  state         VARCHAR(16)  NOT NULL,
  heartbeat_at  DATETIME(6)  NULL,
  attempts      INT UNSIGNED NOT NULL DEFAULT 0,
  payload       VARCHAR(1024) NOT NULL,
  created_at    DATETIME(6)  NOT NULL,
  updated_at    DATETIME(6)  NOT NULL,
  KEY idx_tasks_state_heartbeat (state, heartbeat_at),
  KEY idx_tasks_account (account_id)
) ENGINE=InnoDB;

-- Writes the import_queue mix makes carry ids, as in api.write_ledger: the
-- checker looks every acknowledged one up on the new primary.
CREATE TABLE write_ledger (
  id            BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  txn           VARCHAR(48)  NOT NULL,
  created_at    DATETIME(6)  NOT NULL
) ENGINE=InnoDB;
