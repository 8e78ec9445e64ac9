//! Conformance of the IoT job methods: jobs, executions, counts, execution numbers.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::domain::Scope;
use crate::domain::jobs::{
    ExecStatus, Job, JobExecution, JobFilter, JobSpec, JobStatus, TargetSelection,
};
use crate::domain::things::Thing;
use crate::domain::time::Millis;
use crate::store::{StateTx, Store, StoreError, read, write};

pub(super) async fn run(store: &Arc<dyn Store>) {
    job_crud_and_listing(store).await;
    executions(store).await;
    due_jobs_follow_changes(store).await;
}

fn job(scope: &Scope, id: &str, status: JobStatus, sel: TargetSelection, targets: &[&str], t: i64) -> Job {
    Job {
        scope: scope.clone(),
        job_id: id.to_string(),
        status,
        target_selection: sel,
        targets: targets.iter().map(|s| s.to_string()).collect(),
        spec: JobSpec { document: format!("{{\"job\":\"{id}\"}}"), description: Some("d".into()), ..Default::default() },
        created_at: Millis(t),
        updated_at: Millis(t),
        completed_at: None,
    }
}

fn exec(scope: &Scope, job_id: &str, thing: &str, n: i64, status: ExecStatus) -> JobExecution {
    JobExecution {
        scope: scope.clone(),
        job_id: job_id.to_string(),
        thing_name: thing.to_string(),
        execution_number: n,
        status,
        force_canceled: false,
        status_details: BTreeMap::from([("k".to_string(), "v".to_string())]),
        queued_at: Some(Millis(5)),
        started_at: None,
        last_updated_at: Millis(5),
        version_number: 1,
    }
}

async fn w<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl for<'c> FnOnce(&'c mut dyn StateTx) -> futures::future::BoxFuture<'c, Result<T, StoreError>> + Clone + Send + 'static,
) -> Result<T, StoreError> {
    write::<T, StoreError, _>(&**store, f).await
}

async fn r<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl for<'c> FnOnce(&'c mut dyn StateTx) -> futures::future::BoxFuture<'c, Result<T, StoreError>> + Send + 'static,
) -> T {
    read::<T, StoreError, _>(&**store, f).await.unwrap()
}

async fn job_crud_and_listing(store: &Arc<dyn Store>) {
    let scope = Scope::new("444455556666", "us-east-1");
    let other = Scope::new("444455556666", "eu-west-1");
    let g = "arn:aws:iot:us-east-1:444455556666:thinggroup/fleet";
    let t = "arn:aws:iot:us-east-1:444455556666:thing/t1";
    let jobs = vec![
        job(&scope, "a", JobStatus::InProgress, TargetSelection::Snapshot, &[t], 10),
        job(&scope, "b", JobStatus::Completed, TargetSelection::Snapshot, &[g], 20),
        job(&scope, "c", JobStatus::InProgress, TargetSelection::Continuous, &[g, t], 30),
        job(&other, "a", JobStatus::InProgress, TargetSelection::Snapshot, &[t], 40),
    ];
    let js = jobs.clone();
    w(store, move |tx| {
        Box::pin(async move {
            for j in &js {
                tx.insert_job(j).await?;
            }
            Ok(())
        })
    })
    .await
    .unwrap();
    // A duplicate ID in the same scope is a conflict.
    let dup = jobs[0].clone();
    let e = w(store, move |tx| Box::pin(async move { tx.insert_job(&dup).await })).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");

    let s = scope.clone();
    let got = r(store, move |tx| Box::pin(async move { tx.get_job(&s, "c").await })).await.unwrap();
    assert_eq!(got, jobs[2]);

    // Newest first, keyset by sequence.
    let s = scope.clone();
    let all = r(store, move |tx| Box::pin(async move { tx.list_jobs(&s, &JobFilter::default(), None, 10).await })).await;
    assert_eq!(all.iter().map(|(_, j)| j.job_id.as_str()).collect::<Vec<_>>(), ["c", "b", "a"]);
    let (s, before) = (scope.clone(), all[0].0);
    let rest = r(store, move |tx| Box::pin(async move { tx.list_jobs(&s, &JobFilter::default(), Some(before), 1).await })).await;
    assert_eq!(rest.iter().map(|(_, j)| j.job_id.as_str()).collect::<Vec<_>>(), ["b"]);
    let s = scope.clone();
    let f = JobFilter { status: Some(JobStatus::InProgress), ..Default::default() };
    let ip = r(store, move |tx| Box::pin(async move { tx.list_jobs(&s, &f, None, 10).await })).await;
    assert_eq!(ip.iter().map(|(_, j)| j.job_id.as_str()).collect::<Vec<_>>(), ["c", "a"]);
    let s = scope.clone();
    let f = JobFilter { target: Some(g.to_string()), target_selection: Some(TargetSelection::Snapshot), ..Default::default() };
    let by_group = r(store, move |tx| Box::pin(async move { tx.list_jobs(&s, &f, None, 10).await })).await;
    assert_eq!(by_group.iter().map(|(_, j)| j.job_id.as_str()).collect::<Vec<_>>(), ["b"]);

    // New IN_PROGRESS jobs of every scope are due; finished ones never are.
    let active = r(store, |tx| {
        Box::pin(async move { tx.due_jobs(Millis(0), 1000).await })
    })
    .await;
    let mut ids: Vec<(String, String)> = active
        .iter()
        .map(|j| (j.scope.region.clone(), j.job_id.clone()))
        .collect();
    ids.sort();
    assert!(ids.contains(&("eu-west-1".into(), "a".into())) && ids.contains(&("us-east-1".into(), "c".into())));
    assert!(!ids.contains(&("us-east-1".into(), "b".into())));

    // Update and delete.
    let mut changed = jobs[0].clone();
    changed.status = JobStatus::Canceled;
    changed.spec.reason_code = Some("R".into());
    changed.completed_at = Some(Millis(99));
    changed.updated_at = Millis(99);
    let c = changed.clone();
    w(store, move |tx| Box::pin(async move { tx.update_job(&c).await })).await.unwrap();
    let s = scope.clone();
    assert_eq!(r(store, move |tx| Box::pin(async move { tx.get_job(&s, "a").await })).await, Some(changed));
    let s = scope.clone();
    assert!(w(store, move |tx| Box::pin(async move { tx.delete_job(&s, "a").await })).await.unwrap());
    let s = scope.clone();
    assert!(!w(store, move |tx| Box::pin(async move { tx.delete_job(&s, "a").await })).await.unwrap());
    let s = other.clone();
    assert!(r(store, move |tx| Box::pin(async move { tx.get_job(&s, "a").await })).await.is_some(), "other scope untouched");
}

