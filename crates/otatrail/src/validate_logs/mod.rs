//! `otatrail validate-logs`: the checks of `aws cloudtrail validate-logs` and more (see
//! [`crate::domain::integrity`]), on a data directory or over the wire, with downloads and
//! hashing in parallel.
//!
//! Output follows the AWS tool's (`Digest file`/`Log file` lines, then the counts), so scripts
//! written for one read the other; the exit status is 0 when everything is valid, 1 when
//! anything is invalid or missing, 255 when validation could not run.

mod remote;
mod source;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::ServeArgs;
use crate::domain::audit::event_time_text;
use crate::domain::integrity::{
    self, DigestProblem, FetchedDigest, LogProblem, ValidDigest, check_chain, check_digest, check_log_file,
    newest_missing, parse_digest_key, parse_log_key, unlisted_log_files,
};
use crate::domain::time::Millis;
pub use source::{LogSource, SourceError, TrailArn};

#[derive(Clone, Debug, clap::Args)]
pub struct ValidateArgs {
    /// ARN of the trail: arn:aws:cloudtrail:<region>:<account>:trail/<name>
    #[arg(long, value_name = "ARN")]
    pub trail_arn: String,
    /// Oldest digest end to check: RFC 3339 (2026-11-24T10:00:00Z) or epoch seconds.
    #[arg(long, value_name = "TIME")]
    pub start_time: String,
    /// Newest time to check [default: now].
    #[arg(long, value_name = "TIME")]
    pub end_time: Option<String>,
    /// Region whose digests to check [default: the trail's home region].
    #[arg(long)]
    pub region: Option<String>,
    /// Bucket to read instead of the trail's (skips the trail lookup).
    #[arg(long, value_name = "BUCKET")]
    pub s3_bucket: Option<String>,
    /// Key prefix to use with --s3-bucket.
    #[arg(long, value_name = "PREFIX")]
    pub s3_prefix: Option<String>,
    /// Organization trails: the organization ID (o-…) in the keys [default: read from the
    /// data directory; required over the wire].
    #[arg(long, value_name = "O-ID")]
    pub organization_id: Option<String>,
    /// Organization trails: the member account whose files to check [default: the trail's].
    #[arg(long, value_name = "ACCOUNT_ID")]
    pub account_id: Option<String>,
    /// Also list every valid digest and log file.
    #[arg(long)]
    pub verbose: bool,
    /// Downloads and hashes at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// Read the server's data directory directly (the server may be running).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["endpoint_url", "s3_endpoint_url", "profile"])]
    pub data_dir: Option<PathBuf>,
    /// With --data-dir: the server's configuration file (for an external object store).
    #[arg(long, value_name = "FILE", requires = "data_dir")]
    pub config: Option<PathBuf>,
    /// CloudTrail endpoint of a running server [default: AWS_ENDPOINT_URL_CLOUDTRAIL,
    /// AWS_ENDPOINT_URL or the profile's endpoint_url].
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// S3 endpoint holding the bucket [default: AWS_ENDPOINT_URL_S3, the profile's `services`
    /// s3 endpoint_url, or the CloudTrail endpoint].
    #[arg(long, value_name = "URL")]
    pub s3_endpoint_url: Option<String>,
    /// Profile of the aws CLI files for credentials and endpoints [default: AWS_PROFILE].
    #[arg(long)]
    pub profile: Option<String>,
}

fn parse_time(s: &str) -> Result<Millis, SourceError> {
    if let Ok(secs) = s.parse::<f64>() {
        return Ok(Millis((secs * 1000.0) as i64));
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| SourceError(format!("'{s}' is neither RFC 3339 (2026-11-24T10:00:00Z) nor epoch seconds")))?;
    Ok(Millis((t.unix_timestamp_nanos() / 1_000_000) as i64))
}

/// Runs the command; prints errors itself.
pub async fn run(args: ValidateArgs) -> ExitCode {
    match validate(args).await {
        Ok(report) if report.all_valid() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("otatrail validate-logs: {e}");
            ExitCode::from(255)
        }
    }
}

#[derive(Default)]
struct Report {
    digests_valid: usize,
    digests_total: usize,
    logs_valid: usize,
    logs_total: usize,
    unlisted: usize,
    chain_problems: usize,
}

impl Report {
    fn all_valid(&self) -> bool {
        self.digests_valid == self.digests_total && self.logs_valid == self.logs_total && self.unlisted == 0 && self.chain_problems == 0
    }
}

