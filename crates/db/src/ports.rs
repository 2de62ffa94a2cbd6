//! Loopback ports: a free one, or a clear line when one is taken.

use anyhow::{bail, Context, Result};
use std::net::{SocketAddr, TcpListener};

/// A free TCP port on 127.0.0.1, as the kernel hands it out.
pub fn free() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(l.local_addr()?.port())
}

/// Two different free ports.
pub fn free_pair() -> Result<(u16, u16)> {
    let a = free()?;
    let mut b = free()?;
    while b == a {
        b = free()?;
    }
    Ok((a, b))
}

/// Fail with one clear line if a loopback port is taken.
pub fn ensure_free(port: u16) -> Result<()> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    match TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!("port {port} on 127.0.0.1 is already in use"),
        Err(e) => bail!("cannot bind port {port} on 127.0.0.1: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_in_use_is_reported() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let e = ensure_free(port).unwrap_err().to_string();
        assert_eq!(e, format!("port {port} on 127.0.0.1 is already in use"));
        drop(l);
        ensure_free(port).unwrap();
        let (a, b) = free_pair().unwrap();
        assert_ne!(a, b);
    }
}
