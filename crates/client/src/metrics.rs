//! `--metrics-listen ADDR`: the live counters and latency histograms of a
//! run in the Prometheus (OpenMetrics) text format, for a long capacity
//! run watched in Grafana. Encoded with `prometheus-client` at each scrape
//! from the run's recorder (nothing is added to the request path); served
//! on `GET /metrics` by a small listener on the address given (loopback
//! unless the address says otherwise).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::stats::{decode_hist, RunResult};
use crate::Recorder;

/// Upper bounds of the latency buckets, seconds.
pub const BUCKETS_S: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

type Labels = Vec<(String, String)>;

/// The recorder being served; a run that makes one recorder per step
/// (capacity) swaps it.
#[derive(Debug, Clone, Default)]
pub struct Source(Arc<Mutex<Option<Arc<Recorder>>>>);

impl Source {
    /// Serve `rec` from now on.
    pub fn set(&self, rec: Arc<Recorder>) {
        *self.0.lock().unwrap() = Some(rec);
    }
}

#[derive(Debug)]
struct RunCollector(Source);

/// Cumulative bucket counts of an HDR histogram (us) at [`BUCKETS_S`], its
/// sum in seconds and its count.
pub fn buckets(h: &hdrhistogram::Histogram<u64>) -> (Vec<(f64, u64)>, f64, u64) {
    let mut out: Vec<(f64, u64)> = BUCKETS_S.iter().map(|b| (*b, 0)).collect();
    let mut sum = 0.0;
    for v in h.iter_recorded() {
        let us = v.value_iterated_to();
        let n = v.count_at_value();
        sum += us as f64 / 1e6 * n as f64;
        for (b, c) in out.iter_mut() {
            if (us as f64) <= *b * 1e6 {
                *c += n;
            }
        }
    }
    out.push((f64::INFINITY, h.len()));
    (out, sum, h.len())
}

fn encode_run(run: &RunResult, phase_now: &str, enc: &mut DescriptorEncoder) -> std::fmt::Result {
    let mut requests = enc.encode_descriptor(
        "coldswap_requests",
        "API requests and background job runs that ended, by phase, name and outcome",
        None,
        MetricType::Counter,
    )?;
    for p in &run.phases {
        for t in p.transactions.iter().chain(p.background.iter()) {
            let failed = t.count - t.ok;
            for (outcome, v) in [("ok", t.ok), ("failed", failed)] {
                let l: Labels = vec![
                    ("phase".into(), p.name.clone()),
                    ("name".into(), t.name.clone()),
                    ("outcome".into(), outcome.into()),
                ];
                requests.encode_family(&l)?.encode_counter::<Labels, u64, f64>(&v, None)?;
            }
        }
    }
    let mut latency = enc.encode_descriptor(
        "coldswap_request_duration_seconds",
        "Latency of API requests (from their intended start in the open model), by phase and name",
        None,
        MetricType::Histogram,
    )?;
    for p in &run.phases {
        for t in p.transactions.iter().chain(p.background.iter()) {
            let Some(h) = decode_hist(&t.histogram) else { continue };
            let (b, sum, count) = buckets(&h);
            let l: Labels = vec![("phase".into(), p.name.clone()), ("name".into(), t.name.clone())];
            latency.encode_family(&l)?.encode_histogram::<Labels>(
                sum,
                count,
                &b,
                None::<&HashMap<usize, Exemplar<Labels, f64>>>,
            )?;
        }
    }
    let last = run.timeline.last();
    for (name, help, v) in [
        (
            "coldswap_last_second_requests",
            "API requests that ended in the last whole second",
            last.map(|s| s.count as f64),
        ),
        ("coldswap_last_second_failed", "Of them, failed", last.map(|s| s.errors as f64)),
        ("coldswap_last_second_p99_seconds", "p99 of the last whole second", last.map(|s| s.p99_ms / 1000.0)),
    ] {
        let g = ConstGauge::new(v.unwrap_or(0.0));
        let mut m = enc.encode_descriptor(name, help, None, g.metric_type())?;
        let l: Labels = vec![("phase".into(), phase_now.to_string())];
        g.encode(m.encode_family(&l)?)?;
    }
    Ok(())
}

