//! Checks after the drill: every write acknowledged to a client is on the
//! new primary (the write ledger), as Jepsen checks for lost writes.

use anyhow::Result;
use coldswap_client::RunResult;
use coldswap_db::Cluster;
use coldswap_sql as sql;

/// What the checks after a drill may look at.
pub struct StateView<'a> {
    /// The cluster after the switchover.
    pub cluster: &'a Cluster,
    /// The mix's database (where the write ledger lives).
    pub database: &'a str,
}

/// Look every acknowledged write up on the current primary.
pub async fn ledger(view: &StateView<'_>, run: &RunResult) -> Result<serde_json::Value> {
    let cluster = view.cluster;
    let p = cluster.primary_index()?;
    let mut c = cluster.admin(p).await?;
    let table = format!("`{}`.write_ledger", view.database);
    let lost = missing(&mut c, &table, &run.acked_writes).await?;
    let found = (run.acked_writes.len() - lost.len()) as u64;
    sql::close(c).await;
    Ok(serde_json::json!({
        "checked_on": cluster.node(p).name,
        "acked": run.acked_writes.len(),
        "found": found,
        "lost": lost.len(),
        "lost_ids": lost.iter().take(100).collect::<Vec<_>>(),
    }))
}

/// The ids of `ids` that `table` (its `id` column) does not hold, looked up 1,000 at a time.
pub(crate) async fn missing(c: &mut sqlx::MySqlConnection, table: &str, ids: &[u64]) -> Result<Vec<u64>> {
    let mut lost = Vec::new();
    for chunk in ids.chunks(1000) {
        let list: Vec<String> = chunk.iter().map(|x| x.to_string()).collect();
        let rows = sql::fetch_all(c, &format!("SELECT id FROM {table} WHERE id IN ({})", list.join(","))).await?;
        let have: std::collections::HashSet<u64> =
            rows.iter().filter_map(|r| sql::col_text_at(r, 0)).filter_map(|s| s.parse().ok()).collect();
        lost.extend(chunk.iter().filter(|x| !have.contains(x)).copied());
    }
    Ok(lost)
}
