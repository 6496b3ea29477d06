//! latency-proxy — the tests' fault proxy, run on its own for `bench/remote.sh`: passes
//! HTTP requests to a server on 127.0.0.1 after a fixed delay each, without faults, so a
//! local REST server behaves like a far-away one. A development tool, never installed.
//!
//!     cargo run --release --example latency-proxy -- UPSTREAM_PORT DELAY_MS
//!
//! Prints the port it listens on (127.0.0.1), then runs until its standard input closes.

#[allow(dead_code)]
#[path = "../tests/support/faulty.rs"]
mod faulty;

use std::io::{Read, Write};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(upstream), Some(delay)) =
        (args.get(1).and_then(|a| a.parse::<u16>().ok()), args.get(2).and_then(|a| a.parse::<u64>().ok()))
    else {
        let _ = writeln!(std::io::stderr(), "usage: latency-proxy UPSTREAM_PORT DELAY_MS");
        std::process::exit(2);
    };
    let proxy = faulty::Faulty::with_latency(upstream, Duration::from_millis(delay));
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{}", proxy.port);
    let _ = out.flush();
    // Until whoever started us closes our input: no signals, no pid files.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(proxy);
}
