//! `conclavectl`: the command-line client of Conclave.
//!
//! Scripts depend on its command names, flags and output formats (`-o text` and `-o json`);
//! see `conclavectl --help` and `conclavectl <command> --help`. Exit codes: 0 on success, 1 for
//! server or client errors, 2 for usage errors.

mod auth;
mod cluster;
mod counter;
mod endpoint;
mod kv;
mod lease;
mod member;
mod output;
mod session;
mod snapshot;
mod txn;
mod watch;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use conclave_client::{Client, ClientConfig, ClientFiles, ClientTls, Credentials};

use crate::output::Format;

/// Command-line client of Conclave, a Raft-replicated coordination service.
#[derive(Parser, Debug)]
#[command(name = "conclavectl", version, propagate_version = true)]
struct Cli {
    /// Comma-separated client endpoints (host:port) of cluster members; more are discovered.
    #[arg(
        long,
        global = true,
        env = "CONCLAVE_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7379",
        value_name = "HOST:PORT,..."
    )]
    endpoints: Vec<String>,

    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Text)]
    output: Format,

    /// Deadline of the whole call in seconds, retries included (default 10).
    #[arg(long, global = true, value_name = "SECS", value_parser = parse_timeout)]
    timeout: Option<Duration>,

    /// CA certificate (PEM) that signs the members' client-port certificates: connect over TLS.
    #[arg(long, global = true, env = "CONCLAVE_CACERT", value_name = "FILE")]
    cacert: Option<std::path::PathBuf>,

    /// Client certificate (PEM) for members that require one (mutual TLS); needs --key and --cacert.
    #[arg(
        long = "cert",
        id = "tls_cert",
        global = true,
        env = "CONCLAVE_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<std::path::PathBuf>,

    /// Private key (PEM) of --cert.
    #[arg(
        long = "key",
        id = "tls_key",
        global = true,
        env = "CONCLAVE_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<std::path::PathBuf>,

    /// User for servers started with --auth: NAME or NAME:PASSWORD (the client authenticates,
    /// sends the token and renews it).
    #[arg(long, global = true, env = "CONCLAVE_USER", value_name = "NAME[:PASSWORD]")]
    user: Option<String>,

    /// Password of --user (instead of NAME:PASSWORD).
    #[arg(long, global = true, env = "CONCLAVE_PASSWORD", value_name = "PASSWORD", hide_env_values = true)]
    password: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Sets KEY to VALUE. Prints `OK` (json: {"revision":N}).
    Put {
        /// The key (non-empty).
        key: String,
        /// The value (may be empty).
        #[arg(allow_hyphen_values = true)]
        value: String,
        /// Bind the key to this session (an ephemeral key: deleted when the session ends).
        #[arg(long, value_name = "ID")]
        session: Option<u64>,
    },
    /// Reads a key, a prefix or a range. Prints each key then its value on the next line.
    Get(kv::GetArgs),
    /// Deletes a key or every key with a prefix. Prints the number deleted.
    Del {
        /// The key (or prefix with --prefix).
        key: String,
        /// Delete every key starting with KEY.
        #[arg(long)]
        prefix: bool,
    },
    /// Runs a transaction: if every --compare holds, the --then ops run, else the --else ops.
    #[command(long_about = txn::LONG_ABOUT)]
    Txn(txn::TxnArgs),
    /// Named atomic u64 counters.
    #[command(subcommand)]
    Counter(counter::CounterCommand),
    /// Status of every endpoint given in --endpoints, each asked individually.
    Status,
    /// Health and status of each endpoint given in --endpoints (etcdctl's `endpoint`).
    #[command(subcommand)]
    Endpoint(endpoint::EndpointCommand),
    /// Backups: `snapshot save FILE` from the first endpoint.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Cluster membership.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Hands leadership to voter ID (etcdctl's `move-leader`), or with no ID to the most
    /// up-to-date voter. Prints `Leadership moved to member N.` (json: {"leader":N}). Writes in
    /// flight wait for the new leader instead of failing. Exits non-zero (reason TRANSFER_FAILED)
    /// when it did not complete in time.
    MoveLeader {
        /// The voter to hand leadership to (default: the most up-to-date voter).
        id: Option<u64>,
    },
    /// Sessions: liveness that ephemeral keys and leases are bound to.
    #[command(subcommand)]
    Session(session::SessionCommand),
    /// Named leases: exclusive claims held by sessions, with fencing tokens.
    #[command(subcommand)]
    Lease(lease::LeaseCommand),
    /// User administration (servers with --auth; root only).
    #[command(subcommand)]
    User(auth::UserCommand),
    /// Role administration (servers with --auth; root only).
    #[command(subcommand)]
    Role(auth::RoleCommand),
    /// Prints every change to KEY (or a prefix), one line per event, until killed:
    /// `[rev N] PUT key value` / `[rev N] DELETE key` (json: {"type":"put"|"delete","key",
    /// "value","mod_revision"} and "prev_value" with --prev-kv). Resumes by itself across member
    /// failures; exits 1 if the revisions to deliver were compacted.
    Watch(watch::WatchArgs),
}

