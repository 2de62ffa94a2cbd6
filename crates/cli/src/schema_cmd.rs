//! `coldswap schema import`: a database's shape, without its rows.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum SchemaCmd {
    /// Read a database's tables from a server you run (definitions, row
    /// counts, indexes, and per column a summary of a bounded sample) and
    /// write schema.sql and dataset.toml, which `coldswap seed --dataset`
    /// generates at any scale. No row is written.
    Import(SchemaImportArgs),
}

#[derive(Args)]
pub struct SchemaImportArgs {
    /// The servers file (as `coldswap external` reads it).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Which of its servers to read: primary or replica (a replica spares
    /// the primary the row counts and samples).
    #[arg(long, default_value = "primary", value_parser = ["primary", "replica"])]
    node: String,
    /// The database.
    #[arg(long)]
    database: String,
    /// Only the tables this mix's statements name (default: every table).
    #[arg(long, value_name = "FILE")]
    mix: Option<PathBuf>,
    /// Rows sampled per table, at most.
    #[arg(long, default_value_t = 10_000)]
    sample_rows: usize,
    /// The directory to write schema.sql and dataset.toml into.
    #[arg(long, short)]
    out: PathBuf,
    /// Replace files already there.
    #[arg(long)]
    force: bool,
    /// Allow a server off loopback.
    #[arg(long)]
    allow_remote: bool,
}

pub async fn run(cmd: SchemaCmd) -> Result<u8> {
    use coldswap_dataset::shaped::{DATASET_FILE, SCHEMA_FILE};
    let SchemaCmd::Import(a) = cmd;
    for f in [SCHEMA_FILE, DATASET_FILE] {
        if a.out.join(f).exists() && !a.force {
            bail!("{} exists: pass --force to replace it", a.out.join(f).display());
        }
    }
    if a.sample_rows == 0 {
        bail!("--sample-rows must be at least 1");
    }
    let tables = match &a.mix {
        Some(m) => {
            let mix = coldswap_client::run::load_mix(m)?;
            let mut t: Vec<String> = Vec::new();
            for s in mix.transactions.iter().flat_map(|t| &t.steps).chain(mix.background.iter().flat_map(|b| &b.steps))
            {
                for name in coldswap_checker::lint::aliases(&s.sql).into_values() {
                    if !t.contains(&name) {
                        t.push(name);
                    }
                }
            }
            if t.is_empty() {
                bail!("{}: no table named by its statements", m.display());
            }
            Some(t)
        }
        None => None,
    };
    let ext = coldswap_db::external::External::load(&a.config, a.allow_remote)?;
    let o = ext.options(a.node == "replica");
    let mut conn = coldswap_sql::connect(&o, std::time::Duration::from_secs(10))
        .await
        .with_context(|| format!("cannot connect to the {}", a.node))?;
    let opts = coldswap_capture::schema::SchemaOptions {
        database: a.database.clone(),
        tables,
        sample_rows: a.sample_rows,
        max_top: 64,
    };
    let source = format!("the {} of {}", a.node, a.config.display());
    let r = coldswap_signals::interruptible(coldswap_capture::schema::read(&mut conn, &source, &opts)).await;
    coldswap_sql::close(conn).await;
    let (shape, ddl) = r?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let head = format!(
        "# Imported by `coldswap schema import` from {source}: tables, row counts and per column a summary of\n\
         # at most {} sampled rows (type, NULL share, range, mean length, frequent values of key and status\n\
         # columns with their shares). No row is stored. `coldswap seed --dataset {}` generates it.\n\n",
        a.sample_rows,
        a.out.display()
    );
    let body = toml::to_string_pretty(&shape).context("writing dataset.toml")?;
    for (f, text) in [(SCHEMA_FILE, ddl), (DATASET_FILE, head + &body)] {
        let p = a.out.join(f);
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("cannot write {}", p.display()))?;
    }
    eprintln!("schema import: {} tables of {} -> {}", shape.tables.len(), a.database, a.out.display());
    for t in &shape.tables {
        eprintln!("  {:<30} {:>10} rows  {} indexes", t.name, t.rows, t.indexes.len());
    }
    Ok(0)
}