impl Collector for RunCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rec = self.0 .0.lock().unwrap().clone();
        let Some(rec) = rec else { return Ok(()) };
        let run = rec.snapshot();
        let phase_now = run.phases.last().map(|p| p.name.clone()).unwrap_or_default();
        encode_run(&run, &phase_now, &mut enc)
    }
}

/// The text a scrape returns for `source`.
pub fn render(source: &Source) -> Result<String> {
    let mut reg = Registry::default();
    reg.register_collector(Box::new(RunCollector(source.clone())));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg).map_err(|e| anyhow::anyhow!("encoding metrics: {e}"))?;
    Ok(out)
}

/// A listener serving `GET /metrics`; stops when dropped.
pub struct Server {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listen on `addr` ("127.0.0.1:9464") and serve `source`'s metrics.
pub async fn serve(addr: &str, source: Source) -> Result<Server> {
    let sa: std::net::SocketAddr = addr
        .parse()
        .map_err(|_| anyhow::anyhow!("--metrics-listen: '{addr}' is not an address such as 127.0.0.1:9464"))?;
    let l =
        tokio::net::TcpListener::bind(sa).await.with_context(|| format!("--metrics-listen: cannot listen on {sa}"))?;
    let addr = l.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = l.accept().await else { continue };
            let source = source.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = match tokio::time::timeout(std::time::Duration::from_secs(5), c.read(&mut buf)).await {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
                let req = String::from_utf8_lossy(&buf[..n]);
                let path = req.split_whitespace().nth(1).unwrap_or("");
                let resp = if req.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
                    match render(&source) {
                        Ok(body) => format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        Err(e) => format!("HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\n{e}\n"),
                    }
                } else {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                };
                let _ = c.write_all(resp.as_bytes()).await;
                let _ = c.shutdown().await;
            });
        }
    });
    Ok(Server { addr, task })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Kind, Record};
    use std::time::Duration;

    #[test]
    fn buckets_are_cumulative_with_sum_and_count() {
        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for us in [300, 800, 4_000, 2_000_000] {
            h.record(us).unwrap();
        }
        let (b, sum, count) = buckets(&h);
        assert_eq!(count, 4);
        assert!((sum - 2.0051).abs() < 0.01, "{sum}");
        let at = |le: f64| b.iter().find(|x| x.0 == le).unwrap().1;
        assert_eq!((at(0.0005), at(0.001), at(0.005), at(2.5), at(f64::INFINITY)), (1, 2, 3, 4, 4));
    }

    #[tokio::test]
    async fn a_scrape_returns_counters_and_histograms() {
        let rec = Arc::new(Recorder::new());
        rec.phase("cold");
        for (ok, ms) in [(true, 2), (true, 3), (false, 2000)] {
            rec.record(&Record {
                name: "show_job",
                kind: Kind::Transaction,
                latency: Duration::from_millis(ms),
                ok,
                class: None,
                error: None,
                attempts: 1,
                rows: 1,
            });
        }
        let src = Source::default();
        src.set(rec);
        let s = serve("127.0.0.1:0", src).await.unwrap();
        let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(out.contains(r#"coldswap_requests_total{phase="cold",name="show_job",outcome="ok"} 2"#), "{out}");
        assert!(out.contains(r#"coldswap_requests_total{phase="cold",name="show_job",outcome="failed"} 1"#), "{out}");
        assert!(out.contains(r#"coldswap_request_duration_seconds_count{phase="cold",name="show_job"} 3"#), "{out}");
        assert!(out.contains("# EOF"), "{out}");
        let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    }
}