#[derive(Subcommand, Debug)]
enum MemberCommand {
    /// Lists the members: id, peer address, client address, voter or learner, leader marker,
    /// and (from the leader) match index, lag and the log format level each member's build
    /// decodes (0: a build from before format levels; README "Rolling upgrades").
    List(EmptyArgs),
    /// Adds a member as a learner. Then start it with `conclave serve --join ENDPOINTS ...` and
    /// an empty data dir. Without --learner, waits (up to --promote-wait) for it to catch up and
    /// promotes it to a voter.
    Add(member::AddArgs),
    /// Promotes a learner to a voter (refused until it holds 90% of the leader's log).
    Promote {
        /// Member id.
        id: u64,
    },
    /// Removes a member. Refused when the remaining voters would lack a quorum of live members.
    Remove {
        /// Member id.
        id: u64,
        /// Remove even if the remaining voters lack a live quorum.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
struct EmptyArgs {}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{s:?} is not a number of seconds: {e}"))?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{s:?}: the timeout must be a positive number of seconds"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// Global settings every command gets.
pub struct Globals {
    /// The endpoints as given (trimmed, non-empty).
    pub endpoints: Vec<String>,
    /// Output format.
    pub format: Format,
    /// `--timeout`, if given.
    pub timeout: Option<Duration>,
    /// TLS from `--cacert`, `--cert`, `--key`.
    pub tls: Option<ClientTls>,
    /// --user / --password.
    pub credentials: Option<Credentials>,
}

impl Globals {
    /// The client settings for these globals.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(self.endpoints.clone());
        config.tls = self.tls.clone();
        config.credentials = self.credentials.clone();
        if let Some(t) = self.timeout {
            config.call_timeout = t;
            config.attempt_timeout = config.attempt_timeout.min(t);
            config.connect_timeout = config.connect_timeout.min(t);
        }
        config
    }

    /// A client over the endpoints.
    pub async fn client(&self) -> Result<Client> {
        Ok(Client::with_config(self.config()).await?)
    }
}

async fn run(cli: Cli, out: &mut dyn Write) -> Result<()> {
    let endpoints: Vec<String> = cli.endpoints.iter().map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()).collect();
    if endpoints.is_empty() {
        bail!("no endpoints given (--endpoints or CONCLAVE_ENDPOINTS)");
    }
    let tls = match (cli.cacert, cli.tls_cert.zip(cli.tls_key)) {
        (Some(ca), identity) => Some(ClientTls::new(ClientFiles { ca, identity })?),
        (None, Some(_)) => bail!("--cert needs --cacert (the CA that signs the members' certificates)"),
        (None, None) => None,
    };
    let credentials = match (cli.user, cli.password) {
        (None, None) => None,
        (None, Some(_)) => bail!("--password needs --user (or CONCLAVE_USER)"),
        (Some(u), password) => match (u.split_once(':'), password) {
            (Some((user, p)), _) => Some(Credentials { user: user.to_owned(), password: p.to_owned() }),
            (None, Some(password)) => Some(Credentials { user: u, password }),
            (None, None) => {
                bail!("--user {u:?} needs a password: --user NAME:PASSWORD, --password or CONCLAVE_PASSWORD")
            }
        },
    };
    let g = Globals { endpoints, format: cli.output, timeout: cli.timeout, tls, credentials };
    match cli.command {
        Command::Put { key, value, session } => kv::put(&g, out, &key, &value, session).await,
        Command::Get(args) => kv::get(&g, out, &args).await,
        Command::Del { key, prefix } => kv::del(&g, out, &key, prefix).await,
        Command::Txn(args) => txn::run(&g, out, &args).await,
        Command::Counter(cmd) => counter::run(&g, out, cmd).await,
        Command::Status => cluster::status(&g, out).await,
        Command::Endpoint(cmd) => endpoint::run(&g, out, cmd).await,
        Command::Snapshot(cmd) => snapshot::run(&g, out, cmd).await,
        Command::Member(MemberCommand::List(_)) => cluster::member_list(&g, out).await,
        Command::Member(MemberCommand::Add(args)) => member::add(&g, out, &args).await,
        Command::Member(MemberCommand::Promote { id }) => member::promote(&g, out, id).await,
        Command::Member(MemberCommand::Remove { id, force }) => member::remove(&g, out, id, force).await,
        Command::MoveLeader { id } => member::move_leader(&g, out, id).await,
        Command::Session(cmd) => session::run(&g, out, cmd).await,
        Command::Lease(cmd) => lease::run(&g, out, cmd).await,
        Command::User(cmd) => auth::user(&g, out, cmd).await,
        Command::Role(cmd) => auth::role(&g, out, cmd).await,
        Command::Watch(args) => watch::run(&g, out, &args).await,
    }
}

