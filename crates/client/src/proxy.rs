//! The endpoint clients use: a small TCP proxy on loopback that forwards to
//! the current primary. A switchover swaps its target while load runs, as an
//! endpoint or DNS swap does; connections to the old primary can be cut.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

struct Inner {
    target: RwLock<SocketAddr>,
    generation: AtomicU64,
    /// Live proxied connections: (generation, task).
    conns: Mutex<Vec<(u64, AbortHandle)>>,
    accepted: AtomicU64,
    refused: AtomicU64,
    paused: std::sync::atomic::AtomicBool,
}

/// A running endpoint. Dropping it stops accepting and cuts every connection.
pub struct Endpoint {
    addr: SocketAddr,
    inner: Arc<Inner>,
    accept: AbortHandle,
}

impl Endpoint {
    /// Listen on 127.0.0.1 (a free port) and forward to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Endpoint> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            target: RwLock::new(target),
            generation: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            paused: std::sync::atomic::AtomicBool::new(false),
        });
        let i2 = inner.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { continue };
                let _ = client.set_nodelay(true);
                i2.accepted.fetch_add(1, Ordering::Relaxed);
                let gen = i2.generation.load(Ordering::SeqCst);
                let target = *i2.target.read().unwrap();
                let i3 = i2.clone();
                let paused = i2.paused.load(Ordering::SeqCst);
                let h = tokio::spawn(async move {
                    if paused {
                        // No target (between fence and promotion of a switchover
                        // that withdraws the endpoint): refuse by closing.
                        i3.refused.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    forward(client, target, &i3).await;
                });
                let mut conns = i2.conns.lock().unwrap();
                conns.retain(|(_, h)| !h.is_finished());
                conns.push((gen, h.abort_handle()));
            }
        })
        .abort_handle();
        Ok(Endpoint { addr, inner, accept })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where connections go now.
    pub fn target(&self) -> SocketAddr {
        *self.inner.target.read().unwrap()
    }

    /// Point new connections at `target`. With `cut`, close every existing
    /// connection (clients see a reset and reconnect to the new target).
    pub fn swap(&self, target: SocketAddr, cut: bool) {
        *self.inner.target.write().unwrap() = target;
        let old = self.inner.generation.fetch_add(1, Ordering::SeqCst);
        self.inner.paused.store(false, Ordering::SeqCst);
        if cut {
            let mut conns = self.inner.conns.lock().unwrap();
            conns.retain(|(g, h)| {
                if *g <= old {
                    h.abort();
                    false
                } else {
                    true
                }
            });
        }
        tracing::info!("endpoint {} now forwards to {target}", self.addr);
    }

    /// Refuse new connections until the next swap.
    pub fn pause(&self) {
        self.inner.paused.store(true, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn live_connections(&self) -> usize {
        let mut conns = self.inner.conns.lock().unwrap();
        conns.retain(|(_, h)| !h.is_finished());
        conns.len()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.accept.abort();
        for (_, h) in self.inner.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

async fn forward(mut client: TcpStream, target: SocketAddr, inner: &Inner) {
    let up = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(target)).await;
    let mut upstream = match up {
        Ok(Ok(s)) => s,
        _ => {
            // The client sees its connection closed during the handshake.
            inner.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server(tag: u8) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut b = [0u8; 1];
                    while s.read_exact(&mut b).await.is_ok() {
                        if s.write_all(&[tag]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        a
    }

    #[tokio::test]
    async fn swaps_and_cuts() {
        let a = echo_server(b'a').await;
        let b = echo_server(b'b').await;
        let ep = Endpoint::start(a).await.unwrap();
        let mut c1 = TcpStream::connect(ep.addr()).await.unwrap();
        let mut r = [0u8; 1];
        c1.write_all(b"x").await.unwrap();
        c1.read_exact(&mut r).await.unwrap();
        assert_eq!(r[0], b'a');
        ep.swap(b, true);
        // the old connection is cut
        let _ = c1.write_all(b"x").await;
        assert!(c1.read_exact(&mut r).await.is_err());
        let mut c2 = TcpStream::connect(ep.addr()).await.unwrap();
        c2.write_all(b"x").await.unwrap();
        c2.read_exact(&mut r).await.unwrap();
        assert_eq!(r[0], b'b');
    }
}
