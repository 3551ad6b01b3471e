//! Identity from a Kubernetes StatefulSet pod (`--statefulset SERVICE`): the node id comes from
//! the pod's ordinal and every address from the headless Service's stable DNS names, so a pod
//! needs no entrypoint script.
//!
//! For pod `NAME-N` of Service `SERVICE` in namespace `NS` (cluster domain `D`):
//! - node id = `N + 1` (ids start at 1; 0 is reserved);
//! - its DNS name is `NAME-N.SERVICE.NS.svc.D`; it advertises `that:CLIENT_PORT` to clients and
//!   is known to peers as `that:PEER_PORT` (the ports of `--client-addr` / `--peer-addr`);
//! - ordinals `0..INITIAL` (`--initial-members`, default 3) form the cluster: their
//!   `--initial-cluster` is the list of those pods' peer addresses;
//! - an ordinal `>= INITIAL` is a scaled-up member: it starts with `--join` on the initial pods'
//!   client addresses and waits (logging the command) until an operator has run
//!   `conclavectl member add ID PEER --learner`; it catches up as a learner and votes once promoted.
//!
//! Every pod of the set runs the same flags; only the pod name differs.

use std::collections::BTreeMap;

use clap::Args;

/// Flags that derive a node's identity from its StatefulSet pod.
#[derive(Debug, Clone, Default, Args)]
pub struct StatefulSetArgs {
    /// Derive --node-id, --initial-cluster / --join and --advertise-client-addr from the pod:
    /// the value is the headless Service that gives each pod its DNS name. Pod `NAME-N` becomes
    /// node N+1; ordinals below --initial-members form the cluster, higher ones join as learners.
    #[arg(
        long,
        env = "CONCLAVE_STATEFULSET",
        conflicts_with_all = ["node_id", "initial_cluster", "join", "advertise_client_addr"]
    )]
    pub statefulset: Option<String>,
    /// With --statefulset: how many pods (ordinals 0..N) form the initial cluster. Keep it at the
    /// size the cluster was created with, whatever `replicas` is later scaled to.
    #[arg(long, env = "CONCLAVE_INITIAL_MEMBERS", default_value_t = 3)]
    pub initial_members: u64,
    /// With --statefulset: this pod's name `NAME-N` (the downward API's `metadata.name`).
    /// Default: the host name, which Kubernetes sets to the pod name.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// With --statefulset: the pod's namespace (the downward API's `metadata.namespace`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub pod_namespace: String,
    /// With --statefulset: the cluster's DNS domain (kubelet `--cluster-domain`); empty for
    /// names ending in `.svc`.
    #[arg(long, env = "CONCLAVE_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
}

/// What a pod's identity decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    /// Ordinal + 1.
    pub node_id: u64,
    /// Initial members by id → peer address; for a scaled-up pod, only itself (its own peer
    /// address, quoted in the `member add` hint it logs).
    pub initial_cluster: BTreeMap<u64, String>,
    /// Client endpoints of the initial pods when this pod joins (ordinal >= initial members).
    pub join: Vec<String>,
    /// `NAME-N.SERVICE.NS.svc.D:CLIENT_PORT`.
    pub advertise_client_addr: String,
}

/// The ports a pod's addresses use.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// Client (gRPC API) port.
    pub client: u16,
    /// Peer (Raft) port.
    pub peer: u16,
}

fn dns_label(what: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("--statefulset: {what} {s:?} is not a DNS label (lowercase letters, digits, '-', at most 63)"))
    }
}

/// Splits a pod name `NAME-N` into the StatefulSet name and the ordinal.
///
/// # Errors
/// When the name does not end in `-N` with a decimal N, or NAME is not a DNS label.
pub fn parse_pod_name(pod: &str) -> Result<(&str, u64), String> {
    let not_a_pod = || format!("--statefulset: pod name {pod:?} is not NAME-ORDINAL (e.g. conclave-0)");
    let (set, ordinal) = pod.rsplit_once('-').ok_or_else(not_a_pod)?;
    if ordinal.is_empty()
        || !ordinal.chars().all(|c| c.is_ascii_digit())
        || (ordinal.len() > 1 && ordinal.starts_with('0'))
    {
        return Err(not_a_pod());
    }
    let ordinal: u64 = ordinal.parse().map_err(|_| not_a_pod())?;
    if ordinal == u64::MAX {
        return Err(not_a_pod());
    }
    dns_label("StatefulSet name", set)?;
    Ok((set, ordinal))
}

