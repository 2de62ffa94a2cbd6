//! `coldswap report merge`: load results from several load machines
//! (`coldswap load --shard i/n --out shard-i.json`) merged into one. Each
//! transaction's HDR histograms are added, so the merged percentiles are
//! exactly those of one run over the union of the samples. (The per-second
//! timeline keeps counts exactly; its per-second p99 is the worst shard's.)

use anyhow::{anyhow, Result};
use coldswap_client::stats::{decode_hist, txn_result, Kind, PhaseResult, RunResult, SecondSummary, Tally, TxnResult};
use std::collections::BTreeMap;

fn merge_txn(rows: &[&TxnResult], duration_s: f64) -> Result<TxnResult> {
    let first = rows[0];
    let mut hist = decode_hist(&first.histogram).ok_or_else(|| anyhow!("{}: unreadable histogram", first.name))?;
    let (mut count, mut ok, mut attempts, mut nrows) = (first.count, first.ok, first.attempts, first.rows);
    let mut errors = first.errors.clone();
    let mut samples = first.error_samples.clone();
    for r in &rows[1..] {
        let h = decode_hist(&r.histogram).ok_or_else(|| anyhow!("{}: unreadable histogram", r.name))?;
        hist.add(&h).map_err(|e| anyhow!("{}: histograms do not add: {e:?}", r.name))?;
        count += r.count;
        ok += r.ok;
        attempts += r.attempts;
        nrows += r.rows;
        for (k, v) in &r.errors {
            *errors.entry(k.clone()).or_insert(0) += v;
        }
        for s in &r.error_samples {
            if samples.len() < 5 && !samples.contains(s) {
                samples.push(s.clone());
            }
        }
    }
    let tally = Tally { count, ok, attempts, errors, rows: nrows, samples };
    Ok(txn_result(&first.name, first.kind, &hist, tally, duration_s))
}

/// Merge results of the same mix run on several machines at once.
pub fn merge(results: &[RunResult]) -> Result<RunResult> {
    if results.is_empty() {
        return Err(anyhow!("nothing to merge"));
    }
    let mut names: Vec<String> = Vec::new();
    for r in results {
        for p in &r.phases {
            if !names.contains(&p.name) {
                names.push(p.name.clone());
            }
        }
    }
    let mut phases = Vec::new();
    for name in &names {
        let parts: Vec<&PhaseResult> = results.iter().filter_map(|r| r.phase(name)).collect();
        let start = parts.iter().map(|p| p.start_s).fold(f64::MAX, f64::min);
        let end = parts.iter().map(|p| p.end_s).fold(0.0, f64::max);
        let dur = (end - start).max(1e-9);
        let mut by: BTreeMap<(u8, String), Vec<&TxnResult>> = BTreeMap::new();
        for p in &parts {
            for t in p.transactions.iter().chain(p.background.iter()) {
                let k = if t.kind == Kind::Transaction { 0 } else { 1 };
                by.entry((k, t.name.clone())).or_default().push(t);
            }
        }
        let mut transactions = Vec::new();
        let mut background = Vec::new();
        for ((k, _), rows) in by {
            let m = merge_txn(&rows, dur)?;
            if k == 0 {
                transactions.push(m);
            } else {
                background.push(m);
            }
        }
        phases.push(PhaseResult { name: name.clone(), start_s: start, end_s: end, transactions, background });
    }
    let mut secs: BTreeMap<u64, SecondSummary> = BTreeMap::new();
    for r in results {
        for s in &r.timeline {
            let e = secs.entry(s.t).or_insert_with(|| SecondSummary {
                t: s.t,
                phase: s.phase.clone(),
                count: 0,
                errors: 0,
                errors_by_class: Default::default(),
                p50_ms: 0.0,
                p99_ms: 0.0,
                max_ms: 0.0,
                by_txn: Default::default(),
            });
            e.count += s.count;
            // Per transaction: counts add; a shard's p99 bounds the merged
            // one from below, so the merged second shows the worst shard's.
            for (name, t) in &s.by_txn {
                let m = e.by_txn.entry(name.clone()).or_insert(coldswap_client::stats::TxnSecond {
                    count: 0,
                    errors: 0,
                    p99_ms: 0.0,
                });
                m.count += t.count;
                m.errors += t.errors;
                m.p99_ms = m.p99_ms.max(t.p99_ms);
            }
            e.errors += s.errors;
            for (k, v) in &s.errors_by_class {
                *e.errors_by_class.entry(k.clone()).or_insert(0) += v;
            }
            e.p50_ms = e.p50_ms.max(s.p50_ms);
            e.p99_ms = e.p99_ms.max(s.p99_ms);
            e.max_ms = e.max_ms.max(s.max_ms);
        }
    }
    let mut events: Vec<_> = results.iter().flat_map(|r| r.events.iter().cloned()).collect();
    events.sort_by(|a, b| a.t.total_cmp(&b.t));
    Ok(RunResult {
        phases,
        timeline: secs.into_values().collect(),
        events,
        acked_writes: results.iter().flat_map(|r| r.acked_writes.iter().copied()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use coldswap_client::gen::Rng;
    use coldswap_client::stats::{Record, Recorder};
    use std::time::Duration;

    fn rec(r: &Recorder, name: &str, us: u64, ok: bool) {
        r.record(&Record {
            name,
            kind: Kind::Transaction,
            latency: Duration::from_micros(us),
            ok,
            class: (!ok).then_some(coldswap_client::FailClass::DeadlineExceeded),
            error: None,
            attempts: 1,
            rows: 0,
        });
    }

    #[test]
    fn merged_shards_have_the_percentiles_of_the_union() {
        let (a, b, all) = (Recorder::new(), Recorder::new(), Recorder::new());
        for r in [&a, &b, &all] {
            r.phase("cold");
        }
        let mut rng = Rng::new(3);
        for i in 0..50_000u64 {
            // a long-tailed latency, different mixes on the two shards
            let us = 200 + (rng.unit().powf(6.0) * 2_000_000.0) as u64 + if i % 2 == 0 { 0 } else { 3000 };
            let ok = rng.below(50) != 0;
            let name = if i % 3 == 0 { "show_job" } else { "list_jobs" };
            rec(if i % 2 == 0 { &a } else { &b }, name, us, ok);
            rec(&all, name, us, ok);
        }
        let m = merge(&[a.snapshot(), b.snapshot()]).unwrap();
        let whole = all.snapshot();
        for name in ["show_job", "list_jobs"] {
            let x = m.phase("cold").unwrap().txn(name).unwrap();
            let y = whole.phase("cold").unwrap().txn(name).unwrap();
            assert_eq!((x.count, x.ok, &x.errors), (y.count, y.ok, &y.errors));
            for (p, q) in [
                (x.p50_ms, y.p50_ms),
                (x.p90_ms, y.p90_ms),
                (x.p99_ms, y.p99_ms),
                (x.p999_ms, y.p999_ms),
                (x.max_ms, y.max_ms),
            ] {
                assert_eq!(p, q, "{name}");
            }
        }
    }
}
