//! The pod template read from `deploy/statefulset/statefulset.yaml` (as JSON: `test.sh` converts
//! the YAML), so the containers run exactly what the manifest says: args, env (downward-API
//! fields resolved as the kubelet does), user, read-only root fs, data mount, memory limit,
//! grace period and the readiness probe's port.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// One env entry of the container.
#[derive(Clone, Debug)]
pub enum EnvValue {
    /// `value:`
    Literal(String),
    /// `valueFrom.fieldRef.fieldPath` (`metadata.name` or `metadata.namespace`).
    Field(String),
}

/// What the runner takes from the StatefulSet.
#[derive(Clone, Debug)]
pub struct PodTemplate {
    /// StatefulSet name (pods are `NAME-N`).
    pub set_name: String,
    /// The headless Service (`serviceName`).
    pub service: String,
    /// The image named in the manifest (informative: the suite runs the image it built).
    pub image: String,
    /// Container args (the image's entrypoint is `conclave serve`).
    pub args: Vec<String>,
    /// Container env.
    pub env: Vec<(String, EnvValue)>,
    /// Where the data volume is mounted.
    pub data_mount: String,
    /// `runAsUser:runAsGroup`.
    pub user: Option<String>,
    /// `readOnlyRootFilesystem`.
    pub read_only: bool,
    /// Memory limit in docker's notation (`1g`).
    pub memory_limit: Option<String>,
    /// `terminationGracePeriodSeconds` (default 30, as Kubernetes).
    pub grace_secs: u64,
    /// The gRPC port of the readiness probe.
    pub ready_port: u16,
    /// The container ports by name.
    pub client_port: u16,
    /// Peer port.
    pub peer_port: u16,
    /// `CONCLAVE_INITIAL_MEMBERS`.
    pub initial_members: u64,
    /// The liveness probe's HTTP (port, path).
    pub liveness: (u16, String),
    /// The Prometheus scrape annotations' (port, path).
    pub metrics: (u16, String),
}

fn text(v: &Value, path: &str) -> Result<String> {
    v.pointer(path).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| anyhow!("manifest: no string at {path}"))
}

/// Docker's memory notation for a Kubernetes quantity (`1Gi` → `1g`, `512Mi` → `512m`).
pub fn docker_memory(q: &str) -> Result<String> {
    for (k8s, docker) in [("Gi", "g"), ("Mi", "m"), ("Ki", "k")] {
        if let Some(n) = q.strip_suffix(k8s) {
            n.parse::<u64>().with_context(|| format!("memory limit {q:?}"))?;
            return Ok(format!("{n}{docker}"));
        }
    }
    q.parse::<u64>().with_context(|| format!("memory limit {q:?} (use Ki, Mi or Gi)"))?;
    Ok(q.to_owned())
}

