/// What `GET /v1/status` answers (and `barge status --json` prints): the agent, its manifests and its jobs.
///
/// The control API's types live in BargeCore so the CLI decodes exactly what the agent encodes. Field names are
/// the JSON keys (documented in docs/api.md); times are epoch seconds.
public struct StatusReport: Codable, Hashable, Sendable {
    /// The agent itself.
    public var agent: AgentStatus
    /// Every manifest of the drop-in directory, valid or not.
    public var manifests: [ManifestStatus]
    /// Every job.
    public var jobs: [JobStatus]

    /// Creates a report.
    public init(agent: AgentStatus, manifests: [ManifestStatus], jobs: [JobStatus]) {
        self.agent = agent
        self.manifests = manifests
        self.jobs = jobs
    }
}

/// The agent's own state, for the header of `barge status`.
public struct AgentStatus: Codable, Hashable, Sendable {
    /// The agent's process id.
    public var pid: Int32
    /// When it started.
    public var startedAt: Double
    /// Now, on the agent's clock.
    public var now: Double
    /// The agent's config file (nil: built-in defaults).
    public var configPath: String?
    /// The drop-in directory.
    public var manifestDirectory: String
    /// The network as the agent sees it ("unmetered", "metered, roaming", "not monitored …").
    public var network: String
    /// Transfers at once: in all, and to one host.
    public var maxTransfers: Int
    public var maxPerHost: Int
    /// The budget all transfers share now ("off" or a rate).
    public var globalRate: String
    /// Transfers running now.
    public var running: Int
    /// When the agent next wakes by itself (nil: only on an event).
    public var nextWake: Double?
    /// How long the last reconcile took (plan and apply), in seconds.
    public var lastReconcileSeconds: Double?
    /// Why the drop-in directory cannot be read now; nil when it was read. While it is set every job is kept as
    /// it is (nothing is removed or pruned) and the directory is read again every few seconds.
    public var manifestDirectoryProblem: String?

    /// Creates an agent status.
    public init(
        pid: Int32,
        startedAt: Double,
        now: Double,
        configPath: String?,
        manifestDirectory: String,
        network: String,
        maxTransfers: Int,
        maxPerHost: Int,
        globalRate: String,
        running: Int,
        nextWake: Double?,
        lastReconcileSeconds: Double? = nil,
        manifestDirectoryProblem: String? = nil
    ) {
        self.pid = pid
        self.startedAt = startedAt
        self.now = now
        self.configPath = configPath
        self.manifestDirectory = manifestDirectory
        self.network = network
        self.maxTransfers = maxTransfers
        self.maxPerHost = maxPerHost
        self.globalRate = globalRate
        self.running = running
        self.nextWake = nextWake
        self.lastReconcileSeconds = lastReconcileSeconds
        self.manifestDirectoryProblem = manifestDirectoryProblem
    }
}

/// One manifest file: valid (its jobs run), or invalid (with what is wrong; its last good version, if any, runs).
public struct ManifestStatus: Codable, Hashable, Sendable {
    /// The manifest's id (file name without extension).
    public var id: String
    /// Its path.
    public var path: String
    /// "valid" or "invalid".
    public var state: String
    /// The errors, as `file:line:column: error: …` lines.
    public var errors: [String]
    /// Whether an earlier valid version still runs (only when invalid).
    public var runningLastGoodVersion: Bool
    /// When the earlier version that runs was stored, if it was loaded from the agent's state (it was valid in an
    /// earlier run of the agent); nil when it was loaded in this run.
    public var lastGoodVersionStoredAt: Double?
    /// How many jobs it has.
    public var jobs: Int

    /// Creates a manifest status.
    public init(
        id: String,
        path: String,
        state: String,
        errors: [String],
        runningLastGoodVersion: Bool,
        lastGoodVersionStoredAt: Double? = nil,
        jobs: Int
    ) {
        self.lastGoodVersionStoredAt = lastGoodVersionStoredAt
        self.id = id
        self.path = path
        self.state = state
        self.errors = errors
        self.runningLastGoodVersion = runningLastGoodVersion
        self.jobs = jobs
    }
}

