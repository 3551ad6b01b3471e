//! The container runtime: pods as Docker containers on a private network, each with a fixed IP
//! (the host reaches them through the bridge), its own named volume and the DNS names of a
//! StatefulSet pod as network aliases. Everything the suite creates carries [`LABEL`] and is
//! removed by [`Pods::remove_all`].

use std::time::Duration;

use anyhow::{bail, Result};
use tokio::process::Command;

use crate::manifest::PodTemplate;

/// Label on every container, volume and network of the suite.
pub const LABEL: &str = "io.conclave.statefulset-suite=1";
/// Longest a single docker command may take.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `docker ARGS`; returns its stdout.
///
/// # Errors
/// When docker is missing (naming the Debian package), times out or fails (with its stderr).
pub async fn docker(args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("docker");
    cmd.args(args).kill_on_drop(true);
    let out = match tokio::time::timeout(DOCKER_TIMEOUT, cmd.output()).await {
        Err(_) => bail!("docker {} took more than {DOCKER_TIMEOUT:?}", args.join(" ")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("the docker CLI is not installed: install the Debian package docker.io")
        }
        Ok(r) => r?,
    };
    if !out.status.success() {
        bail!("docker {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The pods of one suite run.
pub struct Pods {
    /// The template every pod runs.
    pub template: PodTemplate,
    /// The image to run.
    pub image: String,
    /// The namespace in the DNS names.
    pub namespace: String,
    /// The private network.
    pub network: String,
    /// First three octets of the network's /24.
    pub subnet: String,
}

impl Pods {
    /// Pod `ordinal`'s container name (= its pod name).
    pub fn name(&self, ordinal: u64) -> String {
        self.template.pod(ordinal)
    }

    /// Pod `ordinal`'s fixed IP.
    pub fn ip(&self, ordinal: u64) -> String {
        format!("{}.{}", self.subnet, 10 + ordinal)
    }

    /// Pod `ordinal`'s client endpoint as the host reaches it.
    pub fn endpoint(&self, ordinal: u64) -> String {
        format!("{}:{}", self.ip(ordinal), self.template.client_port)
    }

    /// Pod `ordinal`'s readiness probe endpoint.
    pub fn ready_endpoint(&self, ordinal: u64) -> String {
        format!("{}:{}", self.ip(ordinal), self.template.ready_port)
    }

    fn volume(&self, ordinal: u64) -> String {
        format!("{}-data-{}", self.network, self.name(ordinal))
    }

    /// Removes whatever an earlier run left (containers, volumes, network with [`LABEL`]).
    ///
    /// # Errors
    /// When docker fails.
    pub async fn remove_all(&self) -> Result<()> {
        let filter = format!("label={LABEL}");
        let containers = docker(&["ps", "-aq", "--filter", &filter]).await?;
        for id in containers.split_whitespace() {
            docker(&["rm", "-f", "-v", id]).await?;
        }
        let volumes = docker(&["volume", "ls", "-q", "--filter", &filter]).await?;
        for v in volumes.split_whitespace() {
            docker(&["volume", "rm", "-f", v]).await?;
        }
        let nets = docker(&["network", "ls", "-q", "--filter", &filter]).await?;
        for n in nets.split_whitespace() {
            docker(&["network", "rm", n]).await?;
        }
        Ok(())
    }

    /// Creates the private network.
    ///
    /// # Errors
    /// When docker fails (e.g. the subnet is taken: pass another `--subnet`).
    pub async fn create_network(&self) -> Result<()> {
        let subnet = format!("{}.0/24", self.subnet);
        docker(&["network", "create", "--label", LABEL, "--subnet", &subnet, &self.network]).await?;
        Ok(())
    }

    /// Creates and starts pod `ordinal` (with a new volume unless it has one), as the kubelet would.
    ///
    /// # Errors
    /// When docker fails or the template names an env field the suite cannot provide.
    pub async fn create(&self, ordinal: u64) -> Result<()> {
        let t = &self.template;
        let (name, ip, volume) = (self.name(ordinal), self.ip(ordinal), self.volume(ordinal));
        let mount = format!("{volume}:{}", t.data_mount);
        let grace = t.grace_secs.to_string();
        let mut args: Vec<String> = ["run", "-d", "--label", LABEL, "--name", &name, "--hostname", &name]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(["--network".into(), self.network.clone(), "--ip".into(), ip]);
        for alias in t.dns_names(ordinal, &self.namespace) {
            args.extend(["--network-alias".into(), alias]);
        }
        docker(&["volume", "create", "--label", LABEL, &volume]).await?;
        args.extend(["-v".into(), mount, "--stop-timeout".into(), grace]);
        if let Some(u) = &t.user {
            args.extend(["--user".into(), u.clone()]);
        }
        if t.read_only {
            args.push("--read-only".into());
        }
        if let Some(m) = &t.memory_limit {
            args.extend(["--memory".into(), m.clone()]);
        }
        for e in t.env_of(ordinal, &self.namespace)? {
            args.extend(["-e".into(), e]);
        }
        args.push(self.image.clone());
        args.extend(t.args.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&refs).await?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL after the grace period (`docker stop` = the kubelet's pod deletion).
    ///
    /// # Errors
    /// When docker fails.
    pub async fn stop(&self, ordinal: u64) -> Result<()> {
        docker(&["stop", "-t", &self.template.grace_secs.to_string(), &self.name(ordinal)]).await.map(drop)
    }

    /// A stopped pod's exit code.
    ///
    /// # Errors
    /// When docker fails or answers something else than a number.
    pub async fn exit_code(&self, ordinal: u64) -> Result<i64> {
        let s = docker(&["inspect", "-f", "{{.State.ExitCode}}", &self.name(ordinal)]).await?;
        s.parse().map_err(|_| anyhow::anyhow!("docker inspect: exit code {s:?}"))
    }

    /// Removes a stopped pod's container (its volume stays), as the StatefulSet controller
    /// deletes a pod before creating its replacement.
    ///
    /// # Errors
    /// When docker fails.
    pub async fn remove_container(&self, ordinal: u64) -> Result<()> {
        docker(&["rm", &self.name(ordinal)]).await.map(drop)
    }

    /// Starts a stopped pod again (same volume, same IP).
    ///
    /// # Errors
    /// When docker fails.
    pub async fn start(&self, ordinal: u64) -> Result<()> {
        docker(&["start", &self.name(ordinal)]).await.map(drop)
    }

    /// SIGKILL.
    ///
    /// # Errors
    /// When docker fails.
    pub async fn kill9(&self, ordinal: u64) -> Result<()> {
        docker(&["kill", "-s", "KILL", &self.name(ordinal)]).await.map(drop)
    }

    /// Deletes the pod and its volume (the disk is lost).
    ///
    /// # Errors
    /// When docker fails.
    pub async fn delete_with_volume(&self, ordinal: u64) -> Result<()> {
        docker(&["rm", "-f", &self.name(ordinal)]).await?;
        docker(&["volume", "rm", "-f", &self.volume(ordinal)]).await.map(drop)
    }

    /// Cuts pod `ordinal` off the network.
    ///
    /// # Errors
    /// When docker fails.
    pub async fn disconnect(&self, ordinal: u64) -> Result<()> {
        docker(&["network", "disconnect", &self.network, &self.name(ordinal)]).await.map(drop)
    }

    /// Connects pod `ordinal` back with its IP and DNS names.
    ///
    /// # Errors
    /// When docker fails.
    pub async fn connect(&self, ordinal: u64) -> Result<()> {
        let ip = self.ip(ordinal);
        let mut args = vec!["network".to_owned(), "connect".into(), "--ip".into(), ip];
        for alias in self.template.dns_names(ordinal, &self.namespace) {
            args.extend(["--alias".into(), alias]);
        }
        args.extend([self.network.clone(), self.name(ordinal)]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&refs).await.map(drop)
    }

    /// The pod's log (stdout and stderr).
    ///
    /// # Errors
    /// When docker fails.
    pub async fn logs(&self, ordinal: u64) -> Result<String> {
        let out = Command::new("docker").args(["logs", &self.name(ordinal)]).output().await?;
        Ok(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}
