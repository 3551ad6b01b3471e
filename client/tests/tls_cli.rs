//! `conclavectl --cacert --cert --key` against a real cluster with mutual TLS on the client port
//! (certificates generated at test time).

use anyhow::{ensure, Result};
use conclave_testkit::tls::TestCerts;
use std::time::Duration;

use conclave_testkit::{wait_for, Cluster, ClusterOptions};

use common::run;

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conclavectl_over_mutual_tls() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = TestCerts::new(dir.path())?;
    let c = Cluster::start_with(ClusterOptions {
        nodes: 1,
        extra_args: certs.server_args(true),
        client_tls: Some(certs.client_tls(true)?),
        ..ClusterOptions::default()
    })
    .await?;
    let ep = c.endpoints().join(",");
    let path = |p: &std::path::PathBuf| p.display().to_string();
    let (ca, cert, key) = (path(&certs.pki.ca()), path(&certs.client.0), path(&certs.client.1));
    let ctl = |tls: &[&str], args: &[&str]| {
        let mut all: Vec<String> = vec!["--endpoints".into(), ep.clone()];
        all.extend(tls.iter().chain(args).map(|s| (*s).to_owned()));
        async move { run(&all, None).await }
    };
    let full = ["--cacert", &ca, "--cert", &cert, "--key", &key];
    ctl(&full, &["put", "k", "v"]).await?.ok()?;
    let got = ctl(&full, &["get", "k", "-o", "json"]).await?.json()?;
    ensure!(got.to_string().contains("\"v\""), "{got}");
    wait_for("endpoint health over TLS", Duration::from_secs(10), || async {
        ctl(&full, &["endpoint", "health"]).await.ok()?.ok().ok()
    })
    .await?;

    ctl(&["--cacert", &ca], &["get", "k", "--timeout", "3"]).await?.failed(1)?;
    // One attempt per endpoint: a connect failure saying the server refused the handshake.
    let no_cert = ctl(&["--cacert", &ca], &["endpoint", "health"]).await?.failed(1)?;
    ensure!(no_cert.stdout.contains("refused by the server"), "says the server refused the connection: {no_cert:?}");
    ctl(&[], &["get", "k", "--timeout", "3"]).await?.failed(1)?;
    ctl(&["--cacert", &ca, "--cert", &cert], &["get", "k"]).await?.failed(2)?;
    let no_ca = ctl(&["--cert", &cert, "--key", &key], &["get", "k"]).await?;
    ensure!(no_ca.code != Some(0) && no_ca.stderr.contains("--cacert"), "{no_ca:?}");
    Ok(())
}
