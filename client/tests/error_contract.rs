//! The error contract end to end, against a real cluster: a write whose outcome is unknown is
//! reported as `Indeterminate` carrying its write id, and sending it again with that id applies
//! it at most once; a retry whose result the server forgot is `Indeterminate`, not a failed
//! precondition.

use std::time::Duration;

use conclave_client::proto::{PutRequest, RequestId};
use conclave_client::{Client, ClientConfig, Error};
use conclave_testkit::Cluster;

#[tokio::test(flavor = "multi_thread")]
async fn an_indeterminate_counter_add_can_be_sent_again_and_applies_once() -> anyhow::Result<()> {
    let mut c = Cluster::start(3).await?;
    c.wait_for_leader(Duration::from_secs(30)).await?;
    let mut config = ClientConfig::new(c.endpoints());
    config.attempt_timeout = Duration::from_millis(300);
    config.call_timeout = Duration::from_millis(900);
    let client = Client::with_config(config).await?;
    client.counter_add("ids", 0).await?; // learn the members while the cluster answers
                                         // Every member frozen: the call cannot learn its outcome.
    for id in 1..=3 {
        c.pause(id)?;
    }
    let err = client.counter_add("ids", 1).await.expect_err("the cluster is frozen");
    let Error::Indeterminate(unknown) = err else { panic!("expected Indeterminate, got {err:?}") };
    let id = unknown.write_id.expect("an Indeterminate write carries its id");
    for id in 1..=3 {
        c.resume(id)?;
    }
    // Sent again as the same write: the original answer (previous value 0), applied once.
    let resent = Client::with_config(ClientConfig::new(c.endpoints())).await?;
    // This client's short deadline may pass again while the cluster elects: resend until known.
    let mut previous = None;
    for _ in 0..30 {
        match client.counter_add_as(&id, "ids", 1).await {
            Ok(p) => {
                previous = Some(p);
                break;
            }
            Err(Error::Indeterminate(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    assert_eq!(previous, Some(0), "the resend answers the original result");
    let again = client.counter_add_as(&id, "ids", 1).await?;
    assert_eq!(again, 0, "every resend answers the original result");
    assert_eq!(resent.counter_get("ids", false).await?.value, 1, "applied exactly once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_whose_result_was_forgotten_is_indeterminate() -> anyhow::Result<()> {
    let c = Cluster::start(1).await?;
    c.wait_for_leader(Duration::from_secs(30)).await?;
    let client = c.client().await?;
    let put = |seq: u64, first_incomplete: u64| PutRequest {
        key: b"k".to_vec(),
        value: format!("v{seq}").into_bytes(),
        request_id: Some(RequestId { client_id: 0x5eed, seq, first_incomplete }),
        ..Default::default()
    };
    client.put_request(put(1, 1)).await?;
    // The client reports seq 1 complete: the server forgets its result.
    client.put_request(put(2, 2)).await?;
    match client.put_request(put(1, 1)).await {
        Err(Error::Indeterminate(i)) => assert!(i.write_id.is_none(), "the caller set this id itself"),
        other => panic!("a forgotten retry must be Indeterminate, got {other:?}"),
    }
    // And it was not applied again.
    assert_eq!(client.get("k").await?.map(|kv| kv.value), Some(b"v2".to_vec()));
    Ok(())
}
