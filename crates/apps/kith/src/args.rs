//! The command line: every command, flag and environment variable.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::units;

#[derive(Parser, Debug)]
#[command(
    name = "kith",
    version,
    about = "kith: a peer-to-peer computing platform. Share and fetch content by ID, with no server anywhere."
)]
pub struct Cli {
    /// Data directory (key, config, database). Default: the platform data dir.
    #[arg(long, global = true, env = "KITH_HOME")]
    pub home: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(clap::Args, Debug, Default)]
pub struct UpArgs {
    /// Multiaddr to listen on (repeatable), e.g. /ip4/0.0.0.0/tcp/4001.
    #[arg(long, env = "KITH_LISTEN", value_delimiter = ',')]
    pub listen: Vec<String>,
    /// Multiaddr of a peer to join through (repeatable), e.g. /ip4/1.2.3.4/tcp/4001/p2p/12D3…
    #[arg(long, env = "KITH_BOOTSTRAP", value_delimiter = ',')]
    pub bootstrap: Vec<String>,
    /// Address of the local HTTP API (default 127.0.0.1 on a free port).
    #[arg(long, env = "KITH_API")]
    pub api: Option<String>,
    /// Do not look for peers on the local network.
    #[arg(long)]
    pub no_mdns: bool,
    /// Upload cap, bytes per second (suffixes k, M, G, Ki, Mi, Gi).
    #[arg(long, env = "KITH_UPLOAD_LIMIT", value_parser = units::parse_rate)]
    pub upload_limit: Option<u64>,
    /// Download cap, bytes per second.
    #[arg(long, env = "KITH_DOWNLOAD_LIMIT", value_parser = units::parse_rate)]
    pub download_limit: Option<u64>,
    /// Register this node's catalogue with a broker (multiaddr ending in /p2p/PEER_ID).
    #[arg(long, env = "KITH_BROKER")]
    pub broker: Option<String>,
    /// Seconds a broker keeps the entries of a peer it no longer hears from (broker only).
    #[arg(long, env = "KITH_BROKER_TTL")]
    pub broker_ttl: Option<u64>,
    /// Serve as a circuit relay for peers behind NATs (a broker does by default).
    #[arg(long, conflicts_with = "no_relay")]
    pub relay: bool,
    /// Do not serve as a relay (not even as a broker).
    #[arg(long)]
    pub no_relay: bool,
    /// Relay to reserve a slot on while not publicly reachable (repeatable; multiaddr
    /// ending in /p2p/PEER_ID). The broker is used as one too.
    #[arg(long = "use-relay", env = "KITH_RELAYS", value_delimiter = ',')]
    pub use_relay: Vec<String>,
    /// Relay limit: bytes per circuit (suffixes k, M, G, Ki, Mi, Gi).
    #[arg(long, value_parser = units::parse_rate)]
    pub relay_circuit_bytes: Option<u64>,
    /// Relay limit: seconds per circuit.
    #[arg(long)]
    pub relay_circuit_secs: Option<u64>,
    /// Let AutoNAT test private and loopback addresses too (LANs and test networks).
    #[arg(long)]
    pub autonat_private_ips: bool,
    /// Address this node is reachable at, announced as is (repeatable; e.g. a relay's
    /// public address). Others are learned through AutoNAT.
    #[arg(long, env = "KITH_ANNOUNCE", value_delimiter = ',')]
    pub announce: Vec<String>,
    /// Lend up to this much of this disk to others' vaults (e.g. 20G; default 0).
    #[arg(long, env = "KITH_OFFER", value_parser = kith_core::units::parse_size)]
    pub offer: Option<u64>,
    /// How often this node audits the holders of its vault shares (e.g. 1h).
    #[arg(long, value_parser = kith_core::units::parse_duration)]
    pub vault_audit_every: Option<u64>,
    /// How long a holder may be gone before its shares are rebuilt elsewhere (e.g. 24h).
    #[arg(long, value_parser = kith_core::units::parse_duration)]
    pub vault_grace: Option<u64>,
    /// Cache up to this much popular content for readers near this node (e.g. 10G; LRU;
    /// pinned and own content is never evicted; default 0).
    #[arg(long, env = "KITH_CACHE", value_parser = kith_core::units::parse_size)]
    pub cache: Option<u64>,
    /// Peers of one region that must ask for the same content before a cache node there
    /// is asked to fetch it ahead (default 3).
    #[arg(long)]
    pub cache_demand: Option<u32>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Print a shell completion script: `kith completions bash > ~/.local/share/bash-completion/completions/kith`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `kith man > ~/.local/share/man/man1/kith.1`.
    Man,
    /// Run the node at login as a systemd user service.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Create the identity and config in the data dir.
    Init {
        /// Act for the person whose key this is (a copy of `people/person.key` from your
        /// first device): this device can then restore your vault.
        #[arg(long)]
        person_key: Option<PathBuf>,
    },
    /// Run the node in the foreground (Ctrl-C stops it).
    #[command(after_help = "Examples:\n  \
        kith up                                   # defaults: QUIC and TCP on every interface\n  \
        kith up --bootstrap /ip4/192.0.2.7/udp/4001/quic-v1/p2p/12D3KooW…\n  \
        kith up --offer 20G --cache 10G           # lend disk to vaults, cache for the LAN")]
    Up(UpArgs),
    /// Run a broker: a node that also keeps a directory of registered peers' catalogues.
    Broker(UpArgs),
    /// Open the web UI: prints a login link (it works once, for two minutes) and opens a
    /// browser where there is one.
    Ui {
        /// Only print the link.
        #[arg(long)]
        no_open: bool,
    },
    /// Write a file's bytes to stdout (verified as they are read; waits for chunks a
    /// running download has not fetched yet).
    #[command(after_help = "Examples:\n  \
        kith cat bafk…                      # a shared or fetched file\n  \
        kith cat bafk…/docs/readme.txt      # a file inside a shared folder\n  \
        kith cat bafk… | mpv -              # play while it downloads")]
    Cat {
        /// A content ID, or ID/path for a file inside a folder.
        id: String,
    },
    /// Show this node's peer ID.
    Id,
    /// Show whether the node is running, its addresses and connections.
    Status,
    /// List connected peers.
    Peers,
    /// Share a file or folder (in place, nothing is copied); prints its content ID.
    #[command(after_help = "Examples:\n  \
        kith share ~/talks/keynote.mp4\n  \
        kith share --ticket ~/photos          # also a ticket to paste to a friend\n  \
        kith share --group family ~/photos    # only the group's members see it\n\n\
        Content that came to this node in a group (fetched from its members, or shared\n\
        with it) stays in that group wherever it is copied: sharing it again shares it\n\
        with that group only, and a folder that mixes it with other content is refused\n\
        until you choose --group or --public.")]
    Share {
        /// The file or folder to share.
        path: PathBuf,
        /// Share it with this group only (ID or name): only its members can discover,
        /// list, search or fetch it.
        #[arg(long, conflicts_with = "public")]
        group: Option<String>,
        /// Share it with everyone, even what came to this node in a group: anyone can
        /// then search for it and fetch it from here.
        #[arg(long)]
        public: bool,
        /// Print a ticket: the content ID and this node's addresses in one string, for
        /// `kith get TICKET` on a node that need not know this one.
        #[arg(long)]
        ticket: bool,
    },
    /// List what this node shares.
    Ls,
    /// Search across peers; results stream in as peers answer.
    #[command(after_help = "Examples:\n  \
        kith search keynote 2026\n  \
        kith search '\"annual report\"' --via broker\n  \
        kith search photo* --group family")]
    Search {
        /// Words (all must match), "quoted phrases", prefix*.
        #[arg(required = true, num_args = 1..)]
        query: Vec<String>,
        /// broker, network, both, flood or index (default: both with a broker, else
        /// network: the word index, then flooding when it finds nothing).
        #[arg(long)]
        via: Option<String>,
        /// Seconds to wait for answers (default 5).
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
        /// Most results.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Search only what is shared with this group (ID or name).
        #[arg(long, conflicts_with = "via")]
        group: Option<String>,
    },
    /// Publish PATH as the next revision of NAME (signed by this node's key).
    Publish {
        /// The name (others resolve it as PEER_ID/NAME).
        name: String,
        /// The file or folder that becomes its next revision.
        path: PathBuf,
        /// Publish it even if it came to this node in a group (a name is public: anyone
        /// can then fetch it). Without it, such content is refused.
        #[arg(long)]
        public: bool,
    },
    /// Show the newest revision of NAME (PEER_ID/name, or a name of this node).
    Resolve {
        /// PEER_ID/name, or a name this node published.
        name: String,
        /// Seconds to ask the DHT (default 5).
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
    /// Fetch content by ID (or the newest revision of a name) from whoever has it.
    #[command(after_help = "Examples:\n  \
        kith get bagaaihra… -o keynote.mp4\n  \
        kith get kithpmrgs…                    # a ticket from kith share --ticket\n  \
        kith get 12D3KooW…/notes -o notes.txt  # the newest revision of a name")]
    Get {
        /// Content ID, a name (PEER_ID/name), or a ticket (from `kith share --ticket`).
        id: String,
        /// The file or folder to create (default: ./NAME). A path that exists is refused,
        /// unless it is this download's own: `kith get ID -o PATH` again after an
        /// interruption continues into PATH.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Seconds to wait for a provider before giving up (default 60); also how long a
        /// download stays paused when every provider has gone, before it fails.
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Dial a peer now (a multiaddr ending in /p2p/PEER_ID, as `kith status` prints).
    Connect {
        /// e.g. /ip4/192.0.2.7/udp/4001/quic-v1/p2p/12D3KooW…
        addr: String,
    },
    /// Downloads running or paused in the node: state, progress, rate, providers.
    Downloads,
    /// Pause a download (its verified chunks are kept; it stays paused until resumed).
    Pause {
        /// The content ID being downloaded.
        id: String,
    },
    /// Resume a paused download.
    Resume {
        /// The content ID being downloaded.
        id: String,
    },
    /// Cancel a running or paused download and remove what it wrote.
    Cancel {
        /// The content ID being downloaded.
        id: String,
    },
    /// Stop sharing content.
    Unshare {
        /// The content ID to stop sharing (as `kith ls` lists it).
        id: String,
    },
    /// Show this device's person ID and the person's devices.
    Person,
    /// Link, join or remove devices of your person.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Private groups of people: create, invite, join, list, remove, leave.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Cycle sharing: submit jobs of WebAssembly work units for volunteers to run.
    #[command(subcommand)]
    Job(JobCmd),
    /// Donate this machine's idle CPU to others' jobs.
    #[command(subcommand)]
    Volunteer(VolunteerCmd),
    /// Store files on peers' spare disks: encrypted, erasure-coded, audited, repaired.
    #[command(subcommand)]
    Vault(VaultCmd),
    /// Keep content on this node: fetched into the cache if need be, never evicted.
    Pin {
        /// The content ID to keep on this node.
        id: String,
    },
    /// Let pinned content be evicted again.
    Unpin {
        /// The content ID pinned before.
        id: String,
    },
    /// Edge caching: what this node caches for the readers near it.
    #[command(subcommand)]
    Cache(CacheCmd),
    /// Back a folder up into the vault (only changed chunks move).
    Backup {
        /// The folder to back up.
        dir: PathBuf,
        /// Back it up again on this schedule while the node runs (e.g. 1h).
        #[arg(long, value_parser = kith_core::units::parse_duration)]
        every: Option<u64>,
        /// Shares needed to restore (default 3).
        #[arg(long)]
        k: Option<u8>,
        /// Shares made, one per holder (default 10).
        #[arg(long)]
        n: Option<u8>,
    },
    /// Restore a backed-up folder, as it was at a backup.
    Restore {
        /// The folder that was backed up (default: the only one).
        source: Option<String>,
        /// The newest backup at or before this time: Unix seconds (fractions allowed), or
        /// a time ago (90s, 10m, 24h, 7d).
        #[arg(long)]
        at: Option<String>,
        /// The folder to restore into.
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum ServiceCmd {
    /// Write ~/.config/systemd/user/kith.service for this binary and data dir; then
    /// `systemctl --user enable --now kith` starts it now and at every login.
    Install,
    /// Remove the unit (run `systemctl --user disable --now kith` first).
    Uninstall,
}

#[derive(Subcommand, Debug)]
pub enum CacheCmd {
    /// What this node caches for others and why, its regions, and the hints it sent.
    Status,
}

#[derive(Subcommand, Debug)]
pub enum VaultCmd {
    /// Store a file or folder on peers; prints its vault ID.
    Put {
        /// The file or folder to store.
        path: PathBuf,
        /// A name to get it back by (`kith vault get NAME`).
        #[arg(long)]
        name: Option<String>,
        /// Shares needed to restore (default 3).
        #[arg(long)]
        k: Option<u8>,
        /// Shares made, one per holder (default 10).
        #[arg(long)]
        n: Option<u8>,
        /// Members of this group (ID or name) may restore it too.
        #[arg(long)]
        group: Option<String>,
    },
    /// Restore an object (by ID or name) from any k of its holders.
    Get {
        /// The object's vault ID or name.
        what: String,
        /// Where to write it.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// What this node stored, and its health.
    Ls,
    /// An object's health (shares reachable of n, last audit, repairs), or the vault's:
    /// space offered and held, and each peer's account.
    Status {
        /// The object's vault ID or name (none: the whole vault).
        what: Option<String>,
    },
    /// Remove an object and release its space on every holder.
    Rm {
        /// The object's vault ID or name.
        what: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum JobCmd {
    /// Submit a job: a JOB.toml, or a module and an inputs folder (one unit per file).
    Submit {
        /// The job's JOB.toml.
        #[arg(required_unless_present = "wasm", conflicts_with_all = ["wasm", "inputs"])]
        spec: Option<PathBuf>,
        /// The module (a WASI command: its unit on stdin, its result on stdout).
        #[arg(long, requires = "inputs")]
        wasm: Option<PathBuf>,
        /// A folder with one work unit per file.
        #[arg(long, requires = "wasm")]
        inputs: Option<PathBuf>,
        /// Distinct volunteers that must agree on each result (default 2).
        #[arg(long)]
        quorum: Option<u8>,
        /// Only this group's members run it (ID or name).
        #[arg(long)]
        group: Option<String>,
        /// Never give a unit to a trusted volunteer alone: every unit at full quorum.
        #[arg(long)]
        no_trust: bool,
    },
    /// A job's progress (a live bar on a terminal), or every job.
    Status {
        /// The job ID (none: every job).
        job: Option<String>,
        /// Print once, even on a terminal.
        #[arg(long, conflicts_with = "wait")]
        once: bool,
        /// Wait until the job is done (or cancelled), even when not on a terminal.
        #[arg(long)]
        wait: bool,
    },
    /// Write a job's validated outputs, one file per unit named after its input.
    Results {
        /// The job ID.
        job: String,
        /// The folder to write the outputs into.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Cancel a job: no more units go out.
    Cancel {
        /// The job ID (as `kith job submit` printed it).
        job: String,
    },
    /// Accept the job's results on trust (one trusted volunteer's each) as final.
    AcceptTrust {
        /// The job ID.
        job: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum VolunteerCmd {
    /// Start running others' work units (kept across restarts).
    On {
        /// Units at once.
        #[arg(long, default_value_t = 1)]
        cpus: u8,
        /// Pause while the machine is busy with other work.
        #[arg(long)]
        when_idle: bool,
        /// Memory one unit may use (e.g. 512Mi).
        #[arg(long, value_parser = units::parse_rate)]
        max_memory: Option<u64>,
        /// Only this group's jobs (ID or name).
        #[arg(long)]
        group: Option<String>,
    },
    /// Stop taking units; those running finish.
    Off,
    /// What runs now, for whom, how much was done, and how masters score this node.
    Status,
}

#[derive(Subcommand, Debug)]
pub enum DeviceCmd {
    /// Print a one-time code (valid 10 minutes, once) another device joins with.
    Link,
    /// Make this device a device of the person whose device printed CODE.
    Join {
        /// The one-time code `kith device link` printed on the first device.
        code: String,
    },
    /// Revoke a lost device: every group stops trusting it.
    Remove {
        /// The device's peer ID (as `kith person` lists it).
        device: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// Create a group; you are its first admin.
    Create {
        /// The group's name (for you; members see it too).
        name: String,
        /// Let people who join read what was shared before they joined.
        #[arg(long)]
        history: bool,
    },
    /// Print an invite token (admins only).
    Invite {
        /// Group ID or name.
        group: String,
        /// How long the invite is valid: 90s, 10m, 24h, 7d (at most 30 days).
        #[arg(long, default_value = "24h", value_parser = units::parse_duration)]
        expires: u64,
        /// How many people may join with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Whoever joins with it becomes an admin.
        #[arg(long)]
        admin: bool,
    },
    /// Join a group with an invite token.
    Join {
        /// The invite token `kith group invite` printed.
        token: String,
    },
    /// List your groups.
    Ls,
    /// List a group's members, their devices, who is admin, who is online.
    Members {
        /// The group's ID or name.
        group: String,
    },
    /// Remove a person from a group (admins only); the group key changes.
    Remove { group: String, person: String },
    /// Leave a group.
    Leave {
        /// The group's ID or name.
        group: String,
    },
}