/// One job, as `barge status` shows it.
public struct JobStatus: Codable, Hashable, Sendable {
    /// The job's id.
    public var id: Int64
    /// Its manifest (nil for `barge get`).
    public var manifest: String?
    /// The local path: the file a download writes, or the file an upload sends.
    public var destination: String
    /// The first source (a download), or where the file goes (an upload).
    public var url: String
    /// `download` or `upload` (absent in the answers of agents from before uploads: downloads).
    public var direction: String?
    /// An upload's last reply from its server (UTF-8, invalid bytes replaced), as kept by its entry's `reply`;
    /// only in a single job's status (`GET /v1/jobs/ID`).
    public var reply: String?
    /// The state (`JobState`'s raw value: queued, transferring, up-to-date, …).
    public var state: String
    /// Why, in words.
    public var reason: String
    /// foreground, high, normal, low.
    public var priority: String
    /// Bytes on disk for the current transfer (or the mirrored size when up to date).
    public var bytes: UInt64
    /// The size, when known.
    public var total: UInt64?
    /// The current rate in bytes per second (running jobs).
    public var bytesPerSecond: Double?
    /// Seconds left at the current rate (running jobs with a known size).
    public var eta: Double?
    /// When it is next due (a retry or a refresh).
    public var dueAt: Double?
    /// When it last completed.
    public var completedAt: Double?
    /// Failed attempts since the last success.
    public var attempts: Int
    /// Suspended by a person.
    public var userSuspended: Bool
    /// Where its transfer is in the engine: `waiting` (for a connection), `connected`, `paused` (held where it is,
    /// connection and partial kept); nil when it has none.
    public var transfer: String?
    /// The tightest rate cap on its transfer now, and why: `300 KiB/s (max-rate)`, `2 MiB/s (timetable
    /// 08:00–18:00)`, `150 KiB/s (yielding to other traffic: 41 Mbit/s in use; shared by 2)`; nil: none.
    public var limit: String?

    /// Creates a job status.
    public init(
        id: Int64,
        manifest: String?,
        destination: String,
        url: String,
        state: String,
        reason: String,
        priority: String,
        bytes: UInt64,
        total: UInt64?,
        bytesPerSecond: Double?,
        eta: Double?,
        dueAt: Double?,
        completedAt: Double?,
        attempts: Int,
        userSuspended: Bool,
        transfer: String? = nil,
        limit: String? = nil,
        direction: String? = "download"
    ) {
        self.direction = direction
        self.id = id
        self.manifest = manifest
        self.destination = destination
        self.url = url
        self.state = state
        self.reason = reason
        self.priority = priority
        self.bytes = bytes
        self.total = total
        self.bytesPerSecond = bytesPerSecond
        self.eta = eta
        self.dueAt = dueAt
        self.completedAt = completedAt
        self.attempts = attempts
        self.userSuspended = userSuspended
        self.transfer = transfer
        self.limit = limit
    }
}

/// The body of `POST /v1/jobs`: a one-shot download (`barge get` through the agent).
public struct NewJobRequest: Codable, Hashable, Sendable {
    /// The source.
    public var url: String
    /// The absolute destination.
    public var destination: String
    /// The expected SHA-256.
    public var sha256: String?
    /// A rate cap in bytes per second.
    public var maxRate: UInt64?
    /// The priority (default foreground: a person waits for it).
    public var priority: String?

    /// Creates a request.
    public init(
        url: String,
        destination: String,
        sha256: String? = nil,
        maxRate: UInt64? = nil,
        priority: String? = nil
    ) {
        self.url = url
        self.destination = destination
        self.sha256 = sha256
        self.maxRate = maxRate
        self.priority = priority
    }
}

/// The answer to a command: what it did, or why it could not.
public struct CommandReply: Codable, Hashable, Sendable {
    /// Whether it was carried out.
    public var ok: Bool
    /// What happened, for people.
    public var message: String
    /// The jobs it touched.
    public var jobs: [Int64]
    /// Why it was refused (nil when carried out).
    public var error: Refusal?

    /// Why a command was refused; the control API's HTTP status follows from it.
    public enum Refusal: String, Codable, Hashable, Sendable {
        /// The request named no job (404).
        case noSuchJob = "no-such-job"
        /// The caller may not do this (403): another user's job, or an agent-wide command.
        case forbidden
        /// The request is wrong as written (400): a destination outside the rules, a malformed body.
        case invalidRequest = "invalid-request"
        /// The destination already belongs to a job (409).
        case conflict
        /// The agent could not carry it out (500): its store failed.
        case failed
    }

    /// A reply: carried out when `error` is nil.
    public init(ok: Bool, message: String, jobs: [Int64] = [], error: Refusal? = nil) {
        self.ok = ok
        self.message = message
        self.jobs = jobs
        self.error = ok ? nil : (error ?? .invalidRequest)
    }

    /// A refusal.
    public static func refused(_ error: Refusal, _ message: String, jobs: [Int64] = []) -> CommandReply {
        CommandReply(ok: false, message: message, jobs: jobs, error: error)
    }
}
