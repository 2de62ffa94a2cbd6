//! coldswap's **signals**: SIGINT and SIGTERM, once for the whole process.
//!
//! goose installs its own Ctrl-C handler (through the `ctrlc` crate) when a
//! load test starts; a process can have only one, so coldswap installs its
//! handler first and goose's attempt fails harmlessly. Whoever needs to react
//! (the load, to stop goose; the drill, to tear down) registers a hook or
//! waits on [`wait`].

#![warn(missing_docs)]

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};
use tokio::sync::Notify;

static RECEIVED: AtomicI32 = AtomicI32::new(0);
static NOTIFY: OnceLock<Notify> = OnceLock::new();
type Hook = Box<dyn Fn(i32) + Send + Sync>;
static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());

fn notify() -> &'static Notify {
    NOTIFY.get_or_init(Notify::new)
}

fn deliver(sig: i32) {
    if RECEIVED.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
        tracing::warn!("caught {}, stopping", if sig == libc::SIGINT { "SIGINT" } else { "SIGTERM" });
        if let Ok(h) = HOOKS.lock() {
            for f in h.iter() {
                f(sig);
            }
        }
        notify().notify_waiters();
    } else {
        // A second signal: the user insists. Leave now; the next run cleans up.
        eprintln!("coldswap: second signal, exiting immediately (the next run cleans up what is left)");
        std::process::exit(128 + sig);
    }
}

/// Install the handlers. Call once, early, inside a tokio runtime.
pub fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = ctrlc::set_handler(|| deliver(libc::SIGINT));
        tokio::spawn(async {
            if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                while s.recv().await.is_some() {
                    deliver(libc::SIGTERM);
                }
            }
        });
    });
}

/// Register a function called (from the signal thread) when a signal arrives.
pub fn on_signal(f: impl Fn(i32) + Send + Sync + 'static) {
    if let Ok(mut h) = HOOKS.lock() {
        h.push(Box::new(f));
    }
}

/// The signal received so far, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Resolves when a signal arrives (immediately if one already has).
pub async fn wait() -> i32 {
    loop {
        let n = notify().notified();
        if let Some(s) = received() {
            return s;
        }
        n.await;
    }
}

/// Exit code for a signal: 130 for SIGINT, 143 for SIGTERM.
pub fn exit_code(sig: i32) -> i32 {
    128 + sig
}

/// Error returned when work stops because of a signal.
#[derive(Debug)]
pub struct Interrupted(pub i32);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted by {}", if self.0 == libc::SIGINT { "SIGINT" } else { "SIGTERM" })
    }
}

impl std::error::Error for Interrupted {}

/// Run a future unless a signal arrives first.
pub async fn interruptible<T, E>(f: impl std::future::Future<Output = Result<T, E>>) -> anyhow::Result<T>
where
    E: Into<anyhow::Error>,
{
    tokio::select! {
        r = f => r.map_err(Into::into),
        s = wait() => Err(Interrupted(s).into()),
    }
}
