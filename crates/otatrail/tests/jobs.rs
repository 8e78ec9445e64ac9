//! The job engine in-process, with a clock the test moves: rollout rates, CONTINUOUS targets,
//! timeouts, abort criteria, SNAPSHOT completion, device updates, the service entry points.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use otatrail::app::App;
use otatrail::app::audit::Call;
use otatrail::config::{FileConfig, ServeArgs, ServerConfig};
use otatrail::domain::jobs::{
    AbortConfig, AbortCriteria, CreateJobBody, ExecStatus, ExponentialRolloutRate, JobExecutionsRolloutConfig, JobStatus,
    RateIncreaseCriteria, TimeoutConfig, validate_create_job,
};
use otatrail::domain::things::{CreateThingBody, CreateThingGroupBody, MembershipBody};
use otatrail::domain::time::{Clock, Millis};
use otatrail::domain::{Principal, Scope};

const ACCOUNT: &str = "111122223333";
const REGION: &str = "us-east-1";
const MIN: i64 = 60_000;

struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        Millis(self.0.load(Ordering::SeqCst))
    }
}

impl ManualClock {
    fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

struct Env {
    app: Arc<App>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let args = ServeArgs { data_dir: Some(dir.path().to_path_buf()), ..Default::default() };
    let config = ServerConfig::merge(&args, FileConfig::default()).unwrap();
    let mut app = App::open(&config).await.unwrap();
    let clock = Arc::new(ManualClock(AtomicI64::new(1_700_000_000_000)));
    Arc::get_mut(&mut app).expect("sole owner").clock = clock.clone();
    Env { app, clock, _dir: dir }
}

fn call(app: &App, name: &str) -> Arc<Call> {
    Arc::new(Call::internal(Principal::root(ACCOUNT, "AKIAROOT0000EXAMPLE1"), REGION, "iot.amazonaws.com", name, false, app.clock.now()))
}

fn scope() -> Scope {
    Scope::new(ACCOUNT, REGION)
}

fn group_arn(g: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:thinggroup/{g}")
}

async fn fleet(app: &App, group: &str, n: usize) -> Vec<String> {
    app.create_thing_group(&call(app, "CreateThingGroup"), group, &CreateThingGroupBody::default()).await.unwrap();
    let mut names = vec![];
    for i in 0..n {
        let t = format!("{group}-t{i:02}");
        add_thing(app, group, &t).await;
        names.push(t);
    }
    names
}

async fn add_thing(app: &App, group: &str, t: &str) {
    app.create_thing(&call(app, "CreateThing"), t, &CreateThingBody::default()).await.unwrap();
    let m = MembershipBody { thing_group_name: Some(group.into()), thing_name: Some(t.into()), ..Default::default() };
    app.change_thing_group_membership(&call(app, "AddThingToThingGroup"), &m, true).await.unwrap();
}

fn body(group: &str) -> CreateJobBody {
    CreateJobBody { targets: Some(vec![group_arn(group)]), document: Some(r#"{"op":"update"}"#.into()), ..Default::default() }
}

async fn counts(app: &App, job: &str) -> otatrail::domain::jobs::Counts {
    app.describe_job(&call(app, "DescribeJob"), job).await.unwrap().1
}

async fn status(app: &App, job: &str) -> JobStatus {
    app.describe_job(&call(app, "DescribeJob"), job).await.unwrap().0.status
}

#[tokio::test]
async fn fixed_rollout_rate_and_snapshot_completion() {
    let Env { app, clock, _dir } = env().await;
    let things = fleet(&app, "fixed", 5).await;
    let mut b = body("fixed");
    b.job_executions_rollout_config = Some(JobExecutionsRolloutConfig { maximum_per_minute: Some(2), exponential_rate: None });
    app.create_job(&call(&app, "CreateJob"), "fixed-job", &b).await.unwrap();
    let c = counts(&app, "fixed-job").await;
    assert_eq!((c.queued, c.waiting), (2, 3), "two released in the first minute");
    app.jobs_tick().await.unwrap();
    assert_eq!(counts(&app, "fixed-job").await.queued, 2, "no more within the minute");
    clock.advance(MIN);
    app.jobs_tick().await.unwrap();
    assert_eq!(counts(&app, "fixed-job").await.queued, 4);
    clock.advance(MIN);
    app.jobs_tick().await.unwrap();
    let c = counts(&app, "fixed-job").await;
    assert_eq!((c.queued, c.waiting), (5, 0));
    // Devices finish; the SNAPSHOT job completes once none is open.
    for (i, t) in things.iter().enumerate() {
        let s = app.update_job_execution(&scope(), t, "fixed-job", ExecStatus::InProgress, None, Some(1)).await.unwrap();
        assert_eq!((s.status, s.version_number), (ExecStatus::InProgress, 2));
        let end = if i == 0 { ExecStatus::Failed } else { ExecStatus::Succeeded };
        app.update_job_execution(&scope(), t, "fixed-job", end, None, None).await.unwrap();
    }
    assert_eq!(status(&app, "fixed-job").await, JobStatus::InProgress);
    app.jobs_tick().await.unwrap();
    let (job, c) = app.describe_job(&call(&app, "DescribeJob"), "fixed-job").await.unwrap();
    assert_eq!((job.status, c.succeeded, c.failed), (JobStatus::Completed, 4, 1));
    assert!(job.completed_at.is_some());
    // Terminal states are final.
    let e = app.update_job_execution(&scope(), &things[1], "fixed-job", ExecStatus::InProgress, None, None).await.unwrap_err();
    assert_eq!(e.code, "InvalidStateTransitionException");
}

#[tokio::test]
async fn exponential_rollout_grows_the_rate() {
    let Env { app, clock, _dir } = env().await;
    fleet(&app, "expo", 12).await;
    let mut b = body("expo");
    b.job_executions_rollout_config = Some(JobExecutionsRolloutConfig {
        maximum_per_minute: Some(5),
        exponential_rate: Some(ExponentialRolloutRate {
            base_rate_per_minute: Some(1),
            increment_factor: Some(2.0),
            rate_increase_criteria: Some(RateIncreaseCriteria { number_of_notified_things: Some(1), number_of_succeeded_things: None }),
        }),
    });
    app.create_job(&call(&app, "CreateJob"), "expo-job", &b).await.unwrap();
    let mut queued = vec![counts(&app, "expo-job").await.queued];
    for _ in 0..4 {
        clock.advance(MIN);
        app.jobs_tick().await.unwrap();
        queued.push(counts(&app, "expo-job").await.queued);
    }
    // 1, then rates 2, 4, 5 (capped), then the last 0 of 12 remaining.
    assert_eq!(queued, [1, 3, 7, 12, 12]);
}

#[tokio::test]
async fn continuous_jobs_reach_later_members() {
    let Env { app, _dir, .. } = env().await;
    fleet(&app, "cont", 1).await;
    let mut b = body("cont");
    b.target_selection = Some("CONTINUOUS".into());
    app.create_job(&call(&app, "CreateJob"), "cont-job", &b).await.unwrap();
    assert_eq!(counts(&app, "cont-job").await.queued, 1);
    add_thing(&app, "cont", "cont-late").await;
    let r = app.jobs_tick().await.unwrap();
    assert_eq!(r.added, 1);
    let e = app.describe_job_execution(&call(&app, "DescribeJobExecution"), "cont-job", "cont-late", None).await.unwrap().0;
    assert_eq!(e.status, ExecStatus::Queued);
    // Finishing every execution does not complete a CONTINUOUS job.
    for t in ["cont-t00", "cont-late"] {
        app.update_job_execution(&scope(), t, "cont-job", ExecStatus::Succeeded, None, None).await.unwrap();
    }
    app.jobs_tick().await.unwrap();
    assert_eq!(status(&app, "cont-job").await, JobStatus::InProgress);
    // A SNAPSHOT job does not reach later members.
    app.create_job(&call(&app, "CreateJob"), "snap-job", &body("cont")).await.unwrap();
    add_thing(&app, "cont", "cont-later").await;
    app.jobs_tick().await.unwrap();
    assert_eq!(counts(&app, "snap-job").await.queued, 2);
}

#[tokio::test]
async fn in_progress_timeouts() {
    let Env { app, clock, _dir } = env().await;
    let things = fleet(&app, "tmo", 2).await;
    let mut b = body("tmo");
    b.timeout_config = Some(TimeoutConfig { in_progress_timeout_in_minutes: Some(2) });
    app.create_job(&call(&app, "CreateJob"), "tmo-job", &b).await.unwrap();
    app.update_job_execution(&scope(), &things[0], "tmo-job", ExecStatus::InProgress, None, None).await.unwrap();
    let (e, t) = app.describe_job_execution(&call(&app, "DescribeJobExecution"), "tmo-job", &things[0], None).await.unwrap();
    assert_eq!(e.seconds_before_timeout(t.as_ref(), app.clock.now()), Some(120));
    clock.advance(MIN);
    assert_eq!(app.jobs_tick().await.unwrap().timed_out, 0);
    clock.advance(MIN);
    assert_eq!(app.jobs_tick().await.unwrap().timed_out, 1);
    let c = counts(&app, "tmo-job").await;
    assert_eq!((c.timed_out, c.queued), (1, 1), "queued executions do not time out");
}

#[tokio::test]
async fn abort_criteria_cancel_the_job() {
    let Env { app, _dir, .. } = env().await;
    let things = fleet(&app, "abrt", 6).await;
    let mut b = body("abrt");
    b.abort_config = Some(AbortConfig {
        criteria_list: Some(vec![AbortCriteria {
            failure_type: Some("ALL".into()),
            action: Some("CANCEL".into()),
            threshold_percentage: Some(50.0),
            min_number_of_executed_things: Some(2),
        }]),
    });
    app.create_job(&call(&app, "CreateJob"), "abrt-job", &b).await.unwrap();
    app.update_job_execution(&scope(), &things[0], "abrt-job", ExecStatus::Rejected, None, None).await.unwrap();
    app.update_job_execution(&scope(), &things[1], "abrt-job", ExecStatus::InProgress, None, None).await.unwrap();
    assert_eq!(app.jobs_tick().await.unwrap().aborted, 0, "one executed thing is below the minimum");
    assert_eq!(status(&app, "abrt-job").await, JobStatus::InProgress);
    app.update_job_execution(&scope(), &things[2], "abrt-job", ExecStatus::Succeeded, None, None).await.unwrap();
    assert_eq!(app.jobs_tick().await.unwrap().aborted, 1);
    let (job, c) = app.describe_job(&call(&app, "DescribeJob"), "abrt-job").await.unwrap();
    assert_eq!(job.status, JobStatus::Canceled);
    assert_eq!((c.canceled, c.in_progress, c.rejected, c.succeeded), (3, 1, 1, 1), "in-progress ones run on");
}

#[tokio::test]
async fn service_entry_points() {
    let Env { app, _dir, .. } = env().await;
    let things = fleet(&app, "ota", 2).await;
    // As CreateOTAUpdate will: an already built job under an internal call.
    let valid = validate_create_job("AFR_OTA-update1", &body("ota")).unwrap();
    let job = app.create_job_as_service(&call(&app, "CreateJob"), valid.clone()).await.unwrap();
    assert_eq!(job.arn(), format!("arn:aws:iot:{REGION}:{ACCOUNT}:job/AFR_OTA-update1"));
    let dup = app.create_job_as_service(&call(&app, "CreateJob"), valid).await.unwrap_err();
    assert_eq!(dup.code, "ResourceAlreadyExistsException");
    app.update_job_execution(&scope(), &things[0], "AFR_OTA-update1", ExecStatus::InProgress, None, None).await.unwrap();
    let e = app.update_job_execution(&scope(), &things[0], "AFR_OTA-update1", ExecStatus::Succeeded, None, Some(9)).await.unwrap_err();
    assert_eq!(e.code, "VersionConflictException");
    let e = app.update_job_execution(&scope(), &things[0], "AFR_OTA-update1", ExecStatus::Canceled, None, None).await.unwrap_err();
    assert_eq!(e.code, "InvalidRequestException");
    let e = app.delete_job_internal(&scope(), "AFR_OTA-update1", false).await.unwrap_err();
    assert_eq!(e.code, "InvalidStateTransitionException");
    assert!(app.delete_job_internal(&scope(), "AFR_OTA-update1", true).await.unwrap());
    assert!(!app.delete_job_internal(&scope(), "AFR_OTA-update1", true).await.unwrap());
}

#[tokio::test]
async fn the_engine_visits_only_jobs_with_something_due() {
    let Env { app, clock, _dir } = env().await;
    let things = fleet(&app, "idle", 2).await;
    app.create_job(&call(&app, "CreateJob"), "idle-job", &body("idle")).await.unwrap();
    assert_eq!(app.jobs_tick().await.unwrap().jobs, 0, "nothing to do until a device answers");
    clock.advance(MIN * 60);
    assert_eq!(app.jobs_tick().await.unwrap().jobs, 0, "nor an hour later");
    for (i, t) in things.iter().enumerate() {
        app.update_job_execution(&scope(), t, "idle-job", ExecStatus::Succeeded, None, None).await.unwrap();
        let r = app.jobs_tick().await.unwrap();
        assert_eq!((r.jobs, r.completed), (1, i), "an execution changed: one visit");
        assert_eq!(app.jobs_tick().await.unwrap().jobs, 0, "then none");
    }
    // A rollout waits for its next window without being looked at meanwhile.
    fleet(&app, "slow", 3).await;
    let mut b = body("slow");
    b.job_executions_rollout_config = Some(JobExecutionsRolloutConfig { maximum_per_minute: Some(1), exponential_rate: None });
    app.create_job(&call(&app, "CreateJob"), "slow-job", &b).await.unwrap();
    clock.advance(MIN / 2);
    assert_eq!(app.jobs_tick().await.unwrap().jobs, 0);
    clock.advance(MIN / 2);
    let r = app.jobs_tick().await.unwrap();
    assert_eq!((r.jobs, r.released), (1, 1));
}
