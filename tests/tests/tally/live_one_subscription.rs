//! However many streams watch however many posts, an api holds one NATS subscription for
//! counts (`tally.counts.>`) and fans it out in process; its only other one is the like
//! events' (`tally.like.*.*`, for the `liked_by_me` cache).

use std::time::Duration;

use tally_tests::{NatsServer, TestApp, api_config, postgres};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn twenty_streams_on_five_posts_share_the_apis_one_counts_subscription() {
    // Arrange: a second api on a NATS server whose subscriptions can be read.
    let app = TestApp::spawn().await;
    let nats = NatsServer::start_monitored().await;
    let mut config = api_config(postgres().url_as("tally_api", &app.db_name));
    config.nats_url = nats.url();
    let api = tally_api::Application::build(config)
        .await
        .expect("building the api");
    let api_url = format!("http://{}", api.local_addr());
    let stop = CancellationToken::new();
    let served = tokio::spawn(api.run_until_stopped(stop.clone().cancelled_owned()));
    let mut posts = Vec::new();
    for _ in 0..5 {
        posts.push(app.create_post("alice").await);
    }

    // Act
    let mut streams = Vec::new();
    for index in 0..20 {
        let ids = format!("{},{}", posts[index % 5], posts[(index + 1) % 5]);
        let response = reqwest::get(format!("{api_url}/v1/live?ids={ids}"))
            .await
            .expect("opening a stream");
        let mut stream = tally_tests::sse::SseReader::new(response);
        assert!(stream.next_event(Duration::from_secs(20)).await.is_some());
        streams.push(stream);
    }
    let subscriptions = TestApp::eventually(Duration::from_secs(10), || async {
        let mut subjects = nats.subscriptions_of("tally-api/").await;
        subjects.sort();
        (subjects.len() >= 2).then_some(subjects)
    })
    .await;

    // Assert
    assert_eq!(
        subscriptions,
        Some(vec![
            "tally.counts.>".to_owned(),
            "tally.like.*.*".to_owned()
        ])
    );

    drop(streams);
    stop.cancel();
    served
        .await
        .expect("the api panicked")
        .expect("the api failed");
    app.stop().await;
}
