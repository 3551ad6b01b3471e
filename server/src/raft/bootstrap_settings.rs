//! Cluster-wide settings at start-up (`--history-revisions`): the flag seeds the replicated
//! settings once, and never overrides them.
//!
//! The state machine holds the settings apply uses (`state_machine::SmConfig`), unset in a new
//! cluster. The first leader proposes its own flag value as a bootstrap `SetSettings`, which
//! applies only while the cluster has none, so racing leaders cannot overwrite each other and
//! every replica applies with the same value whatever its flags. A member whose flag differs
//! from the replicated value logs a warning naming both and uses the replicated one.
//! Changing the value later goes through `Command::SetSettings` with `bootstrap: false`
//! (there is no client API for it yet).

use std::sync::Arc;
use std::time::Duration;

use super::router::Router;
use crate::log_entry::{Command, Proposal};
use crate::state_machine::SmConfig;

/// How long to wait for a change (applied entry, leadership) before checking again anyway.
const RECHECK: Duration = Duration::from_secs(1);

/// Returns once the cluster has settings: proposes `flag` while this node leads a cluster that
/// has none, then compares the replicated value with `flag` (warning when they differ). Runs
/// until then; never fails (a failed proposal is retried on the next change).
pub async fn reconcile(router: Arc<Router>, flag: SmConfig) {
    let mut applied = router.shared().subscribe_applied();
    let mut metrics = router.raft().metrics();
    loop {
        let replicated = router.shared().sm.read().ok().and_then(|sm| sm.replicated_settings());
        if let Some(cluster) = replicated {
            report(flag, cluster);
            return;
        }
        let leads = metrics.borrow_and_update().current_leader == Some(router.node_id());
        if leads {
            let command = Command::SetSettings { history_revisions: flag.history_revisions, bootstrap: true };
            match router.propose_local(Proposal { request_id: None, command }, 32).await {
                Ok(_) => continue,
                // Not again before something changes (or the recheck time passes).
                Err(e) => tracing::debug!("bootstrap settings not proposed yet: {e}"),
            }
        }
        let _ = tokio::time::timeout(RECHECK, async {
            tokio::select! {
                _ = applied.changed() => {}
                _ = metrics.changed() => {}
            }
        })
        .await;
    }
}

fn report(flag: SmConfig, cluster: SmConfig) {
    if flag.history_revisions == cluster.history_revisions {
        tracing::info!(history_revisions = cluster.history_revisions, "cluster settings");
    } else {
        tracing::warn!(
            "--history-revisions differs: this node's flag says {}, the cluster's replicated value is {}; \
             the cluster's value applies (the flag only seeds a new cluster)",
            flag.history_revisions,
            cluster.history_revisions
        );
    }
}
