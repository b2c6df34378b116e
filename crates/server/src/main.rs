//! The `sessionguard` binary.
//!
//! Exit codes: 0 after a clean shutdown (or a done command), 1 when the server or
//! command fails at run time (the whole error chain is printed) or, for `policy
//! check`, when a setting exceeds the guidance for its profile, 2 for usage and
//! configuration errors. `audit` has its own codes (0 no finding at or above
//! `--fail-on`, 1 findings, 2 recipe, credentials or target error).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use sessionguard_core::guidance;
use sessionguard_core::{Clock as _, SystemClock};
use sessionguard_server::config::{LogFormat, StoreConfig, process_env};
use sessionguard_server::{Config, KEY_FILE, Overrides, keys, policy_check};
use sessionguard_store_redis::RedisStore;
use tracing_subscriber::EnvFilter;

/// sessionguard: a session authority for web apps and REST APIs.
#[derive(Debug, Parser)]
#[command(name = "sessionguard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Address to listen on (overrides the file and SESSIONGUARD_LISTEN).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Folder of the embedded store (overrides the file and SESSIONGUARD_DATA_DIR).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Create a demo user (and an admin token if none is configured) and print
        /// their credentials once.
        #[arg(long)]
        demo: bool,
    },
    /// Manage the keys that sign access tokens.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Check any web app or API for session findings, black-box (see the
    /// README, "Audit your own app").
    Audit(sessionguard_audit::cli::AuditArgs),
    /// Inspect the session policy profiles.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Print every profile's effective settings next to the guidance they are
    /// measured against (NIST SP 800-63B-4, OWASP) and its source. Exits 1 when a
    /// setting exceeds the guidance for its profile.
    Check {
        /// TOML configuration file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a new key active now. The old key stays published until its tokens
    /// have expired; a running server picks the change up within a minute.
    Rotate {
        /// TOML configuration file (for keys.algorithm and the data folder).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Folder of the key file (overrides the file and SESSIONGUARD_DATA_DIR).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // Clap exits with code 2 on usage errors.
    let cli = Cli::parse();
    // The auditor is an HTTP client with its own output; it needs no tracing.
    let cli = match cli.command {
        Command::Audit(args) => return sessionguard_audit::cli::main(args),
        command => Cli { command },
    };
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
            demo,
        } => {
            let flags = Overrides::new(listen, data_dir);
            let config = match Config::load(config.as_deref(), process_env, &flags) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("config error: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logs(config.log_format);
            match serve(config, demo) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Keys {
            command: KeysCommand::Rotate { config, data_dir },
        } => {
            let flags = Overrides::new(None, data_dir);
            let config = match Config::load(config.as_deref(), process_env, &flags) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("config error: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logs(config.log_format);
            match rotate(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Audit(args) => sessionguard_audit::cli::main(args),
        Command::Policy {
            command: PolicyCommand::Check { config },
        } => {
            let config = match Config::load(config.as_deref(), process_env, &Overrides::default()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("config error: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logs(config.log_format);
            match check_policy(&config) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// Logs to standard error at `RUST_LOG`'s levels (default `info`), as text or
/// as one JSON object per line (`log_format`). Nothing logged carries a
/// secret: fields are ids, reason codes, route templates and error chains.
fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs.json().with_current_span(true).init(),
        _ => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// `policy check`: prints the report; `Ok(true)` when every setting is within
/// the guidance for its profile.
fn check_policy(config: &Config) -> anyhow::Result<bool> {
    let reports = guidance::check(&config.profiles);
    let mut out = std::io::stdout().lock();
    out.write_all(policy_check::render(&reports).as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")?;
    Ok(!policy_check::any_exceeding(&reports))
}

/// `keys rotate`: prints `rotated: new key <kid>` (a key id is public). With
/// `[store] kind = "redis"`, rotates the key set the nodes share.
fn rotate(config: &Config) -> anyhow::Result<()> {
    let max_ttl = config
        .profiles
        .iter()
        .map(|(_, p)| p.access_token_ttl)
        .max()
        .unwrap_or(config.policy.access_token_ttl);
    if let StoreConfig::Redis(settings) = &config.store {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let redis = sessionguard_server::redis_config(config, settings.clone());
        let kid = runtime.block_on(async {
            let store = RedisStore::connect(redis)
                .await
                .context("cannot connect to Redis")?;
            keys::rotate_shared(&store, config.keys.algorithm, max_ttl, SystemClock.now())
                .await
                .context("cannot rotate the shared signing keys")
        })?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "rotated: new key {kid}").context("cannot write to stdout")?;
        return Ok(());
    }
    sessionguard_server::create_data_dir(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data folder {}",
            config.data_dir.display()
        )
    })?;
    let path = config.data_dir.join(KEY_FILE);
    let kid = keys::rotate_key_file(&path, config.keys.algorithm, max_ttl, SystemClock.now())
        .with_context(|| format!("cannot rotate the signing keys at {}", path.display()))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "rotated: new key {kid}").context("cannot write to stdout")?;
    Ok(())
}

fn serve(config: Config, demo: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(sessionguard_server::serve(config, demo))
        .context("the server failed")
}