fn progress(len: usize, what: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {elapsed}").expect("valid template").progress_chars("=> "));
    bar.set_prefix(what);
    bar
}

/// What one fetched digest turned out to be.
enum DigestOutcome {
    Valid(ValidDigest),
    Invalid(DigestProblem),
}

async fn fetch_digest(source: &dyn LogSource, bucket: &str, key: &str, region: &str, keys: &HashMap<String, Vec<u8>>) -> Result<DigestOutcome, SourceError> {
    let Some(f) = source.get(bucket, key).await? else { return Ok(DigestOutcome::Invalid(DigestProblem::NotFound)) };
    let (bucket, key, region, keys) = (bucket.to_string(), key.to_string(), region.to_string(), keys.clone());
    // Inflating and verifying is CPU work: off the async threads, so both cores do it.
    tokio::task::spawn_blocking(move || {
        let d = FetchedDigest { bucket: &bucket, key: &key, region: &region, gz: &f.bytes, signature_hex: f.signature.as_deref() };
        match check_digest(&d, &keys) {
            Ok(v) => DigestOutcome::Valid(v),
            Err(p) => DigestOutcome::Invalid(p),
        }
    })
    .await
    .map_err(|e| SourceError(format!("checking a digest: {e}")))
}

async fn fetch_log(source: &dyn LogSource, bucket: &str, key: &str, sha256: &str) -> Result<Result<(), LogProblem>, SourceError> {
    let Some(f) = source.get(bucket, key).await? else { return Ok(Err(LogProblem::NotFound)) };
    let sha256 = sha256.to_string();
    tokio::task::spawn_blocking(move || check_log_file(&f.bytes, &sha256)).await.map_err(|e| SourceError(format!("checking a log file: {e}")))
}

fn line(kind: &str, bucket: &str, key: &str, status: &str) {
    println!("{kind}\ts3://{bucket}/{key}\t{status}");
}

