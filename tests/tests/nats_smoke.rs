//! The NATS fixture works: JetStream publish with dedupe, read back, and data surviving a
//! stop/restart on the same port and store dir.

use async_nats::jetstream::{self, consumer::pull, stream::StorageType};
use futures::StreamExt;
use kyso_tests::nats::NatsServer;

async fn stream_of(url: &str) -> (jetstream::Context, jetstream::stream::Stream) {
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: "SMOKE".into(),
            subjects: vec!["smoke.>".into()],
            storage: StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    (js, stream)
}

#[tokio::test]
async fn jetstream_publish_dedupes_reads_back_and_survives_a_restart() {
    let mut server = NatsServer::start();
    let (js, stream) = stream_of(&server.url()).await;
    for _ in 0..2 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", "smoke-1");
        js.publish_with_headers("smoke.test", headers, "hello".into()).await.unwrap().await.unwrap();
    }
    let consumer = stream
        .get_or_create_consumer("reader", pull::Config { durable_name: Some("reader".into()), ..Default::default() })
        .await
        .unwrap();
    let mut messages =
        consumer.fetch().max_messages(10).expires(std::time::Duration::from_secs(1)).messages().await.unwrap();
    let mut seen = Vec::new();
    while let Some(message) = messages.next().await {
        let message = message.unwrap();
        seen.push(String::from_utf8(message.payload.to_vec()).unwrap());
        message.ack().await.unwrap();
    }
    assert_eq!(seen, vec!["hello"], "the duplicate Nats-Msg-Id was dropped");

    server.stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", server.port())).is_err(), "the outage is real");
    server.restart();
    let (_js, mut stream) = stream_of(&server.url()).await;
    assert_eq!(stream.info().await.unwrap().state.messages, 1, "file storage kept the message");
}
