use std::process::ExitCode;

use clap::{Parser, Subcommand};
use otatrail::app::App;
use otatrail::app::profile::AwsFiles;
use otatrail::config::{LogFormat, ServeArgs, ServerConfig};
use tracing_subscriber::EnvFilter;

/// mimalloc: a tenth fewer instructions per call than glibc's allocator (callgrind,
/// CreateThing), whose arenas showed up as a sixth of the server's instructions.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc takes memory in large aligned regions; where transparent huge pages are set to
/// `always` (a common default), every region it touched became a 2 MiB page and the idle
/// server's resident set doubled (56 instead of 28 MiB). A small heap gains nothing from
/// huge pages, so the process opts out.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and touches no memory of ours.
    unsafe {
        // A kernel without the option refuses it: that costs memory, nothing else.
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// A self-hosted, AWS-compatible IoT OTA update service with a CloudTrail-compatible audit trail.
#[derive(Parser)]
#[command(name = "otatrail", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: AWS IoT, CloudTrail, STS and IAM on one port, S3 on another.
    ///
    /// Settings come from flags, then OTATRAIL_* environment variables, then the
    /// configuration file, then defaults. On first start with no account configured, an
    /// account and its root access key are created and aws CLI files are written to
    /// DIR/aws/; the three lines printed at start point the aws CLI and boto3 at them.
    /// Log verbosity: OTATRAIL_LOG (e.g. "info", "otatrail=debug").
    Serve(ServeArgs),
    /// Look up recorded CloudTrail events (newest first), as LookupEvents does, straight from
    /// the data directory: a table for people or one JSON record per line.
    Events(otatrail::events_cli::EventsArgs),
    /// Check a trail's log files against its signed digests, as `aws cloudtrail validate-logs`
    /// does, and more: the digest chain both ways, gaps and overlaps between digests, and log
    /// files no digest lists. Reads a data directory (--data-dir) or a running server or
    /// S3-compatible store (--endpoint-url, --s3-endpoint-url). Exit status: 0 all valid,
    /// 1 something invalid or missing, 255 validation could not run.
    ValidateLogs(otatrail::validate_logs::ValidateArgs),
}

/// Logs to stderr; lines are written until the returned guard is dropped.
#[must_use = "log lines still buffered are lost when the guard is dropped early"]
fn init_logging(format: LogFormat, default_level: &str) -> Option<otatrail::log_sink::FlushGuard> {
    let filter =
        EnvFilter::try_from_env("OTATRAIL_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // The server logs a line per request: batched, and written by a thread of its own (see
    // `log_sink`). Without that thread, straight to stderr.
    let (writer, guard) = match otatrail::log_sink::batched(Box::new(std::io::stderr()), "otatrail-log") {
        Ok((w, g)) => (tracing_subscriber::fmt::writer::BoxMakeWriter::new(w), Some(g)),
        Err(e) => {
            eprintln!("otatrail: cannot start the log thread ({e}); logging straight to stderr");
            (tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr), None)
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

fn main() -> ExitCode {
    // Before the runtime's threads allocate anything.
    no_transparent_huge_pages();
    // SAFETY: nothing has used SQLite yet, and only this thread runs.
    if !unsafe { otatrail::store::sqlite::use_server_allocator() } {
        eprintln!("otatrail: SQLite kept its own allocator");
    }
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("otatrail: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // validate-logs promises scripts 255 for anything that keeps it from running.
            let validating = std::env::args().nth(1).as_deref() == Some("validate-logs");
            let usage_error = !matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion);
            return match (validating && usage_error, e.exit_code()) {
                (true, _) => ExitCode::from(255),
                (false, code) => ExitCode::from(code as u8),
            };
        }
    };
    match cli.command {
        Command::Serve(args) => match serve(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("otatrail: {e}");
                ExitCode::FAILURE
            }
        },
        Command::ValidateLogs(args) => {
            // Only warnings: the report is the output.
            let _logging = init_logging(LogFormat::Text, "warn");
            otatrail::validate_logs::run(args).await
        }
        Command::Events(args) => match otatrail::events_cli::run(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("otatrail events: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = ServerConfig::load(&args)?;
    let _logging = init_logging(config.log_format, "info");
    let app = App::open(&config).await?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e} (choose another address with --listen)", config.listen))?;
    let addr = listener.local_addr()?;
    let endpoint = format!("http://{addr}");
    let s3_listener = tokio::net::TcpListener::bind(config.s3_listen)
        .await
        .map_err(|e| format!("cannot listen on {} for S3: {e} (choose another address with --s3-listen)", config.s3_listen))?;
    let s3_endpoint = format!("http://{}", s3_listener.local_addr()?);

    let data_dir = std::fs::canonicalize(&config.data_dir)?;
    let files = AwsFiles::in_dir(&data_dir);
    if config.accounts.is_empty() {
        let root = if app.identities.has_accounts().await? {
            app.identities.default_root().await?
        } else {
            let root = app.identities.create_account_with_root_key().await?;
            tracing::info!(account = %root.account_id, access_key_id = %root.access_key_id, "created the default account and its root access key");
            Some(root)
        };
        // Rewrite the credentials only when they are missing: the file may have been edited.
        let write_creds = root.as_ref().filter(|_| !files.credentials.exists());
        files.write(&endpoint, &s3_endpoint, &config.region, write_creds)?;
        println!("otatrail is listening on {endpoint}, S3 on {s3_endpoint} (data directory {})", data_dir.display());
        println!("Point the aws CLI and boto3 at it with:");
        for line in files.env_lines() {
            println!("  {line}");
        }
    } else {
        println!("otatrail is listening on {endpoint}, S3 on {s3_endpoint} (data directory {})", data_dir.display());
        println!("Accounts come from the configuration file; use their access keys with endpoint_url = {endpoint}");
    }
    tracing::info!(endpoint = %endpoint, s3_endpoint = %s3_endpoint, region = %config.region, store = app.store.backend(), "otatrail started");

    app.spawn_housekeeping();
    app.start_delivery_thread()?;
    // The job engine: rollouts, timeouts, abort criteria, completion, CONTINUOUS targets.
    app.spawn_job_engine(std::time::Duration::from_secs(2));
    // OTA updates: CREATE_PENDING to CREATE_COMPLETE (resumes unfinished ones after a restart).
    app.spawn_ota_engine(std::time::Duration::from_secs(2));
    // SNS messages carry URLs of this port (SubscribeURL, UnsubscribeURL, SigningCertURL);
    // `sns_public_url` overrides this for subscribers on other hosts.
    let reachable = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port())),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port())),
        _ => addr,
    };
    app.sns.set_listen_url(&format!("http://{reachable}"));
    app.spawn_sns_deliverer();
    app.spawn_lifecycle(std::time::Duration::from_secs(config.lifecycle_interval_seconds));
    // One signal stops both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let s3 = tokio::spawn(otatrail::server::run_s3(s3_listener, app.clone(), wait(stop_rx.clone())));
    otatrail::server::run(listener, app, wait(stop_rx)).await?;
    s3.await??;
    tracing::info!("otatrail stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
