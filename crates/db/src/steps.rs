//! Timed steps of a lifecycle operation, as `cluster.steps` in reports.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One timed step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Step {
    /// `fence_old_primary`, `upgrade_tool`, ...
    pub name: String,
    /// How long it took.
    pub seconds: f64,
}

/// Collects timed steps.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Steps(pub Vec<Step>);

impl Steps {
    /// Record a step that started at `started` and ends now.
    pub fn push(&mut self, name: &str, started: Instant) {
        let seconds = started.elapsed().as_secs_f64();
        tracing::info!(step = name, seconds = format!("{seconds:.3}"), "step done");
        self.0.push(Step { name: name.to_string(), seconds });
    }

    /// Time an async step and record it when it succeeds.
    pub async fn time<T, F>(&mut self, name: &str, f: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let t = Instant::now();
        let r = f.await;
        if r.is_ok() {
            self.push(name, t);
        }
        r.with_context(|| format!("step '{name}' failed"))
    }

    /// Append another operation's steps.
    pub fn extend(&mut self, other: Steps) {
        self.0.extend(other.0);
    }

    /// The `*_total` step, or the sum of all.
    pub fn total_seconds(&self) -> f64 {
        self.0
            .iter()
            .find(|s| s.name.ends_with("_total"))
            .map(|s| s.seconds)
            .unwrap_or_else(|| self.0.iter().map(|s| s.seconds).sum())
    }
}