/// Derives a pod's identity (see the module docs).
///
/// # Errors
/// A message naming the bad part: pod name, Service, namespace, domain or member count.
pub fn pod_identity(
    pod: &str,
    service: &str,
    namespace: &str,
    cluster_domain: &str,
    initial_members: u64,
    ports: Ports,
) -> Result<PodIdentity, String> {
    let (set, ordinal) = parse_pod_name(pod)?;
    dns_label("Service", service)?;
    dns_label("namespace", namespace)?;
    let domain = cluster_domain.trim_matches('.');
    if !domain.is_empty() {
        domain.split('.').try_for_each(|l| dns_label("cluster domain label", l))?;
    }
    if initial_members == 0 || initial_members > 1000 {
        return Err(format!("--initial-members must be between 1 and 1000, not {initial_members}"));
    }
    let suffix = if domain.is_empty() { String::new() } else { format!(".{domain}") };
    let host = |i: u64| format!("{set}-{i}.{service}.{namespace}.svc{suffix}");
    let node_id = ordinal + 1;
    let (initial_cluster, join) = if ordinal < initial_members {
        let members = (0..initial_members).map(|i| (i + 1, format!("{}:{}", host(i), ports.peer))).collect();
        (members, Vec::new())
    } else {
        let me = BTreeMap::from([(node_id, format!("{}:{}", host(ordinal), ports.peer))]);
        (me, (0..initial_members).map(|i| format!("{}:{}", host(i), ports.client)).collect())
    };
    Ok(PodIdentity {
        node_id,
        initial_cluster,
        join,
        advertise_client_addr: format!("{}:{}", host(ordinal), ports.client),
    })
}

impl StatefulSetArgs {
    /// The pod's identity when `--statefulset` is set, else `None`.
    ///
    /// # Errors
    /// As [`pod_identity`]; also when no pod name is given and the host name cannot be read.
    pub fn identity(&self, ports: Ports) -> Result<Option<PodIdentity>, String> {
        let Some(service) = &self.statefulset else { return Ok(None) };
        let pod = match &self.pod_name {
            Some(p) => p.clone(),
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .map_err(|e| format!("--statefulset without --pod-name (POD_NAME): cannot read the host name: {e}"))?,
        };
        pod_identity(&pod, service, &self.pod_namespace, &self.cluster_domain, self.initial_members, ports).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTS: Ports = Ports { client: 7379, peer: 7380 };

    #[test]
    fn pod_names_parse_and_garbage_is_refused() {
        assert_eq!(parse_pod_name("conclave-0"), Ok(("conclave", 0)));
        assert_eq!(parse_pod_name("my-kv-store-12"), Ok(("my-kv-store", 12)));
        for bad in ["conclave", "conclave-", "-3", "conclave-x", "conclave-01", "Conclave-1", "conclave--1", "a b-1"] {
            assert!(parse_pod_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_pod_name(&format!("c-{}", u64::MAX)).is_err());
        assert!(parse_pod_name("c-99999999999999999999999").is_err());
    }

    #[test]
    fn initial_pods_form_the_cluster_from_dns_names() {
        let id = pod_identity("conclave-1", "conclave", "prod", "cluster.local", 3, PORTS).expect("valid");
        assert_eq!(id.node_id, 2);
        assert!(id.join.is_empty());
        assert_eq!(id.advertise_client_addr, "conclave-1.conclave.prod.svc.cluster.local:7379");
        let peers: Vec<_> = id.initial_cluster.iter().map(|(i, a)| format!("{i}={a}")).collect();
        assert_eq!(
            peers,
            [
                "1=conclave-0.conclave.prod.svc.cluster.local:7380",
                "2=conclave-1.conclave.prod.svc.cluster.local:7380",
                "3=conclave-2.conclave.prod.svc.cluster.local:7380",
            ]
        );
        // The produced list is what --initial-cluster accepts.
        let flag = peers.join(",");
        assert_eq!(crate::config::parse_initial_cluster(&flag).expect("parses"), id.initial_cluster);
    }

    #[test]
    fn higher_ordinals_join_the_initial_pods() {
        let id = pod_identity("conclave-3", "peers", "ns", "", 3, PORTS).expect("valid");
        assert_eq!(id.node_id, 4);
        assert_eq!(id.initial_cluster, BTreeMap::from([(4, "conclave-3.peers.ns.svc:7380".to_owned())]));
        assert_eq!(
            id.join,
            ["conclave-0.peers.ns.svc:7379", "conclave-1.peers.ns.svc:7379", "conclave-2.peers.ns.svc:7379"]
        );
        assert_eq!(id.advertise_client_addr, "conclave-3.peers.ns.svc:7379");
    }

    #[test]
    fn bad_names_and_counts_are_refused() {
        assert!(pod_identity("conclave-0", "Conclave", "ns", "cluster.local", 3, PORTS).is_err());
        assert!(pod_identity("conclave-0", "conclave", "n_s", "cluster.local", 3, PORTS).is_err());
        assert!(pod_identity("conclave-0", "conclave", "ns", "cluster..local", 3, PORTS).is_err());
        let err = pod_identity("conclave-0", "conclave", "ns", "cluster.local", 0, PORTS).expect_err("zero members");
        assert!(err.contains("--initial-members"), "{err}");
        assert!(pod_identity("conclave-0", "conclave", "ns", ".cluster.local.", 1, PORTS).is_ok());
    }

    #[test]
    fn flags_conflict_with_explicit_identity() {
        use clap::Parser;
        let parse = |args: &[&str]| crate::config::Cli::try_parse_from(args.iter().copied());
        assert!(parse(&["conclave", "serve", "--statefulset", "conclave", "--pod-name", "conclave-0"]).is_ok());
        for clash in [["--node-id", "2"], ["--initial-cluster", "1=a:1"], ["--join", "a:1"]] {
            let mut args = vec!["conclave", "serve", "--statefulset", "conclave"];
            args.extend(clash);
            assert!(parse(&args).is_err(), "{clash:?} accepted with --statefulset");
        }
    }
}
