//! Push failures: retries with backoff, dead jobs, rejected tokens, and a
//! worker killed mid-send.

use std::time::Duration;

use duet::Service;
use duet_jobs::queue::PUSH_QUEUE;

use super::{PushTest, apns_token, counter, fcm_token};
use crate::fake_push::Reply;

#[tokio::test]
async fn temporary_failures_are_retried_with_backoff_honouring_retry_after() {
    let t = PushTest::spawn().await;
    let ann = t.app.register("Ann").await;
    let bob = t.app.register("Bob").await;
    let (android, iphone, ipad) = (fcm_token(), apns_token(), apns_token());
    t.fake.script(&android, [Reply::new(503, "UNAVAILABLE").retry_after(2), Reply::new(429, "QUOTA_EXCEEDED")]);
    t.fake.script(&iphone, [Reply::new(500, "InternalServerError"), Reply::new(503, "ServiceUnavailable")]);
    t.fake.script(&ipad, [Reply::new(429, "TooManyRequests")]);
    for (platform, token) in [("android", &android), ("ios", &iphone), ("ios", &ipad)] {
        t.device(&bob, platform, token).await;
    }
    let conversation = t.app.conversation(&ann, &bob).await;
    t.app.send_ok(&ann, conversation, "hi").await;

    t.fake.wait_requests(&android, 3).await;
    t.fake.wait_requests(&iphone, 3).await;
    t.settled(PUSH_QUEUE, 3).await;
    let statuses = |token: &str| t.fake.requests(token).iter().map(|r| r.status).collect::<Vec<_>>();
    assert_eq!(statuses(&android), [503, 429, 200]);
    assert_eq!(statuses(&iphone), [500, 503, 200]);
    assert_eq!(statuses(&ipad), [429, 200], "a delivered device is not sent to again");
    let at = t.fake.requests(&android).iter().map(|r| r.at).collect::<Vec<_>>();
    assert!(at[1] - at[0] >= Duration::from_secs(2), "Retry-After honoured: {:?}", at[1] - at[0]);
    let jobs = t.jobs(PUSH_QUEUE).await;
    assert_eq!(jobs.iter().map(|j| j.1["attempt"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(jobs.iter().all(|j| j.0 == "Done"), "{jobs:?}");
    let metrics = t.metrics().await;
    assert_eq!((counter(&metrics, "jobs_retried", "push"), counter(&metrics, "jobs_succeeded", "push")), (2, 1), "{metrics}");
}

#[tokio::test]
async fn a_push_failing_every_attempt_is_recorded_dead_with_its_error() {
    let t = PushTest::spawn().await;
    let ann = t.app.register("Ann").await;
    let bob = t.app.register("Bob").await;
    let android = fcm_token();
    t.fake.script(&android, [Reply::new(503, "UNAVAILABLE"), Reply::new(503, "UNAVAILABLE"), Reply::new(503, "UNAVAILABLE")]);
    t.device(&bob, "android", &android).await;
    let conversation = t.app.conversation(&ann, &bob).await;
    t.app.send_ok(&ann, conversation, "hi").await;

    t.fake.wait_requests(&android, 3).await;
    t.settled(PUSH_QUEUE, 3).await;
    let dead = duet_jobs::queue::dead_jobs(&t.app.db).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].job["attempt"], 3);
    let error = dead[0].last_result.as_ref().map(|r| r.to_string()).unwrap_or_default();
    assert!(error.contains("503") && error.contains("UNAVAILABLE"), "{error}");
    assert_eq!(t.fake.requests(&android).len(), 3, "no attempt after the last");
    let metrics = t.metrics().await;
    assert_eq!((counter(&metrics, "jobs_retried", "push"), counter(&metrics, "jobs_dead", "push")), (2, 1), "{metrics}");

    // The dead notification does not swallow the next message's.
    t.app.send_ok(&ann, conversation, "still there?").await;
    t.fake.wait_requests(&android, 4).await;
    assert_eq!(t.fake.requests(&android)[3].status, 200);

    // Housekeeping drops finished jobs after a day but keeps dead ones for a month.
    t.settled(PUSH_QUEUE, 4).await;
    sqlx::query("update apalis.jobs set done_at = now() - interval '2 days'").execute(&t.app.db).await.unwrap();
    assert_eq!(duet_jobs::queue::prune_finished(&t.app.db).await.unwrap(), 3);
    assert_eq!(duet_jobs::queue::dead_jobs(&t.app.db).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_permanent_error_is_dead_at_once() {
    let t = PushTest::spawn().await;
    let ann = t.app.register("Ann").await;
    let bob = t.app.register("Bob").await;
    let iphone = apns_token();
    t.fake.script(&iphone, [Reply::new(413, "PayloadTooLarge")]);
    t.device(&bob, "ios", &iphone).await;
    let conversation = t.app.conversation(&ann, &bob).await;
    t.app.send_ok(&ann, conversation, "hi").await;
    t.fake.wait_requests(&iphone, 1).await;
    t.settled(PUSH_QUEUE, 1).await;
    let dead = duet_jobs::queue::dead_jobs(&t.app.db).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].last_result.as_ref().unwrap().to_string().contains("PayloadTooLarge"));
    assert_eq!(t.jobs(PUSH_QUEUE).await.len(), 1, "not retried");
    assert_eq!(t.device_tokens(&bob).await, [iphone], "the token is kept");
}

#[tokio::test]
async fn unregistered_and_invalid_tokens_are_deleted() {
    let t = PushTest::spawn().await;
    let ann = t.app.register("Ann").await;
    let bob = t.app.register("Bob").await;
    let (fcm_gone, fcm_invalid, apns_gone, apns_bad, good) = (fcm_token(), fcm_token(), apns_token(), apns_token(), apns_token());
    t.fake.script(&fcm_gone, [Reply::new(404, "UNREGISTERED")]);
    t.fake.script(&fcm_invalid, [Reply::new(400, "INVALID_ARGUMENT")]);
    t.fake.script(&apns_gone, [Reply::new(410, "Unregistered")]);
    t.fake.script(&apns_bad, [Reply::new(400, "BadDeviceToken")]);
    let malformed = "not-an-apns-token".to_owned();
    for (platform, token) in
        [("android", &fcm_gone), ("android", &fcm_invalid), ("ios", &apns_gone), ("ios", &apns_bad), ("ios", &malformed), ("ios", &good)]
    {
        t.device(&bob, platform, token).await;
    }
    let conversation = t.app.conversation(&ann, &bob).await;
    t.app.send_ok(&ann, conversation, "hi").await;

    t.fake.wait_requests(&good, 1).await;
    t.settled(PUSH_QUEUE, 1).await;
    assert_eq!(t.device_tokens(&bob).await, std::slice::from_ref(&good));
    assert_eq!(t.fake.requests(&malformed)[0].status, 400, "APNs refuses a malformed token");
    let jobs = t.jobs(PUSH_QUEUE).await;
    assert_eq!(jobs.len(), 1, "a rejected token is not a reason to retry: {jobs:?}");
    assert_eq!(jobs[0].0, "Done");
}

#[tokio::test]
async fn a_worker_killed_mid_send_is_retried_elsewhere_without_a_duplicate() {
    let t = PushTest::spawn_services(&[Service::CommandApi, Service::QueryApi, Service::Projector]).await;
    // Devices are sent to in registration order: the iPhone first.
    let (ann, bob, iphone, android) = t.ann_and_bob_with_two_phones().await;
    t.fake.hold(&iphone);
    let conversation = t.app.conversation(&ann, &bob).await;

    let first = t.spawn_worker().await;
    t.app.send_ok(&ann, conversation, "hi").await;
    t.fake.wait_requests_including_held(&iphone).await;
    first.abort();
    let _ = first.await;

    // Another process finds the job orphaned (its worker stopped beating) and runs it again.
    let _second = t.spawn_worker().await;
    t.fake.wait_requests(&android, 1).await;
    t.settled(PUSH_QUEUE, 1).await;
    let jobs = t.jobs(PUSH_QUEUE).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].0, "Done");
    assert_eq!(t.fake.requests(&android).len(), 1);
    assert_eq!(t.fake.held_requests(&iphone), 1, "the iPhone is not sent to again: its send was in doubt");
    let runs: i32 =
        sqlx::query_scalar("select attempts from apalis.jobs where job_type = $1").bind(PUSH_QUEUE).fetch_one(&t.app.db).await.unwrap();
    assert!(runs >= 2, "the job ran twice ({runs})");
}

#[tokio::test]
async fn a_push_whose_outcome_is_unknown_is_not_sent_again() {
    let t = PushTest::spawn_configured(Service::ALL, |s| s.push_timeout_secs = 1).await;
    let (ann, bob, iphone, android) = t.ann_and_bob_with_two_phones().await;
    // The request reaches APNs but no answer comes back before the timeout.
    t.fake.hold(&iphone);
    t.fake.script(&android, [Reply::new(503, "UNAVAILABLE")]);
    let conversation = t.app.conversation(&ann, &bob).await;
    t.app.send_ok(&ann, conversation, "hi").await;

    // The Android retry runs as a second attempt; the iPhone is not tried again.
    t.fake.wait_requests(&android, 2).await;
    t.settled(PUSH_QUEUE, 2).await;
    assert_eq!(t.fake.held_requests(&iphone), 1);
    let claim: String =
        sqlx::query_scalar("select state from push_deliveries d join device_tokens t on t.id = d.device_id where t.token = $1")
            .bind(&iphone)
            .fetch_one(&t.app.db)
            .await
            .unwrap();
    assert_eq!(claim, "sending", "the in-doubt claim is kept");
}