impl PodTemplate {
    /// Finds the StatefulSet among `docs` (the manifest's documents) and reads its template.
    ///
    /// # Errors
    /// When the StatefulSet or a field the suite needs is missing or malformed.
    pub fn from_docs(docs: &[Value]) -> Result<Self> {
        let sts = docs
            .iter()
            .find(|d| d.get("kind").and_then(Value::as_str) == Some("StatefulSet"))
            .ok_or_else(|| anyhow!("manifest: no StatefulSet"))?;
        let spec = sts.pointer("/spec/template/spec").ok_or_else(|| anyhow!("manifest: no pod spec"))?;
        let c = spec.pointer("/containers/0").ok_or_else(|| anyhow!("manifest: no container"))?;
        let args = c.get("args").and_then(Value::as_array).cloned().unwrap_or_default();
        let args = args
            .iter()
            .map(|a| a.as_str().map(str::to_owned).ok_or_else(|| anyhow!("non-string arg")))
            .collect::<Result<_>>()?;
        let mut env = Vec::new();
        for e in c.get("env").and_then(Value::as_array).cloned().unwrap_or_default() {
            let name = text(&e, "/name")?;
            let value = match (e.get("value"), e.pointer("/valueFrom/fieldRef/fieldPath")) {
                (Some(v), _) => {
                    EnvValue::Literal(v.as_str().ok_or_else(|| anyhow!("env {name}: not a string"))?.to_owned())
                }
                (None, Some(f)) => EnvValue::Field(f.as_str().unwrap_or_default().to_owned()),
                _ => bail!("env {name}: neither value nor fieldRef"),
            };
            env.push((name, value));
        }
        let port = |name: &str| -> Result<u16> {
            c.get("ports")
                .and_then(Value::as_array)
                .and_then(|ps| ps.iter().find(|p| p.get("name").and_then(Value::as_str) == Some(name)))
                .and_then(|p| p.get("containerPort")?.as_u64())
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| anyhow!("manifest: no container port named {name}"))
        };
        let ready_port = match c.pointer("/readinessProbe/grpc/port") {
            Some(Value::Number(n)) => {
                n.as_u64().and_then(|p| u16::try_from(p).ok()).ok_or_else(|| anyhow!("probe port"))?
            }
            Some(Value::String(name)) => port(name)?,
            _ => bail!("manifest: the readiness probe is not a grpc probe"),
        };
        let liveness_port = match c.pointer("/livenessProbe/httpGet/port") {
            Some(Value::Number(n)) => {
                n.as_u64().and_then(|p| u16::try_from(p).ok()).ok_or_else(|| anyhow!("probe port"))?
            }
            Some(Value::String(name)) => port(name)?,
            _ => bail!("manifest: the liveness probe is not an httpGet probe"),
        };
        let liveness = (liveness_port, text(c, "/livenessProbe/httpGet/path")?);
        let annotations = sts.pointer("/spec/template/metadata/annotations");
        let annotation = |k: &str| annotations.and_then(|a| a.get(k)).and_then(Value::as_str).map(str::to_owned);
        let metrics_port =
            annotation("prometheus.io/port").ok_or_else(|| anyhow!("manifest: no prometheus.io/port"))?;
        let metrics = (
            metrics_port.parse::<u16>().context("prometheus.io/port")?,
            annotation("prometheus.io/path").unwrap_or_else(|| "/metrics".into()),
        );
        let data_volume = text(sts, "/spec/volumeClaimTemplates/0/metadata/name")?;
        let data_mount = c
            .get("volumeMounts")
            .and_then(Value::as_array)
            .and_then(|ms| ms.iter().find(|m| m.get("name").and_then(Value::as_str) == Some(data_volume.as_str())))
            .and_then(|m| m.get("mountPath")?.as_str())
            .ok_or_else(|| anyhow!("manifest: the data volume is not mounted"))?
            .to_owned();
        let user = match (spec.pointer("/securityContext/runAsUser"), spec.pointer("/securityContext/runAsGroup")) {
            (Some(u), Some(g)) => Some(format!("{u}:{g}")),
            (Some(u), None) => Some(u.to_string()),
            _ => None,
        };
        let initial_members = env
            .iter()
            .find(|(n, _)| n == "CONCLAVE_INITIAL_MEMBERS")
            .map(|(_, v)| match v {
                EnvValue::Literal(s) => s.parse::<u64>().context("CONCLAVE_INITIAL_MEMBERS"),
                EnvValue::Field(_) => bail!("CONCLAVE_INITIAL_MEMBERS from a field"),
            })
            .transpose()?
            .unwrap_or(3);
        Ok(Self {
            set_name: text(sts, "/metadata/name")?,
            service: text(sts, "/spec/serviceName")?,
            image: text(c, "/image")?,
            args,
            env,
            data_mount,
            user,
            read_only: c.pointer("/securityContext/readOnlyRootFilesystem").and_then(Value::as_bool).unwrap_or(false),
            memory_limit: c
                .pointer("/resources/limits/memory")
                .and_then(Value::as_str)
                .map(docker_memory)
                .transpose()?,
            grace_secs: spec.get("terminationGracePeriodSeconds").and_then(Value::as_u64).unwrap_or(30),
            ready_port,
            client_port: port("client")?,
            peer_port: port("peer")?,
            initial_members,
            liveness,
            metrics,
        })
    }

    /// Pod `ordinal`'s name.
    pub fn pod(&self, ordinal: u64) -> String {
        format!("{}-{ordinal}", self.set_name)
    }

    /// The env of pod `ordinal` in `namespace`, downward-API fields resolved.
    ///
    /// # Errors
    /// A field the suite cannot provide.
    pub fn env_of(&self, ordinal: u64, namespace: &str) -> Result<Vec<String>> {
        self.env
            .iter()
            .map(|(name, v)| {
                let value = match v {
                    EnvValue::Literal(s) => s.clone(),
                    EnvValue::Field(f) if f == "metadata.name" => self.pod(ordinal),
                    EnvValue::Field(f) if f == "metadata.namespace" => namespace.to_owned(),
                    EnvValue::Field(f) => bail!("env {name}: field {f} not provided by the suite"),
                };
                Ok(format!("{name}={value}"))
            })
            .collect()
    }

    /// The DNS names a StatefulSet gives pod `ordinal`, most specific first.
    pub fn dns_names(&self, ordinal: u64, namespace: &str) -> Vec<String> {
        let pod = self.pod(ordinal);
        let svc = &self.service;
        vec![
            format!("{pod}.{svc}.{namespace}.svc.cluster.local"),
            format!("{pod}.{svc}.{namespace}.svc"),
            format!("{pod}.{svc}"),
            format!("{svc}.{namespace}.svc.cluster.local"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_template_is_read_and_fields_resolved() {
        let sts = serde_json::json!({
            "kind": "StatefulSet",
            "metadata": {"name": "kv"},
            "spec": {
                "serviceName": "peers",
                "template": {
                    "metadata": {"annotations": {"prometheus.io/port": "9379"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 45,
                        "securityContext": {"runAsUser": 10001, "runAsGroup": 10001},
                        "containers": [{
                            "image": "conclave:dev",
                            "args": ["--statefulset", "peers"],
                            "env": [
                                {"name": "CONCLAVE_INITIAL_MEMBERS", "value": "5"},
                                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
                            ],
                            "ports": [
                                {"name": "client", "containerPort": 7379},
                                {"name": "peer", "containerPort": 7380},
                                {"name": "metrics", "containerPort": 9379}
                            ],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            "securityContext": {"readOnlyRootFilesystem": true},
                            "readinessProbe": {"grpc": {"port": 7379}},
                            "livenessProbe": {"httpGet": {"path": "/livez", "port": "metrics"}},
                            "resources": {"limits": {"memory": "512Mi"}}
                        }]
                    }
                },
                "volumeClaimTemplates": [{"metadata": {"name": "data"}}]
            }
        });
        let t = PodTemplate::from_docs(&[serde_json::json!({"kind": "Service"}), sts.clone()]).expect("valid");
        assert_eq!((t.set_name.as_str(), t.service.as_str(), t.initial_members, t.grace_secs), ("kv", "peers", 5, 45));
        assert_eq!((t.ready_port, t.client_port, t.peer_port, t.liveness.0), (7379, 7379, 7380, 9379));
        assert_eq!((t.data_mount.as_str(), t.user.as_deref(), t.read_only), ("/data", Some("10001:10001"), true));
        assert_eq!(t.memory_limit.as_deref(), Some("512m"));
        assert_eq!(
            t.env_of(3, "prod").expect("env"),
            ["CONCLAVE_INITIAL_MEMBERS=5", "POD_NAME=kv-3", "POD_NAMESPACE=prod"]
        );
        assert_eq!(t.dns_names(3, "prod")[0], "kv-3.peers.prod.svc.cluster.local");
        let mut no_probe = sts;
        no_probe["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = serde_json::json!({"exec": {}});
        assert!(PodTemplate::from_docs(&[no_probe]).is_err(), "a non-grpc readiness probe is refused");
    }

    #[test]
    fn memory_quantities_convert() {
        assert_eq!(docker_memory("1Gi").expect("valid"), "1g");
        assert_eq!(docker_memory("256Mi").expect("valid"), "256m");
        assert!(docker_memory("1G").is_err());
    }
}
