//! `otatrail events`: the recorded history on the command line, read straight from the data
//! directory (the server may be running or not).

use std::path::PathBuf;
use std::sync::Arc;

use crate::app::history::lookup_page;
use crate::domain::history::{self, LookupInput};
use crate::domain::time::{Clock, Millis, SystemClock};
use crate::store::sqlite::SqliteStore;
use crate::store::{self, Store, StoreError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Clone, Debug, clap::Args)]
pub struct EventsArgs {
    /// Data directory of the server [default: ./otatrail-data]
    #[arg(long, env = "OTATRAIL_DATA_DIR", value_name = "DIR", default_value = "./otatrail-data")]
    pub data_dir: PathBuf,
    /// Account whose history to read; optional when the data directory has one account.
    #[arg(long, value_name = "ACCOUNT_ID")]
    pub account: Option<String>,
    /// Region whose history to read.
    #[arg(long, env = "OTATRAIL_REGION", default_value = "us-east-1")]
    pub region: String,
    /// One lookup attribute, as KEY=VALUE: EventId, EventName, ReadOnly, Username,
    /// ResourceType, ResourceName, EventSource or AccessKeyId.
    #[arg(long, value_name = "KEY=VALUE")]
    pub attribute: Option<String>,
    /// Oldest event time: RFC 3339 (2026-11-24T10:00:00Z) or epoch seconds.
    #[arg(long, value_name = "TIME")]
    pub start: Option<String>,
    /// Newest event time: RFC 3339 or epoch seconds.
    #[arg(long, value_name = "TIME")]
    pub end: Option<String>,
    /// How many events to print at most (newest first).
    #[arg(long, default_value_t = 50)]
    pub max: usize,
    /// A table for people, or one CloudTrail record per line for tools.
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
    /// Days of history visible, as the server's event_retention_days.
    #[arg(long, default_value_t = history::DEFAULT_RETENTION_DAYS)]
    pub retention_days: i64,
}

fn parse_time(s: &str) -> Result<Millis, String> {
    if let Ok(secs) = s.parse::<f64>() {
        return Ok(Millis((secs * 1000.0) as i64));
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("'{s}' is neither RFC 3339 (2026-11-24T10:00:00Z) nor epoch seconds"))?;
    Ok(Millis((t.unix_timestamp_nanos() / 1_000_000) as i64))
}

pub async fn run(args: EventsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let db = args.data_dir.join("otatrail.db");
    if !db.exists() {
        return Err(format!("no otatrail database in {} (give --data-dir)", args.data_dir.display()).into());
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).await?);
    let account = match args.account {
        Some(a) => a,
        None => {
            let accounts =
                store::read::<_, StoreError, _>(&*store, |tx| Box::pin(async move { tx.list_accounts().await })).await?;
            match accounts.as_slice() {
                [one] => one.id.clone(),
                [] => return Err("the data directory has no account yet".into()),
                many => {
                    let ids: Vec<&str> = many.iter().map(|a| a.id.as_str()).collect();
                    return Err(format!("several accounts ({}); choose one with --account", ids.join(", ")).into());
                }
            }
        }
    };
    let attributes = match &args.attribute {
        None => vec![],
        Some(a) => {
            let (k, v) = a.split_once('=').ok_or("--attribute takes KEY=VALUE, e.g. EventName=CreateStream")?;
            vec![(k.to_string(), v.to_string())]
        }
    };
    let start = args.start.as_deref().map(parse_time).transpose()?;
    let end = args.end.as_deref().map(parse_time).transpose()?;
    let mut token = None;
    let mut printed = 0usize;
    if args.output == Output::Table {
        println!("{:<20}  {:<28}  {:<24}  {:<26}  {:<5}  {:<32}  EVENT ID", "TIME", "EVENT NAME", "USERNAME", "SOURCE", "READ", "ERROR");
    }
    while printed < args.max {
        let input = LookupInput {
            attributes: attributes.clone(),
            start,
            end,
            event_category: None,
            max_results: Some((args.max - printed).min(50) as i64),
            next_token: token.take(),
        };
        let lookup = history::validate(input).map_err(|e| e.message)?;
        let page = lookup_page(&*store, SystemClock.now(), args.retention_days, &account, &args.region, lookup)
            .await
            .map_err(|e| e.message)?;
        for e in &page.events {
            match args.output {
                Output::Json => println!("{}", e.record),
                Output::Table => {
                    let record: serde_json::Value = serde_json::from_str(&e.record).unwrap_or_default();
                    println!(
                        "{:<20}  {:<28}  {:<24}  {:<26}  {:<5}  {:<32}  {}",
                        crate::domain::audit::event_time_text(e.event_time),
                        e.event_name,
                        e.username.as_deref().unwrap_or("-"),
                        e.event_source,
                        e.read_only,
                        record["errorCode"].as_str().unwrap_or("-"),
                        e.event_id
                    );
                }
            }
            printed += 1;
        }
        match page.next_token {
            Some(t) if !page.events.is_empty() => token = Some(t),
            _ => break,
        }
    }
    if args.output == Output::Table {
        eprintln!("{printed} event(s), account {account}, region {}", args.region);
    }
    Ok(())
}
