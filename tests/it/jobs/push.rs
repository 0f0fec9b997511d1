//! Pushes reach offline users once per device, never online ones, collapse
//! per conversation, and a read brings the badge down.

use duet::Service;
use duet_jobs::queue::PUSH_QUEUE;
use reqwest::StatusCode;
use serde_json::json;

use super::{PushTest, apns_token, counter, fcm_token};

#[tokio::test]
async fn offline_receiver_gets_exactly_one_push_per_device_without_the_text() {
    let t = PushTest::spawn().await;
    let (ann, bob, iphone, android) = t.ann_and_bob_with_two_phones().await;
    let conversation = t.app.conversation(&ann, &bob).await;

    t.app.send_ok(&ann, conversation, "the secret plan").await;
    t.fake.wait_requests(&iphone, 1).await;
    t.fake.wait_requests(&android, 1).await;
    t.settled(PUSH_QUEUE, 1).await;

    let apns = t.fake.delivered(&iphone);
    assert_eq!(apns.len(), 1, "{apns:#?}");
    assert_eq!(apns[0].provider, "apns");
    let h = &apns[0].headers;
    assert_eq!((h["apns-push-type"].as_str(), h["apns-priority"].as_str()), ("alert", "10"));
    assert_eq!(h["apns-collapse-id"], conversation.to_string());
    let body = &apns[0].body;
    assert_eq!(body["aps"]["alert"]["body"], "New message");
    assert_eq!((body["aps"]["badge"].as_i64(), body["seq"].as_i64()), (Some(1), Some(1)));
    assert_eq!(body["conversationId"], conversation.to_string());

    let fcm = t.fake.delivered(&android);
    assert_eq!(fcm.len(), 1, "{fcm:#?}");
    let message = &fcm[0].body["message"];
    assert_eq!(message["notification"]["body"], "New message");
    assert_eq!(message["data"], json!({"conversationId": conversation.to_string(), "seq": "1", "badge": "1", "type": "message"}));
    for request in apns.iter().chain(&fcm) {
        assert!(!request.body.to_string().contains("secret"), "the text leaked: {}", request.body);
    }
    assert_eq!(t.fake.shared.state.lock().unwrap().grants, 1, "one OAuth grant");
    t.triggers_caught_up().await;
    let metrics = t.metrics().await;
    assert_eq!((counter(&metrics, "jobs_enqueued", "push"), counter(&metrics, "jobs_succeeded", "push")), (1, 1), "{metrics}");
}

#[tokio::test]
async fn online_receiver_gets_no_push_job() {
    let t = PushTest::spawn().await;
    let ann = t.app.register("Ann").await;
    let bob = t.app.register("Bob").await;
    t.device(&bob, "ios", &apns_token()).await;
    t.online(&bob).await;
    let conversation = t.app.conversation(&ann, &bob).await;

    t.app.send_ok(&ann, conversation, "hi").await;
    t.triggers_caught_up().await;
    assert!(t.jobs(PUSH_QUEUE).await.is_empty());
    let metrics = t.metrics().await;
    assert_eq!((counter(&metrics, "jobs_enqueued", "push"), counter(&metrics, "jobs_skipped", "push")), (0, 1), "{metrics}");
}

#[tokio::test]
async fn receiver_who_comes_online_before_the_job_runs_gets_no_push() {
    let t = PushTest::spawn_services(&[Service::CommandApi, Service::QueryApi, Service::Projector]).await;
    let (ann, bob, iphone, conversation) = t.ann_and_bob_with_an_iphone().await;
    t.app.send_ok(&ann, conversation, "hi").await;
    t.triggers_caught_up().await;
    assert_eq!(t.jobs(PUSH_QUEUE).await.len(), 1, "enqueued while bob was offline");

    t.online(&bob).await;
    let _worker = t.spawn_worker().await;
    t.settled(PUSH_QUEUE, 1).await;
    assert_eq!(t.jobs(PUSH_QUEUE).await[0].0, "Done");
    assert!(t.fake.requests(&iphone).is_empty());
    let open: i64 = sqlx::query_scalar("select count(*) from push_collapse").fetch_one(&t.app.db).await.unwrap();
    assert_eq!(open, 0, "the skipped notification no longer collapses later ones");
}

