//! Every difference between server flavors and versions, in one place: the
//! SQL (replication, fencing, GTIDs, users) and the server flags.
//!
//! MariaDB 10.11 and 11.8 and Oracle MySQL 9.7 run on this machine and are
//! tested against real servers; what is generated here for MySQL 5.7 and 8.0
//! is covered by unit tests only.

use coldswap_sql::{Flavor, Version};

/// Which statements a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// The server flavor.
    pub flavor: Flavor,
    /// The server version.
    pub version: Version,
}

/// A replication source as a replica is told about it.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    /// Host the replica connects to.
    pub host: &'a str,
    /// Its port.
    pub port: u16,
    /// The replication user.
    pub user: &'a str,
    /// Its password.
    pub password: &'a str,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl Dialect {
    /// The dialect of a server.
    pub fn new(flavor: Flavor, version: Version) -> Dialect {
        Dialect { flavor, version }
    }

    /// Sizes and settings every node gets, whatever runs it.
    pub fn base_flags(&self, buffer_pool_mb: u32) -> Vec<String> {
        let mut v = vec![
            "--skip-name-resolve".to_string(),
            format!("--innodb-buffer-pool-size={buffer_pool_mb}M"),
            "--performance-schema=ON".to_string(),
            "--max-connections=1000".to_string(),
        ];
        match self.flavor {
            Flavor::MySQL if self.version >= Version(8, 0, 30) => {
                // innodb_log_file_size is gone: one redo capacity instead.
                v.push("--innodb-redo-log-capacity=256M".into());
            }
            Flavor::MySQL if self.version < Version(5, 7, 0) => {}
            _ => v.push("--innodb-log-file-size=256M".into()),
        }
        v
    }

    /// Where the server may read and write files for LOAD DATA, SELECT INTO
    /// OUTFILE and LOAD_FILE(): a directory of coldswap's, on every flavor.
    /// (Debian's MySQL defaults to /var/lib/mysql-files and refuses to start
    /// without it; MariaDB has no default at all, so LOAD_FILE() would read
    /// any file the server can, as root where the server runs as root.)
    pub fn file_priv_flag(&self, dir: &std::path::Path) -> Option<String> {
        Some(format!("--secure-file-priv={}", dir.display()))
    }

    /// SQL run while a fresh datadir is initialised, before the server ever
    /// listens: root@localhost gets `password`, and no other root account
    /// (nor MariaDB's `mysql`@localhost, which logs in by Unix user) is
    /// left. MariaDB's bootstrap runs without grant tables, so it writes
    /// them directly (`mysql.global_priv` from 10.4, `mysql.user` before);
    /// MySQL runs it as `--init-file` of `--initialize`, where ALTER USER
    /// works.
    pub fn root_password_init(&self, password: &str) -> Vec<String> {
        let pw = quote(password);
        match self.flavor {
            Flavor::MariaDB if self.version >= Version(10, 4, 0) => vec![
                format!(
                    "UPDATE mysql.global_priv SET priv = JSON_SET(priv, '$.plugin', 'mysql_native_password', \
                     '$.authentication_string', PASSWORD({pw})) WHERE User = 'root' AND Host = 'localhost'"
                ),
                "DELETE FROM mysql.global_priv WHERE (User = 'root' AND Host <> 'localhost') OR User = 'mysql'".into(),
            ],
            Flavor::MariaDB => vec![
                format!("UPDATE mysql.user SET Password = PASSWORD({pw}) WHERE User = 'root' AND Host = 'localhost'"),
                "DELETE FROM mysql.user WHERE User = 'root' AND Host <> 'localhost'".into(),
            ],
            // root@127.0.0.1 too, with the same password: caching_sha2's full
            // authentication over a Unix socket wants the password in
            // clear, which sqlx sends only inside TLS (it asks for the RSA
            // key instead, and the server refuses), so coldswap logs in
            // over loopback TCP; the server's own tools keep the socket.
            Flavor::MySQL => vec![
                format!("ALTER USER 'root'@'localhost' IDENTIFIED BY {pw}"),
                format!("CREATE USER 'root'@'127.0.0.1' IDENTIFIED BY {pw}"),
                "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION".into(),
            ],
        }
    }

    /// The upgrade tool this version needs after a restart on new binaries,
    /// or None when the server upgrades itself at start (MySQL 8.0.16+).
    pub fn upgrade_tool(&self) -> Option<&'static str> {
        match self.flavor {
            Flavor::MariaDB => Some("mariadb-upgrade"),
            Flavor::MySQL if self.version < Version(8, 0, 16) => Some("mysql_upgrade"),
            Flavor::MySQL => None,
        }
    }

    /// Flags for the first start of this version on a datadir `from` left:
    /// a server that upgrades itself is told to do it even when the version
    /// number did not change (a rebuilt package, the same-version rehearsal).
    pub fn upgrade_start_flags(&self, from: Version) -> Vec<String> {
        match self.flavor {
            Flavor::MySQL if self.version >= Version(8, 0, 16) && from == self.version => {
                vec!["--upgrade=FORCE".into()]
            }
            _ => Vec::new(),
        }
    }

    fn mysql_replica_words(&self) -> bool {
        // START/STOP/SHOW REPLICA and CHANGE REPLICATION SOURCE: MySQL 8.0.23+.
        self.flavor == Flavor::MySQL && self.version >= Version(8, 0, 23)
    }

    /// MySQL's super_read_only (MariaDB has none: root still writes to a read-only replica).
    pub fn has_super_read_only(&self) -> bool {
        self.flavor == Flavor::MySQL && self.version >= Version(5, 7, 8)
    }

    /// Flags that every node of a GTID cluster gets, beyond the paths.
    pub fn replication_flags(&self, server_id: u32) -> Vec<String> {
        let mut v = vec![
            format!("--server-id={server_id}"),
            "--log-bin=binlog".to_string(),
            "--relay-log=relay".to_string(),
            "--binlog-format=ROW".to_string(),
        ];
        match self.flavor {
            Flavor::MariaDB => {
                v.push("--log-slave-updates".into());
                // Apply in parallel: a replica on a cold volume pays each
                // first read; one applier thread could not keep up.
                v.push("--slave-parallel-threads=8".into());
                v.push("--slave-parallel-mode=optimistic".into());
            }
            Flavor::MySQL => {
                v.push("--gtid-mode=ON".into());
                v.push("--enforce-gtid-consistency=ON".into());
                if self.version >= Version(8, 0, 26) {
                    v.push("--log-replica-updates".into());
                    v.push("--replica-parallel-workers=8".into());
                    v.push("--replica-preserve-commit-order=ON".into());
                } else {
                    v.push("--log-slave-updates".into());
                    v.push("--slave-parallel-workers=8".into());
                    v.push("--slave-parallel-type=LOGICAL_CLOCK".into());
                    v.push("--slave-preserve-commit-order=ON".into());
                }
                if self.version >= Version(8, 0, 0) {
                    // X Plugin would take port 33060 on every node.
                    v.push("--mysqlx=OFF".into());
                }
            }
        }
        v
    }

    /// Flag that keeps replication stopped at startup (we start it ourselves).
    pub fn skip_replica_start_flag(&self) -> &'static str {
        if self.flavor == Flavor::MySQL && self.version >= Version(8, 0, 26) {
            "--skip-replica-start"
        } else {
            "--skip-slave-start"
        }
    }

    /// Flags that make a node read-only from the start.
    pub fn read_only_flags(&self) -> Vec<String> {
        let mut v = vec!["--read-only=ON".to_string()];
        if self.has_super_read_only() {
            v.push("--super-read-only=ON".into());
        }
        v
    }

    /// Flags that route InnoDB reads through pread(2) with O_DIRECT, so the
    /// first-touch emulator sees them and the page cache does not hide them.
    pub fn cold_storage_flags(&self) -> Vec<String> {
        vec![
            "--innodb-flush-method=O_DIRECT".into(),
            "--innodb-use-native-aio=0".into(),
            "--innodb-buffer-pool-load-at-startup=OFF".into(),
            "--innodb-buffer-pool-dump-at-shutdown=OFF".into(),
            "--innodb-buffer-pool-dump-pct=100".into(),
        ]
    }

    /// Point a replica at its source, by GTID.
    pub fn change_source(&self, s: &Source<'_>) -> String {
        match self.flavor {
            Flavor::MariaDB => format!(
                "CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={}, MASTER_USER={}, MASTER_PASSWORD={}, \
                 MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
                quote(s.host),
                s.port,
                quote(s.user),
                quote(s.password)
            ),
            Flavor::MySQL if self.mysql_replica_words() => format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST={}, SOURCE_PORT={}, SOURCE_USER={}, SOURCE_PASSWORD={}, \
                 SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1, SOURCE_CONNECT_RETRY=1",
                quote(s.host),
                s.port,
                quote(s.user),
                quote(s.password)
            ),
            Flavor::MySQL => {
                let key = if self.version >= Version(8, 0, 0) { ", GET_MASTER_PUBLIC_KEY=1" } else { "" };
                format!(
                    "CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={}, MASTER_USER={}, MASTER_PASSWORD={}, \
                     MASTER_AUTO_POSITION=1, MASTER_CONNECT_RETRY=1{key}",
                    quote(s.host),
                    s.port,
                    quote(s.user),
                    quote(s.password)
                )
            }
        }
    }

    /// Statements run on a brand-new replica before CHANGE MASTER.
    pub fn prepare_replica(&self) -> Vec<String> {
        match self.flavor {
            Flavor::MariaDB => vec!["SET GLOBAL gtid_slave_pos=''".into()],
            Flavor::MySQL => vec![],
        }
    }

    /// Statements that make a former primary (whose own history is already on
    /// the new primary) resume from what it has executed.
    pub fn prepare_demoted(&self) -> Vec<String> {
        match self.flavor {
            Flavor::MariaDB => vec!["SET GLOBAL gtid_slave_pos=@@gtid_binlog_pos".into()],
            Flavor::MySQL => vec![],
        }
    }

    /// Start both replication threads.
    pub fn start_replica(&self) -> &'static str {
        if self.flavor == Flavor::MySQL && self.version >= Version(8, 0, 22) {
            "START REPLICA"
        } else {
            "START SLAVE"
        }
    }

    /// Stop both replication threads.
    pub fn stop_replica(&self) -> &'static str {
        if self.flavor == Flavor::MySQL && self.version >= Version(8, 0, 22) {
            "STOP REPLICA"
        } else {
            "STOP SLAVE"
        }
    }

    /// Forget the source (a promoted replica).
    pub fn reset_replica_all(&self) -> &'static str {
        if self.flavor == Flavor::MySQL && self.version >= Version(8, 0, 22) {
            "RESET REPLICA ALL"
        } else {
            "RESET SLAVE ALL"
        }
    }

    /// The replica status statement.
    pub fn show_replica_status(&self) -> &'static str {
        if self.flavor == Flavor::MySQL && self.version >= Version(8, 0, 22) {
            "SHOW REPLICA STATUS"
        } else {
            "SHOW SLAVE STATUS"
        }
    }

    /// Column names of SHOW ... STATUS: (io running, sql running, seconds behind, last io error, last sql error).
    pub fn status_columns(&self) -> [&'static str; 5] {
        if self.flavor == Flavor::MySQL && self.version >= Version(8, 0, 22) {
            ["Replica_IO_Running", "Replica_SQL_Running", "Seconds_Behind_Source", "Last_IO_Error", "Last_SQL_Error"]
        } else {
            ["Slave_IO_Running", "Slave_SQL_Running", "Seconds_Behind_Master", "Last_IO_Error", "Last_SQL_Error"]
        }
    }

    /// Fence a primary: no more writes from clients.
    pub fn fence(&self) -> Vec<String> {
        let mut v = vec!["SET GLOBAL read_only=ON".to_string()];
        if self.has_super_read_only() {
            v.push("SET GLOBAL super_read_only=ON".into());
        }
        v
    }

    /// Undo a fence (rollback, or promotion of a replica).
    pub fn unfence(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.has_super_read_only() {
            v.push("SET GLOBAL super_read_only=OFF".to_string());
        }
        v.push("SET GLOBAL read_only=OFF".into());
        v
    }

    /// Query returning the executed GTID set/position as one string.
    pub fn gtid_executed_query(&self) -> &'static str {
        match self.flavor {
            Flavor::MariaDB => "SELECT CAST(@@GLOBAL.gtid_binlog_pos AS CHAR)",
            Flavor::MySQL => "SELECT CAST(@@GLOBAL.gtid_executed AS CHAR)",
        }
    }

    /// Query returning 0 once `pos` is applied, non-zero on timeout.
    pub fn wait_gtid_query(&self, pos: &str, timeout_s: f64) -> String {
        match self.flavor {
            Flavor::MariaDB => format!("SELECT MASTER_GTID_WAIT({}, {timeout_s})", quote(pos)),
            Flavor::MySQL => format!("SELECT WAIT_FOR_EXECUTED_GTID_SET({}, {timeout_s})", quote(pos)),
        }
    }

    /// Arguments of the flavor's upgrade tool (after the binary), or None when
    /// the server upgrades itself. `--force`: between two builds of one
    /// version the tool otherwise says "no need" and does nothing.
    pub fn upgrade_args(&self, socket: &str, user: &str) -> Option<Vec<String>> {
        self.upgrade_tool().map(|_| {
            vec!["--no-defaults".into(), "--force".into(), format!("--socket={socket}"), format!("--user={user}")]
        })
    }

    /// CREATE USER ... for a user that logs in from loopback with a password.
    pub fn create_user(&self, user: &str, host: &str, password: &str) -> String {
        format!("CREATE USER IF NOT EXISTS {}@{} IDENTIFIED BY {}", quote(user), quote(host), quote(password))
    }

    /// Privileges of the application user: data access and DDL, but nothing
    /// that bypasses read_only (no SUPER, no READ ONLY ADMIN), so a fenced
    /// primary refuses its writes as it would refuse the API's.
    pub fn app_grants(&self, user: &str, host: &str) -> Vec<String> {
        let privs = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, CREATE TEMPORARY TABLES, \
                     LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, PROCESS";
        vec![format!("GRANT {privs} ON *.* TO {}@{}", quote(user), quote(host))]
    }

    /// Privileges of the replication user.
    pub fn repl_grants(&self, user: &str, host: &str) -> Vec<String> {
        vec![format!("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO {}@{}", quote(user), quote(host))]
    }

    /// Privileges of coldswap's admin user.
    pub fn admin_grants(&self, user: &str, host: &str) -> Vec<String> {
        vec![format!("GRANT ALL PRIVILEGES ON *.* TO {}@{} WITH GRANT OPTION", quote(user), quote(host))]
    }

    /// EXPLAIN in the classic tabular form (id, select_type, table, type,
    /// key, rows, Extra): MySQL 8.0.16+ answers in a tree unless told.
    pub fn explain(&self, statement: &str) -> String {
        match self.flavor {
            Flavor::MySQL => format!("EXPLAIN FORMAT=TRADITIONAL {statement}"),
            Flavor::MariaDB => format!("EXPLAIN {statement}"),
        }
    }

    /// Error codes a fenced server answers a write with.
    pub fn read_only_error_codes() -> &'static [&'static str] {
        // ER_OPTION_PREVENTS_STATEMENT (1290); MySQL's super_read_only also 1290;
        // MariaDB may answer 1836 (ER_READ_ONLY_MODE) in some paths.
        &["1290", "1836", "1792"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Source<'static> = Source { host: "10.0.0.5", port: 3306, user: "repl", password: "p'w" };

    fn maria() -> Dialect {
        Dialect::new(Flavor::MariaDB, Version(10, 11, 18))
    }
    fn my57() -> Dialect {
        Dialect::new(Flavor::MySQL, Version(5, 7, 19))
    }
    fn my80() -> Dialect {
        Dialect::new(Flavor::MySQL, Version(8, 0, 35))
    }
    fn my8018() -> Dialect {
        Dialect::new(Flavor::MySQL, Version(8, 0, 18))
    }

    #[test]
    fn change_source_per_flavor() {
        assert_eq!(
            maria().change_source(&SRC),
            "CHANGE MASTER TO MASTER_HOST='10.0.0.5', MASTER_PORT=3306, MASTER_USER='repl', MASTER_PASSWORD='p\\'w', \
             MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1"
        );
        assert_eq!(
            my57().change_source(&SRC),
            "CHANGE MASTER TO MASTER_HOST='10.0.0.5', MASTER_PORT=3306, MASTER_USER='repl', MASTER_PASSWORD='p\\'w', \
             MASTER_AUTO_POSITION=1, MASTER_CONNECT_RETRY=1"
        );
        assert!(my8018().change_source(&SRC).ends_with("GET_MASTER_PUBLIC_KEY=1"));
        assert_eq!(
            my80().change_source(&SRC),
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST='10.0.0.5', SOURCE_PORT=3306, SOURCE_USER='repl', \
             SOURCE_PASSWORD='p\\'w', SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1, SOURCE_CONNECT_RETRY=1"
        );
    }

    #[test]
    fn replica_words() {
        assert_eq!(maria().start_replica(), "START SLAVE");
        assert_eq!(my57().stop_replica(), "STOP SLAVE");
        assert_eq!(my57().reset_replica_all(), "RESET SLAVE ALL");
        assert_eq!(my80().start_replica(), "START REPLICA");
        assert_eq!(my80().reset_replica_all(), "RESET REPLICA ALL");
        assert_eq!(my80().show_replica_status(), "SHOW REPLICA STATUS");
        assert_eq!(my80().status_columns()[2], "Seconds_Behind_Source");
        assert_eq!(maria().status_columns()[0], "Slave_IO_Running");
    }

    #[test]
    fn gtid_flags_and_positions() {
        let f = my57().replication_flags(2);
        assert!(f.contains(&"--gtid-mode=ON".to_string()));
        assert!(f.contains(&"--enforce-gtid-consistency=ON".to_string()));
        assert!(f.contains(&"--log-slave-updates".to_string()));
        assert!(!f.iter().any(|x| x.starts_with("--mysqlx")));
        let f = my80().replication_flags(2);
        assert!(f.contains(&"--log-replica-updates".to_string()));
        assert!(f.contains(&"--mysqlx=OFF".to_string()));
        let f = maria().replication_flags(1);
        assert!(!f.iter().any(|x| x.starts_with("--gtid-mode")));
        assert_eq!(maria().gtid_executed_query(), "SELECT CAST(@@GLOBAL.gtid_binlog_pos AS CHAR)");
        assert_eq!(my57().gtid_executed_query(), "SELECT CAST(@@GLOBAL.gtid_executed AS CHAR)");
        assert_eq!(maria().wait_gtid_query("0-1-5", 2.5), "SELECT MASTER_GTID_WAIT('0-1-5', 2.5)");
        assert_eq!(my80().wait_gtid_query("uuid:1-5", 3.0), "SELECT WAIT_FOR_EXECUTED_GTID_SET('uuid:1-5', 3)");
        assert_eq!(maria().prepare_replica(), vec!["SET GLOBAL gtid_slave_pos=''"]);
        assert!(my57().prepare_replica().is_empty());
        assert_eq!(maria().prepare_demoted(), vec!["SET GLOBAL gtid_slave_pos=@@gtid_binlog_pos"]);
    }

    #[test]
    fn fencing() {
        assert_eq!(maria().fence(), vec!["SET GLOBAL read_only=ON"]);
        assert_eq!(my57().fence(), vec!["SET GLOBAL read_only=ON", "SET GLOBAL super_read_only=ON"]);
        assert_eq!(my80().unfence(), vec!["SET GLOBAL super_read_only=OFF", "SET GLOBAL read_only=OFF"]);
        assert_eq!(maria().read_only_flags(), vec!["--read-only=ON"]);
        assert_eq!(my80().read_only_flags(), vec!["--read-only=ON", "--super-read-only=ON"]);
        assert_eq!(my57().skip_replica_start_flag(), "--skip-slave-start");
        assert_eq!(my80().skip_replica_start_flag(), "--skip-replica-start");
    }

    #[test]
    fn upgrade_tools() {
        assert!(maria().upgrade_args("/s", "root").unwrap().contains(&"--force".to_string()));
        assert!(my57().upgrade_args("/s", "root").is_some());
        assert!(my80().upgrade_args("/s", "root").is_none());
        assert_eq!(Dialect::new(Flavor::MySQL, Version(8, 0, 15)).upgrade_tool(), Some("mysql_upgrade"));
        assert_eq!(Dialect::new(Flavor::MySQL, Version(8, 0, 16)).upgrade_tool(), None);
        let my97 = Dialect::new(Flavor::MySQL, Version(9, 7, 4));
        assert_eq!(my97.upgrade_start_flags(Version(9, 7, 4)), vec!["--upgrade=FORCE"]);
        assert!(my97.upgrade_start_flags(Version(8, 4, 0)).is_empty());
        assert!(maria().upgrade_start_flags(Version(10, 11, 18)).is_empty());
    }

    #[test]
    fn redo_log_flags_follow_the_version() {
        let f = |d: Dialect| d.base_flags(64).join(" ");
        assert!(f(maria()).contains("--innodb-log-file-size=256M"));
        assert!(f(my80()).contains("--innodb-redo-log-capacity=256M"), "{}", f(my80()));
        assert!(!f(my80()).contains("log-file-size"));
        assert!(f(my57()).contains("--innodb-log-file-size=256M"));
        assert!(f(maria()).contains("--innodb-buffer-pool-size=64M"));
        assert_eq!(maria().file_priv_flag(std::path::Path::new("/t")).unwrap(), "--secure-file-priv=/t");
        assert_eq!(my80().file_priv_flag(std::path::Path::new("/t")).unwrap(), "--secure-file-priv=/t");
    }

    #[test]
    fn root_gets_a_password_before_the_server_listens() {
        let m = maria().root_password_init("p'w").join(";");
        assert!(m.contains("mysql.global_priv") && m.contains("PASSWORD('p\\'w')"), "{m}");
        assert!(m.contains("Host <> 'localhost'") && m.contains("User = 'mysql'"), "{m}");
        let old = Dialect::new(Flavor::MariaDB, Version(10, 3, 39)).root_password_init("x").join(";");
        assert!(old.contains("mysql.user") && !old.contains("global_priv"), "{old}");
        let my = my80().root_password_init("x");
        assert_eq!(my[0], "ALTER USER 'root'@'localhost' IDENTIFIED BY 'x'");
    }

    #[test]
    fn explain_is_tabular_on_every_flavor() {
        assert_eq!(maria().explain("SELECT 1"), "EXPLAIN SELECT 1");
        assert_eq!(my80().explain("SELECT 1"), "EXPLAIN FORMAT=TRADITIONAL SELECT 1");
    }

    #[test]
    fn app_user_cannot_bypass_read_only() {
        let g = maria().app_grants("app", "127.0.0.1").join(" ");
        assert!(!g.contains("SUPER"));
        assert!(!g.contains("ALL"));
        assert!(!g.contains("READ ONLY ADMIN"));
    }
}