async fn executions(store: &Arc<dyn Store>) {
    let scope = Scope::new("777788889999", "us-east-1");
    let j = job(&scope, "j", JobStatus::InProgress, TargetSelection::Snapshot, &["x"], 1);
    let j2 = job(&scope, "k", JobStatus::InProgress, TargetSelection::Snapshot, &["x"], 2);
    let s = scope.clone();
    let numbers = w(store, move |tx| {
        Box::pin(async move {
            tx.insert_job(&j).await?;
            tx.insert_job(&j2).await?;
            let mut numbers = vec![];
            for (job_id, thing, status) in [
                ("j", "t2", ExecStatus::Queued),
                ("j", "t1", ExecStatus::InProgress),
                ("j", "t3", ExecStatus::Waiting),
                ("j", "t4", ExecStatus::Succeeded),
                ("k", "t1", ExecStatus::Queued),
            ] {
                let n = tx.next_execution_number(&s, thing).await?;
                numbers.push(n);
                tx.insert_job_execution(&exec(&s, job_id, thing, n, status)).await?;
            }
            Ok(numbers)
        })
    })
    .await
    .unwrap();
    assert_eq!(numbers, [1, 1, 1, 1, 2], "numbers count per thing");

    let s = scope.clone();
    let visible = r(store, move |tx| {
        Box::pin(async move { tx.list_job_executions(&s, "j", &crate::domain::jobs::ExecStatus::VISIBLE, None, 10).await })
    })
    .await;
    assert_eq!(visible.iter().map(|e| e.thing_name.as_str()).collect::<Vec<_>>(), ["t1", "t2", "t4"]);
    let s = scope.clone();
    let page = r(store, move |tx| Box::pin(async move { tx.list_job_executions(&s, "j", &ExecStatus::VISIBLE, Some("t1"), 1).await })).await;
    assert_eq!(page.iter().map(|e| e.thing_name.as_str()).collect::<Vec<_>>(), ["t2"]);
    let s = scope.clone();
    let waiting = r(store, move |tx| Box::pin(async move { tx.list_job_executions(&s, "j", &[ExecStatus::Waiting], None, 10).await })).await;
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].status, ExecStatus::Waiting);

    let s = scope.clone();
    let mut counts = r(store, move |tx| Box::pin(async move { tx.count_job_executions(&s, "j").await })).await;
    counts.sort();
    assert_eq!(
        counts,
        [(ExecStatus::Waiting, 1), (ExecStatus::Queued, 1), (ExecStatus::InProgress, 1), (ExecStatus::Succeeded, 1)]
    );

    // A thing's executions, newest first, optionally of one job.
    let s = scope.clone();
    let t1 = r(store, move |tx| Box::pin(async move { tx.list_thing_job_executions(&s, "t1", &ExecStatus::VISIBLE, None, None, 10).await })).await;
    assert_eq!(t1.iter().map(|e| (e.job_id.as_str(), e.execution_number)).collect::<Vec<_>>(), [("k", 2), ("j", 1)]);
    let s = scope.clone();
    let t1 = r(store, move |tx| Box::pin(async move { tx.list_thing_job_executions(&s, "t1", &ExecStatus::VISIBLE, Some("j"), None, 10).await })).await;
    assert_eq!(t1.len(), 1);
    let s = scope.clone();
    let t1 = r(store, move |tx| Box::pin(async move { tx.list_thing_job_executions(&s, "t1", &ExecStatus::VISIBLE, None, Some(2), 10).await })).await;
    assert_eq!(t1.iter().map(|e| e.job_id.as_str()).collect::<Vec<_>>(), ["j"]);

    // Get (newest or by number), update, delete.
    let s = scope.clone();
    let mut e = r(store, move |tx| Box::pin(async move { tx.get_job_execution(&s, "j", "t1", None).await })).await.unwrap();
    assert_eq!(e.execution_number, 1);
    assert_eq!(e.status_details.get("k").map(String::as_str), Some("v"));
    e.status = ExecStatus::Succeeded;
    e.started_at = Some(Millis(7));
    e.version_number = 3;
    e.force_canceled = true;
    let e2 = e.clone();
    w(store, move |tx| Box::pin(async move { tx.update_job_execution(&e2).await })).await.unwrap();
    let s = scope.clone();
    assert_eq!(r(store, move |tx| Box::pin(async move { tx.get_job_execution(&s, "j", "t1", Some(1)).await })).await, Some(e));
    let s = scope.clone();
    assert!(r(store, move |tx| Box::pin(async move { tx.get_job_execution(&s, "j", "t1", Some(9)).await })).await.is_none());
    let s = scope.clone();
    assert!(w(store, move |tx| Box::pin(async move { tx.delete_job_execution(&s, "j", "t4", 1).await })).await.unwrap());
    // Numbers are never reused, even after a delete.
    let s = scope.clone();
    assert_eq!(w(store, move |tx| Box::pin(async move { tx.next_execution_number(&s, "t4").await })).await.unwrap(), 2);

    // Deleting a job removes its executions.
    let s = scope.clone();
    w(store, move |tx| Box::pin(async move { tx.delete_job(&s, "j").await })).await.unwrap();
    let s = scope.clone();
    let left = r(store, move |tx| Box::pin(async move { tx.list_thing_job_executions(&s, "t1", &ExecStatus::VISIBLE, None, None, 10).await })).await;
    assert_eq!(left.iter().map(|e| e.job_id.as_str()).collect::<Vec<_>>(), ["k"]);
    let s = scope.clone();
    assert!(r(store, move |tx| Box::pin(async move { tx.count_job_executions(&s, "j").await })).await.is_empty());
}