#[tokio::test]
async fn messages_collapse_into_one_push_until_read_and_a_read_sends_a_silent_badge_update() {
    let t = PushTest::spawn().await;
    let (ann, bob, iphone, android) = t.ann_and_bob_with_two_phones().await;
    let conversation = t.app.conversation(&ann, &bob).await;

    for i in 0..5 {
        t.app.send_ok(&ann, conversation, &format!("m{i}")).await;
    }
    t.fake.wait_requests(&iphone, 1).await;
    t.triggers_caught_up().await;
    t.settled(PUSH_QUEUE, 1).await;
    assert_eq!(t.jobs(PUSH_QUEUE).await.len(), 1, "five messages, one job");
    assert_eq!((t.fake.requests(&iphone).len(), t.fake.requests(&android).len()), (1, 1));

    // Bob reads on another device: the badge goes down silently everywhere.
    let (status, body) = t.app.post(&format!("/conversations/{conversation}/read"), Some(&bob.token), json!({"seq": 5})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    t.fake.wait_requests(&iphone, 2).await;
    t.fake.wait_requests(&android, 2).await;
    let silent = &t.fake.requests(&iphone)[1];
    assert_eq!((silent.headers["apns-push-type"].as_str(), silent.headers["apns-priority"].as_str()), ("background", "5"));
    assert_eq!(silent.body["aps"], json!({"content-available": 1, "badge": 0}));
    let data_only = &t.fake.requests(&android)[1].body["message"];
    assert!(data_only.get("notification").is_none(), "{data_only}");
    assert_eq!((data_only["data"]["type"].as_str(), data_only["data"]["badge"].as_str()), (Some("badge"), Some("0")));

    // The read ended the notification: the next message notifies again.
    t.app.send_ok(&ann, conversation, "again").await;
    t.fake.wait_requests(&iphone, 3).await;
    t.settled(PUSH_QUEUE, 3).await;
    let third = &t.fake.requests(&iphone)[2];
    assert_eq!((third.body["seq"].as_i64(), third.body["aps"]["badge"].as_i64()), (Some(6), Some(1)));
    assert_eq!(t.fake.requests(&iphone).len(), 3);
    t.triggers_caught_up().await;
    let metrics = t.metrics().await;
    assert_eq!(counter(&metrics, "jobs_enqueued", "push"), 2, "{metrics}");
    assert_eq!(counter(&metrics, "jobs_enqueued", "badge"), 1, "{metrics}");
    assert_eq!(counter(&metrics, "jobs_succeeded", "badge"), 1, "{metrics}");
    assert_eq!(counter(&metrics, "jobs_skipped", "push"), 4, "{metrics}");
}

#[tokio::test]
async fn previews_put_the_text_in_the_body_when_enabled() {
    let fake = crate::fake_push::FakePush::start().await;
    let mut settings = crate::helpers::fresh_settings();
    fake.configure(&mut settings);
    super::job_settings(&mut settings);
    settings.push_preview = true;
    let app = crate::helpers::TestApp::spawn_settings(settings, Service::ALL).await;
    let ann = app.register("Ann").await;
    let bob = app.register("Bob").await;
    let iphone = apns_token();
    let (status, _) = app.post("/devices/register", Some(&bob.token), json!({"platform": "ios", "token": iphone})).await;
    assert_eq!(status, StatusCode::CREATED);
    let conversation = app.conversation(&ann, &bob).await;
    app.send_ok(&ann, conversation, "lunch at noon?").await;
    fake.wait_requests(&iphone, 1).await;
    assert_eq!(fake.requests(&iphone)[0].body["aps"]["alert"]["body"], "lunch at noon?");
}

#[tokio::test]
async fn a_delivered_receipt_ends_the_collapse_so_the_next_message_notifies_again() {
    let t = PushTest::spawn().await;
    let ann = t.app.register("Ann").await;
    let bob = t.app.register("Bob").await;
    let android = fcm_token();
    t.device(&bob, "android", &android).await;
    let conversation = t.app.conversation(&ann, &bob).await;
    t.app.send_ok(&ann, conversation, "one").await;
    t.fake.wait_requests(&android, 1).await;
    t.app.send_ok(&ann, conversation, "two").await;
    t.triggers_caught_up().await;
    t.settled(PUSH_QUEUE, 1).await;
    assert_eq!(t.fake.requests(&android).len(), 1, "collapsed");

    // A device of Bob's fetched the messages (but he read nothing): no badge update.
    let (status, _) = t.app.post(&format!("/conversations/{conversation}/delivered"), Some(&bob.token), json!({"seq": 2})).await;
    assert_eq!(status, StatusCode::OK);
    t.app.send_ok(&ann, conversation, "three").await;
    t.fake.wait_requests(&android, 2).await;
    t.settled(PUSH_QUEUE, 2).await;
    let second = &t.fake.requests(&android)[1].body["message"]["data"];
    assert_eq!((second["type"].as_str(), second["seq"].as_str(), second["badge"].as_str()), (Some("message"), Some("3"), Some("3")));
    assert_eq!(t.jobs(PUSH_QUEUE).await.len(), 2);
}

#[tokio::test]
async fn a_push_is_decided_from_the_outbox_even_if_no_trigger_ran_when_the_message_was_stored() {
    // The process that stored the message runs no projector: nothing has
    // read its event when it is acknowledged (as if the process had died
    // right after the commit).
    let t = PushTest::spawn_services(&[Service::CommandApi, Service::QueryApi]).await;
    let (ann, _bob, iphone, conversation) = t.ann_and_bob_with_an_iphone().await;
    t.app.send_ok(&ann, conversation, "hi").await;
    assert!(t.jobs(PUSH_QUEUE).await.is_empty());

    // Another process relays the outbox and runs the triggers and workers.
    let later = duet::Application::build(t.app.settings.clone(), &[Service::Projector, Service::Jobs]).await.expect("builds");
    let _later = tokio::spawn(later.run_until_stopped(std::future::pending()));
    t.fake.wait_requests(&iphone, 1).await;
    t.settled(PUSH_QUEUE, 1).await;
    assert_eq!(t.fake.requests(&iphone)[0].body["seq"].as_i64(), Some(1));
}
