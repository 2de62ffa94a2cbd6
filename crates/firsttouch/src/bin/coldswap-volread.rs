//! Read every file under a directory with pread, in parallel, as `fio` or
//! `dd` would to initialise a restored volume. coldswap runs it under the
//! first-touch library, so each block pays its fetch exactly as the server
//! would and is warm afterwards.
//!
//! Usage: coldswap-volread DIR THREADS [BLOCK_BYTES]

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(md) = e.metadata() else { continue };
        if md.is_dir() {
            walk(&e.path(), out);
        } else if md.is_file() {
            out.push((e.path(), md.len()));
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: coldswap-volread DIR THREADS [BLOCK_BYTES]");
        std::process::exit(2);
    }
    let threads: usize = args[2].parse().unwrap_or(8).max(1);
    let block: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(65536).max(4096);
    let mut files = Vec::new();
    walk(Path::new(&args[1]), &mut files);
    // Work items: (file index, offset) in block-sized reads.
    let mut items = Vec::new();
    for (i, (_, size)) in files.iter().enumerate() {
        let mut off = 0;
        while off < *size {
            items.push((i, off));
            off += block;
        }
    }
    let files = Arc::new(files);
    let items = Arc::new(items);
    let next = Arc::new(AtomicUsize::new(0));
    let bytes = Arc::new(AtomicUsize::new(0));
    let mut hs = Vec::new();
    for _ in 0..threads {
        let (files, items, next, bytes) = (files.clone(), items.clone(), next.clone(), bytes.clone());
        hs.push(std::thread::spawn(move || {
            let mut handles: Vec<Option<std::fs::File>> = (0..files.len()).map(|_| None).collect();
            let mut buf = vec![0u8; block as usize];
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(fi, off)) = items.get(k) else { break };
                if handles[fi].is_none() {
                    handles[fi] = std::fs::File::open(&files[fi].0).ok();
                }
                if let Some(f) = &handles[fi] {
                    if let Ok(n) = f.read_at(&mut buf, off) {
                        bytes.fetch_add(n, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for h in hs {
        let _ = h.join();
    }
    println!("{} {}", files.len(), bytes.load(Ordering::Relaxed));
}
