//! The `job-manager` subcommand: a stand-in job-manager process that campaigns for leadership
//! and prints `STANDBY` once campaigning, then `GRANTED` when it leads. The job-manager
//! failover workload runs two of these and `kill -9`s the leader.
//!
//! Conclave: the client's `LeaderElection` recipe over a `Session`. etcd: `clientv3`'s election
//! recipe as etcd serves it (`v3election.Campaign` on a lease kept alive every TTL / 3).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use conclave_client::recipes::{LeaderElection, LeadershipEvent, RevokePolicy};
use conclave_client::{Client, Session};

use crate::etcdpb::etcdserverpb as pb;
use crate::etcdpb::v3electionpb as el;
use crate::targets::etcd::{keep_leases_alive, EtcdKv, LeaseBook};
use crate::targets::TargetKind;

/// Arguments of the `job-manager` subcommand.
#[derive(Clone, Debug, clap::Args)]
pub struct JobManagerArgs {
    /// System to elect on.
    #[arg(long, value_enum)]
    pub target: TargetKind,
    /// Client endpoints, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Election name.
    #[arg(long, default_value = "bench-jm")]
    pub name: String,
    /// Session / lease TTL in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub ttl_ms: u64,
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs a job manager until killed, its stdin closes (the harness is gone) or 30 minutes pass.
///
/// # Errors
/// When the election cannot be set up.
pub async fn run(args: JobManagerArgs) -> anyhow::Result<()> {
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        std::process::exit(0);
    });
    let work = async {
        match args.target {
            TargetKind::Conclave | TargetKind::ConclaveGeneric | TargetKind::ConclaveZk => conclave(&args).await,
            TargetKind::Etcd | TargetKind::EtcdGeneric => etcd(&args).await,
            TargetKind::Zookeeper => anyhow::bail!("no ZooKeeper job manager (the workload compares with etcd)"),
        }
    };
    tokio::time::timeout(Duration::from_secs(1800), work).await.unwrap_or(Ok(()))
}

async fn conclave(args: &JobManagerArgs) -> anyhow::Result<()> {
    let client = Client::connect(args.endpoints.clone()).await?;
    let session = Arc::new(Session::open(&client, Duration::from_millis(args.ttl_ms)).await?);
    let election = LeaderElection::new(
        &client,
        session,
        &args.name,
        std::process::id().to_string().as_bytes(),
        RevokePolicy::default(),
    )?;
    let mut events = election.campaign();
    say("STANDBY");
    while let Some(ev) = events.recv().await {
        match ev {
            LeadershipEvent::Granted(t) => say(&format!("GRANTED epoch={}", t.epoch)),
            LeadershipEvent::Revoked(why) => say(&format!("REVOKED {why}")),
        }
    }
    anyhow::bail!("campaign ended")
}

async fn etcd(args: &JobManagerArgs) -> anyhow::Result<()> {
    let kv = EtcdKv::new(&args.endpoints, std::process::id() as usize)?;
    let ttl = Duration::from_millis(args.ttl_ms);
    let grant = pb::LeaseGrantRequest { ttl: (args.ttl_ms / 1000).max(1) as i64, id: 0 };
    let lease = kv
        .call(|ch| {
            let g = grant;
            async move { pb::lease_client::LeaseClient::new(ch).lease_grant(g).await }
        })
        .await?
        .into_inner()
        .id;
    tokio::spawn(keep_leases_alive(kv.current_channel(), vec![lease], ttl, Arc::new(LeaseBook::default())));
    say("STANDBY");
    let req = el::CampaignRequest {
        name: args.name.clone().into_bytes(),
        lease,
        value: std::process::id().to_string().into_bytes(),
    };
    // Campaign blocks until this candidate leads; retried across members if a call breaks.
    loop {
        match el::election_client::ElectionClient::new(kv.current_channel()).campaign(req.clone()).await {
            Ok(r) => {
                say(&format!("GRANTED rev={}", r.into_inner().leader.map_or(0, |l| l.rev)));
                break;
            }
            Err(e) => {
                eprintln!("campaign failed: {e}");
                kv.rotate();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // Hold leadership until the harness kills this process.
    std::future::pending::<()>().await;
    Ok(())
}