/// The due IDs of `scope` at `now`, longest due first.
async fn due_in(store: &Arc<dyn Store>, scope: &Scope, now: i64) -> Vec<String> {
    let jobs = r(store, move |tx| {
        Box::pin(async move { tx.due_jobs(Millis(now), 1000).await })
    })
    .await;
    jobs.into_iter()
        .filter(|j| &j.scope == scope)
        .map(|j| j.job_id)
        .collect()
}

async fn set_due(store: &Arc<dyn Store>, scope: &Scope, id: &'static str, due: Option<i64>) {
    let s = scope.clone();
    w(store, move |tx| {
        Box::pin(async move { tx.set_job_due(&s, id, due.map(Millis)).await })
    })
    .await
    .unwrap();
}

async fn due_jobs_follow_changes(store: &Arc<dyn Store>) {
    let scope = Scope::new("121212121212", "us-east-1");
    let other = Scope::new("121212121212", "eu-west-1");
    let g = "arn:aws:iot:us-east-1:121212121212:thinggroup/fleet";
    let js = vec![
        job(
            &scope,
            "snap",
            JobStatus::InProgress,
            TargetSelection::Snapshot,
            &[g],
            10,
        ),
        job(
            &scope,
            "cont",
            JobStatus::InProgress,
            TargetSelection::Continuous,
            &[g],
            20,
        ),
        job(
            &scope,
            "done",
            JobStatus::Completed,
            TargetSelection::Continuous,
            &[g],
            30,
        ),
    ];
    w(store, move |tx| {
        Box::pin(async move {
            for j in &js {
                tx.insert_job(j).await?;
            }
            Ok(())
        })
    })
    .await
    .unwrap();
    assert_eq!(
        due_in(store, &scope, 0).await,
        ["snap", "cont"],
        "new jobs are due"
    );

    // Scheduled: due once the time comes, longest due first; None: not on its own.
    set_due(store, &scope, "snap", Some(100)).await;
    set_due(store, &scope, "cont", Some(50)).await;
    assert!(due_in(store, &scope, 49).await.is_empty());
    assert_eq!(due_in(store, &scope, 50).await, ["cont"]);
    assert_eq!(due_in(store, &scope, 100).await, ["cont", "snap"]);
    let limited = r(store, |tx| {
        Box::pin(async move { tx.due_jobs(Millis(100), 1).await })
    })
    .await;
    assert_eq!(limited.len(), 1, "the limit holds");
    set_due(store, &scope, "snap", None).await;
    set_due(store, &scope, "cont", None).await;
    assert!(due_in(store, &scope, i64::MAX).await.is_empty());

    // Any change to a job's executions makes that job (only) due at once.
    let e = exec(&scope, "snap", "t1", 1, ExecStatus::Queued);
    let e2 = e.clone();
    w(store, move |tx| {
        Box::pin(async move { tx.insert_job_execution(&e2).await })
    })
    .await
    .unwrap();
    assert_eq!(due_in(store, &scope, 0).await, ["snap"]);
    set_due(store, &scope, "snap", Some(1_000)).await;
    let mut e2 = e.clone();
    e2.status = ExecStatus::InProgress;
    w(store, move |tx| {
        Box::pin(async move { tx.update_job_execution(&e2).await })
    })
    .await
    .unwrap();
    assert_eq!(due_in(store, &scope, 0).await, ["snap"]);
    set_due(store, &scope, "snap", None).await;
    let s = scope.clone();
    assert!(
        w(store, move |tx| Box::pin(async move {
            tx.delete_job_execution(&s, "snap", "t1", 1).await
        }))
        .await
        .unwrap()
    );
    assert_eq!(due_in(store, &scope, 0).await, ["snap"]);
    set_due(store, &scope, "snap", None).await;

    // A change that is rolled back leaves the job as it was.
    let e2 = e.clone();
    let failed = w(store, move |tx| {
        Box::pin(async move {
            tx.insert_job_execution(&e2).await?;
            Err::<(), _>(StoreError::Conflict("rolled back".into()))
        })
    })
    .await;
    assert!(failed.is_err());
    assert!(due_in(store, &scope, i64::MAX).await.is_empty());

    // A thing created (or put in a group) in the scope may be a new target of a CONTINUOUS
    // job: those become due, SNAPSHOT ones and other scopes' do not.
    let thing = |scope: &Scope, name: &str| Thing {
        scope: scope.clone(),
        name: name.to_string(),
        thing_id: format!("due-{}-{name}", scope.region),
        thing_type_name: None,
        attributes: Default::default(),
        version: 1,
        created_at: Millis(10),
        updated_at: Millis(10),
    };
    let t = thing(&other, "elsewhere");
    w(store, move |tx| {
        Box::pin(async move { tx.insert_thing(&t).await })
    })
    .await
    .unwrap();
    assert!(due_in(store, &scope, i64::MAX).await.is_empty());
    let t = thing(&scope, "newcomer");
    w(store, move |tx| {
        Box::pin(async move { tx.insert_thing(&t).await })
    })
    .await
    .unwrap();
    assert_eq!(due_in(store, &scope, 0).await, ["cont"]);
    set_due(store, &scope, "cont", None).await;
    let (s, now) = (scope.clone(), Millis(40));
    w(store, move |tx| {
        Box::pin(async move {
            tx.insert_thing_group(&crate::domain::things::ThingGroup {
                scope: s.clone(),
                name: "fleet".into(),
                group_id: "due-fleet".into(),
                parent: None,
                description: None,
                attributes: Default::default(),
                tags: vec![],
                version: 1,
                created_at: now,
                updated_at: now,
            })
            .await?;
            tx.add_thing_to_group(&s, "fleet", "newcomer", now).await
        })
    })
    .await
    .unwrap();
    assert_eq!(due_in(store, &scope, 0).await, ["cont"]);
}