async fn validate(args: ValidateArgs) -> Result<Report, SourceError> {
    let arn = TrailArn::parse(&args.trail_arn)
        .ok_or_else(|| SourceError(format!("'{}' is not a trail ARN (arn:aws:cloudtrail:<region>:<account>:trail/<name>)", args.trail_arn)))?;
    let start = parse_time(&args.start_time)?;
    let end = match &args.end_time {
        Some(t) => parse_time(t)?,
        None => Millis(time::OffsetDateTime::now_utc().unix_timestamp() * 1000),
    };
    if start > end {
        return Err(SourceError(format!("--start-time ({}) is after --end-time ({})", event_time_text(start), event_time_text(end))));
    }
    let region = args.region.clone().unwrap_or_else(|| arn.home_region.clone());
    let source: Arc<dyn LogSource> = match &args.data_dir {
        Some(dir) => {
            let serve = ServeArgs { config: args.config.clone(), data_dir: Some(dir.clone()), ..Default::default() };
            Arc::new(source::LocalSource::open(&serve).await?)
        }
        None => {
            let settings = remote::RemoteSettings::resolve(args.endpoint_url.clone(), args.s3_endpoint_url.clone(), args.profile.clone())?;
            Arc::new(remote::RemoteSource::new(settings, region.clone()))
        }
    };
    let location = match &args.s3_bucket {
        Some(b) => source::TrailLocation {
            bucket: b.clone(),
            prefix: args.s3_prefix.clone().filter(|p| !p.is_empty()),
            is_organization_trail: args.organization_id.is_some(),
            ..Default::default()
        },
        None => source.trail(&arn).await?,
    };
    let org = args.organization_id.clone().or(location.organization_id.clone());
    if location.is_organization_trail && org.is_none() {
        return Err(SourceError(format!("{} is an organization trail: give --organization-id (and --account-id for a member's files)", arn.arn)));
    }
    println!("Validating log files for trail {} between {} and {}\n", arn.arn, event_time_text(start), event_time_text(end));

    const HOUR: i64 = 3_600_000;
    let keys = source.public_keys(&region, start, Millis(end.0 + 2 * HOUR)).await?;
    if keys.is_empty() {
        return Err(SourceError(format!("No public keys found between {} and {}", event_time_text(start), event_time_text(end))));
    }
    let bucket = location.bucket.clone();
    let prefix = location.prefix.as_deref().map(|p| format!("{p}/")).unwrap_or_default();
    let acct = args.account_id.as_ref().unwrap_or(&arn.account);
    // `[prefix/]AWSLogs/[<o-id>/]<account>/`
    let root = format!("{prefix}AWSLogs/{}{acct}/", org.as_deref().map(|o| format!("{o}/")).unwrap_or_default());

    // Every digest of the account and region whose end lies in range: this trail's form the
    // chain; other trails' count for which log files some digest lists.
    let digest_prefix = format!("{root}CloudTrail-Digest/{region}/");
    let listed: Vec<(String, integrity::DigestKeyInfo)> = source
        .list(&bucket, &digest_prefix, None)
        .await?
        .into_iter()
        .filter_map(|k| parse_digest_key(&k).map(|i| (k, i)))
        .filter(|(_, i)| i.account == *acct && i.region == region && i.end >= start && i.end.0 <= end.0 + HOUR)
        .collect();
    let ours = |i: &integrity::DigestKeyInfo| i.trail_name == arn.name && i.home_region == arn.home_region;
    let newest_listed = listed.iter().filter(|(_, i)| ours(i)).map(|(_, i)| i.end).max();

    let bar = progress(listed.len(), "digests");
    let mut outcomes: BTreeMap<String, DigestOutcome> = BTreeMap::new();
    {
        let mut fetches = futures::stream::iter(listed.iter().map(|(k, _)| {
            let (source, bucket, region, keys, bar) = (source.clone(), bucket.clone(), region.clone(), &keys, bar.clone());
            async move {
                let r = fetch_digest(&*source, &bucket, k, &region, keys).await;
                bar.inc(1);
                r.map(|o| (k.clone(), o))
            }
        }))
        .buffer_unordered(args.jobs as usize);
        while let Some(r) = fetches.next().await {
            let (k, o) = r?;
            outcomes.insert(k, o);
        }
    }
    bar.finish_and_clear();

    // A previous digest the chain names but the listing lacks (moved, or listed outside the
    // range) is fetched directly, as the AWS tool does.
    loop {
        let wanted: Vec<String> = outcomes
            .iter()
            .filter_map(|(k, o)| match o {
                DigestOutcome::Valid(v) if parse_digest_key(k).is_some_and(|i| ours(&i)) => v.content.previous.clone(),
                _ => None,
            })
            .filter(|(b, k)| *b == bucket && !outcomes.contains_key(k) && parse_digest_key(k).is_some_and(|i| i.end >= start))
            .map(|(_, k)| k)
            .collect();
        if wanted.is_empty() {
            break;
        }
        for k in wanted {
            let o = fetch_digest(&*source, &bucket, &k, &region, &keys).await?;
            outcomes.insert(k, o);
        }
    }

    let mut report = Report::default();
    let mut chain: Vec<ValidDigest> = Vec::new();
    let mut absent: HashSet<String> = HashSet::new();
    let mut listed_logs: HashSet<String> = HashSet::new();
    for (k, o) in &outcomes {
        let is_ours = parse_digest_key(k).is_some_and(|i| ours(&i));
        match o {
            DigestOutcome::Valid(v) => {
                listed_logs.extend(v.content.log_files.iter().filter(|f| f.bucket == bucket).map(|f| f.key.clone()));
                if is_ours {
                    chain.push(v.clone());
                }
            }
            DigestOutcome::Invalid(_) => {
                absent.insert(k.clone());
            }
        }
    }

    // Newest first, as the AWS tool prints.
    let mut ours_sorted: Vec<(&String, &DigestOutcome)> = outcomes.iter().filter(|(k, _)| parse_digest_key(k).is_some_and(|i| ours(&i))).collect();
    ours_sorted.sort_by_key(|(k, _)| std::cmp::Reverse(parse_digest_key(k).map(|i| i.end)));
    let logs: Vec<(String, String, String)> = ours_sorted
        .iter()
        .filter_map(|(_, o)| match o {
            DigestOutcome::Valid(v) => Some(v.content.log_files.iter().map(|f| (f.bucket.clone(), f.key.clone(), f.sha256.clone()))),
            DigestOutcome::Invalid(_) => None,
        })
        .flatten()
        .collect();
    let bar = progress(logs.len(), "log files");
    let mut log_results: HashMap<String, Result<(), LogProblem>> = HashMap::new();
    {
        let mut fetches = futures::stream::iter(logs.iter().map(|(b, k, sha)| {
            let (source, bar) = (source.clone(), bar.clone());
            async move {
                let r = fetch_log(&*source, b, k, sha).await;
                bar.inc(1);
                r.map(|r| (format!("{b}/{k}"), r))
            }
        }))
        .buffer_unordered(args.jobs as usize);
        while let Some(r) = fetches.next().await {
            let (k, r) = r?;
            log_results.insert(k, r);
        }
    }
    bar.finish_and_clear();

    for (k, o) in &ours_sorted {
        report.digests_total += 1;
        match o {
            DigestOutcome::Valid(v) => {
                report.digests_valid += 1;
                if args.verbose {
                    line("Digest file", &bucket, k, "valid");
                }
                for f in &v.content.log_files {
                    report.logs_total += 1;
                    match log_results.get(&format!("{}/{}", f.bucket, f.key)) {
                        Some(Ok(())) => {
                            report.logs_valid += 1;
                            if args.verbose {
                                line("Log file", &f.bucket, &f.key, "valid");
                            }
                        }
                        Some(Err(p)) => line("Log file", &f.bucket, &f.key, &format!("INVALID: {}", p.reason())),
                        None => line("Log file", &f.bucket, &f.key, "INVALID: not checked"),
                    }
                }
                if v.content.previous.is_none() && args.verbose {
                    println!("(digest chain starts at {}: logging or validation was started then)", v.content.start_text);
                }
            }
            DigestOutcome::Invalid(p) => line("Digest file", &bucket, k, &format!("INVALID: {}", p.reason())),
        }
    }

    let mut problems = check_chain(&chain, &absent);
    problems.extend(newest_missing(newest_listed, location.latest_digest, (start, end)));
    for p in &problems {
        match p.key() {
            Some(k) => line("Digest chain", &bucket, k, &format!("INVALID: {}", p.reason())),
            None => println!("Digest chain\ts3://{bucket}/{digest_prefix}\tINVALID: {}", p.reason()),
        }
    }
    report.chain_problems = problems.len();

    // Log files in the bucket that no digest lists: injected, or their digest is gone. Files
    // delivered after the newest digest are still waiting for theirs.
    let covered_until = Millis(newest_listed.max(location.latest_digest).map(|t| t.0).unwrap_or(i64::MIN).min(end.0));
    let log_prefix = format!("{root}CloudTrail/{region}/");
    let day = start.to_offset_datetime();
    let after = format!("{log_prefix}{:04}/{:02}/{:02}", day.year(), day.month() as u8, day.day());
    let in_bucket: Vec<(String, Millis)> = source
        .list(&bucket, &log_prefix, Some(&after))
        .await?
        .into_iter()
        .filter_map(|k| parse_log_key(&k).filter(|(a, r, _)| a == acct && *r == region).map(|(_, _, t)| (k, t)))
        .collect();
    let listed_refs: HashSet<&str> = listed_logs.iter().map(String::as_str).collect();
    let unlisted = unlisted_log_files(&in_bucket, &listed_refs, start, covered_until);
    let absent_ends: Vec<Millis> = absent.iter().filter_map(|k| parse_digest_key(k)).filter(|i| ours(i)).map(|i| i.end).collect();
    let valid_ends: Vec<Millis> = chain.iter().map(|d| d.content.end).collect();
    let times: HashMap<&str, Millis> = in_bucket.iter().map(|(k, t)| (k.as_str(), *t)).collect();
    for k in &unlisted {
        let why = match times.get(k) {
            Some(t) if integrity::in_absent_digest(*t, &absent_ends, &valid_ends) => {
                "INVALID: not listed in any digest (its digest is missing or invalid)"
            }
            _ => "INVALID: not listed in any digest",
        };
        line("Log file", &bucket, k, why);
    }
    report.unlisted = unlisted.len();

    let found: Vec<&ValidDigest> = chain.iter().collect();
    println!("\nResults requested for {} to {}", event_time_text(start), event_time_text(end));
    if ours_sorted.is_empty() {
        println!("No digests found");
    } else {
        let first = found.iter().map(|d| d.content.start).min();
        let last = found.iter().map(|d| d.content.end).max();
        match (first, last) {
            (Some(a), Some(b)) => println!("Results found for {} to {}:", event_time_text(a), event_time_text(b)),
            _ => println!("Results found: no valid digest"),
        }
    }
    println!("\n{}/{} digest files valid", report.digests_valid, report.digests_total);
    println!("{}/{} log files valid", report.logs_valid, report.logs_total);
    println!("{} log files not listed in any digest", report.unlisted);
    println!("{} digest chain breaks", report.chain_problems);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1700000000").unwrap(), Millis(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z").unwrap(), Millis(1_700_000_000_000));
        assert!(parse_time("yesterday").is_err());
    }
}