/// A failure already explained on stderr: exit 1 without another message.
#[derive(Debug)]
pub struct Reported;

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failed (reported above)")
    }
}

impl std::error::Error for Reported {}

/// Whether `e` is (caused by) a closed stdout, e.g. `conclavectl get --prefix a | head -1`.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = run(cli, &mut out).await;
    let result = result.and_then(|()| out.flush().map_err(anyhow::Error::from));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Reported>().is_some() => {
            let _ = out.flush();
            ExitCode::FAILURE
        }
        Err(e) => {
            let _ = out.flush();
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_anywhere() -> Result<()> {
        let cli = Cli::try_parse_from([
            "conclavectl",
            "get",
            "k",
            "-o",
            "json",
            "--endpoints",
            "a:1,b:2",
            "--timeout",
            "1.5",
        ])?;
        assert_eq!(cli.endpoints, ["a:1", "b:2"]);
        assert_eq!(cli.output, Format::Json);
        assert_eq!(cli.timeout, Some(Duration::from_millis(1500)));
        assert!(Cli::try_parse_from(["conclavectl", "--timeout", "0", "status"]).is_err());
        assert!(Cli::try_parse_from(["conclavectl", "--timeout", "x", "status"]).is_err());
        assert!(Cli::try_parse_from(["conclavectl", "-o", "yaml", "status"]).is_err());
        Ok(())
    }

    #[test]
    fn put_value_may_start_with_a_dash() -> Result<()> {
        let cli = Cli::try_parse_from(["conclavectl", "put", "k", "-1"])?;
        assert!(matches!(cli.command, Command::Put { ref value, .. } if value == "-1"));
        Ok(())
    }

    #[test]
    fn new_commands_parse() -> Result<()> {
        let cli = Cli::try_parse_from(["conclavectl", "put", "k", "v", "--session", "7"])?;
        assert!(matches!(cli.command, Command::Put { session: Some(7), .. }));
        let cli = Cli::try_parse_from(["conclavectl", "session", "open", "2.5", "--keepalive"])?;
        assert!(matches!(
            cli.command,
            Command::Session(session::SessionCommand::Open(session::OpenArgs { ttl_ms: 2500, keepalive: true }))
        ));
        let cli = Cli::try_parse_from(["conclavectl", "lease", "acquire", "l", "--session", "3", "--wait", "1.5"])?;
        assert!(matches!(
            cli.command,
            Command::Lease(lease::LeaseCommand::Acquire(lease::AcquireArgs { session: 3, wait: 1500, .. }))
        ));
        let cli = Cli::try_parse_from(["conclavectl", "watch", "p/", "--prefix", "--rev", "5", "--prev-kv"])?;
        assert!(matches!(cli.command, Command::Watch(watch::WatchArgs { prefix: true, rev: 5, prev_kv: true, .. })));
        assert!(Cli::try_parse_from(["conclavectl", "lease", "acquire", "l"]).is_err());
        assert!(Cli::try_parse_from(["conclavectl", "lease", "release", "l", "--token", "x"]).is_err());
        assert!(Cli::try_parse_from(["conclavectl", "session", "open", "soon"]).is_err());
        Ok(())
    }
}
