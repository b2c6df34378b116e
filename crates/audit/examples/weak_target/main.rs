//! A deliberately weak web app to try `sessionguard audit` on: one switch per
//! session flaw (see `app.rs` for the list). With no flaw switched on it has none
//! of the findings.
//!
//! ```text
//! cargo run -p sessionguard-audit --example weak_target -- --listen 127.0.0.1:8001 \
//!     --flaws no_server_logout,weak_cookie_flags
//! sessionguard audit --recipe crates/audit/examples/weak_target/form.toml
//! ```
//!
//! Options: `--listen ADDR` (default 127.0.0.1:8001), `--flaws a,b`, `--idle
//! DURATION` (3s), `--absolute DURATION` (8s), `--max-sessions N` (3). The user is
//! `alice` with the password `first password 1`.

mod app;

use std::io::Write as _;

fn main() -> Result<(), String> {
    let mut listen = "127.0.0.1:8001".to_owned();
    let mut config = app::Config::with_flaws("")?;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        let duration = |v: String| humantime::parse_duration(&v).map_err(|e| format!("{v}: {e}"));
        match a.as_str() {
            "--listen" => listen = value()?,
            "--flaws" => {
                let f = value()?;
                config.flaws = app::Config::with_flaws(&f)?.flaws;
            }
            "--idle" => config.idle = duration(value()?)?,
            "--absolute" => config.absolute = duration(value()?)?,
            "--max-sessions" => {
                config.max_sessions = value()?.parse().map_err(|_| "--max-sessions: a number")?;
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        // Its one line of output, for whoever started it to read the port.
        let mut out = std::io::stdout().lock();
        writeln!(out, "weak target listening on http://{addr}")
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())?;
        drop(out);
        app::serve(listener, app::Weak::new(config)).await;
        Ok(())
    })
}
