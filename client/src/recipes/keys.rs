//! The key layout of the recipes. Everything of cluster id `C` lives under `/conclave/ha/C/`:
//!
//! | key | what |
//! |---|---|
//! | `/conclave/ha/C/leader/COMPONENT` | published leader info (JSON, ephemeral) |
//! | lease `/conclave/ha/C/leader` | the election |
//! | counter `/conclave/ha/C/checkpoint-id/JOB` (+ marker key `/conclave/ha/C/counters/JOB`) | checkpoint ids |
//! | `/conclave/ha/C/stores/STORE/data/NAME`, `.../locks/NAME/SESSION`, `.../deleting/NAME` | state handles |
//! | `/conclave/ha/C/job-results/JOB` | job results |
//! | `/conclave/ha/C/jobs/JOB/` | free for a job's other data; removed by job cleanup |

/// Root of all recipe keys.
pub const ROOT: &str = "/conclave/ha/";

/// `/conclave/ha/C/`.
pub fn cluster_prefix(cluster_id: &str) -> String {
    format!("{ROOT}{cluster_id}/")
}

/// The election lease of a cluster id.
pub fn election_lease(cluster_id: &str) -> String {
    format!("{ROOT}{cluster_id}/leader")
}

/// Prefix of all published leader infos.
pub fn leader_prefix(cluster_id: &str) -> String {
    format!("{ROOT}{cluster_id}/leader/")
}

/// One component's leader info key.
pub fn leader_key(cluster_id: &str, component: &str) -> String {
    format!("{}{component}", leader_prefix(cluster_id))
}

/// A job's checkpoint-id counter.
pub fn checkpoint_counter(cluster_id: &str, job_id: &str) -> String {
    format!("{ROOT}{cluster_id}/checkpoint-id/{job_id}")
}

/// Prefix of the marker keys that record which counters a cluster id created.
pub fn counter_markers(cluster_id: &str) -> String {
    format!("{ROOT}{cluster_id}/counters/")
}

/// A state-handle store's prefix.
pub fn store_prefix(cluster_id: &str, store: &str) -> String {
    format!("{ROOT}{cluster_id}/stores/{store}/")
}

/// Job-result store prefix.
pub fn job_results(cluster_id: &str) -> String {
    format!("{ROOT}{cluster_id}/job-results/")
}

/// A job's free-form data prefix.
pub fn job_prefix(cluster_id: &str, job_id: &str) -> String {
    format!("{ROOT}{cluster_id}/jobs/{job_id}/")
}

/// Validates an identifier used in keys (cluster id, job id, component, store or handle name).
///
/// # Errors
/// `InvalidArgument` when it is empty or contains '/'.
pub fn check_id(what: &str, id: &str) -> crate::Result<()> {
    if id.is_empty() || id.contains('/') {
        return Err(crate::Error::InvalidArgument(format!("{what} {id:?} must be non-empty and contain no '/'")));
    }
    Ok(())
}
