//! Power loss: every node's data dir is its own `conclave-faultfs` mount (backing dir under the
//! run's directory), which keeps writes and directory changes that were not fsynced in memory.
//! A power fault kills the chosen nodes (`kill -9`), then cuts their disks' power (everything
//! not durable is lost); heal restarts them on what their disks kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use conclave_faultfs::FaultFs;
use conclave_testkit::Cluster;

/// The nodes' fault filesystems. Unmounted on drop (drop it after the cluster, whose nodes
/// keep files open on them).
pub struct Disks {
    mounts: BTreeMap<u64, FaultFs>,
}

/// The data dir the test kit gives node `id` under the run's directory.
fn data_dir(run: &Path, id: u64) -> PathBuf {
    run.join(format!("node{id}"))
}

impl Disks {
    /// Mounts a fault filesystem at each node's data dir, backed by `<run>/disks/node<id>`.
    ///
    /// # Errors
    /// When a mount fails (no /dev/fuse; not root and no `fusermount3`: `apt-get install -y fuse3`).
    pub fn mount(run: &Path, ids: &[u64]) -> anyhow::Result<Self> {
        let mut mounts = BTreeMap::new();
        for &id in ids {
            let backing = run.join("disks").join(format!("node{id}"));
            let fs = FaultFs::mount(&backing, &data_dir(run, id))
                .map_err(|e| anyhow::anyhow!("power nemesis: data dir of node {id}: {e}"))?;
            mounts.insert(id, fs);
        }
        Ok(Self { mounts })
    }

    /// Kills the nodes, then cuts their disks' power.
    ///
    /// # Errors
    /// When a node has no disk or its disk cannot be reloaded.
    pub fn cut(&self, cluster: &mut Cluster, nodes: &[u64]) -> anyhow::Result<()> {
        super::kill::kill(cluster, nodes)?;
        for id in nodes {
            let fs = self.mounts.get(id).ok_or_else(|| anyhow::anyhow!("node {id} has no faultfs disk"))?;
            fs.power_cut()?;
        }
        Ok(())
    }
}
