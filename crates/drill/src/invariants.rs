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
    let mut found = 0u64;
    let mut lost = Vec::new();
    for chunk in run.acked_writes.chunks(1000) {
        let list: Vec<String> = chunk.iter().map(|x| x.to_string()).collect();
        let rows = sql::fetch_all(
            &mut c,
            &format!("SELECT id FROM `{}`.write_ledger WHERE id IN ({})", view.database, list.join(",")),
        )
        .await?;
        let have: std::collections::HashSet<u64> =
            rows.iter().filter_map(|r| sql::col_text_at(r, 0)).filter_map(|s| s.parse().ok()).collect();
        found += have.len() as u64;
        lost.extend(chunk.iter().filter(|x| !have.contains(x)).copied());
    }
    sql::close(c).await;
    Ok(serde_json::json!({
        "checked_on": cluster.node(p).name,
        "acked": run.acked_writes.len(),
        "found": found,
        "lost": lost.len(),
        "lost_ids": lost.iter().take(100).collect::<Vec<_>>(),
    }))
}
