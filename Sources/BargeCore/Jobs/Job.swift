import Synchronization

/// A job's state, modelled on BITS's (queued, connecting, transferring, suspended, transient error, error,
/// complete — BITS's "acknowledged" is implied — and cancelled) plus two of a mirror's own: up to date (mirrored,
/// not due for a refresh) and invalid (its manifest entry cannot be carried out).
public enum JobState: String, CaseIterable, Hashable, Sendable, Codable {
    /// Waiting for a transfer slot.
    case queued
    /// Started: resolving, connecting, waiting for the response.
    case connecting
    /// Bytes are moving.
    case transferring
    /// Held back: by the user, the network's cost, or a time window (the reason says which).
    case suspended
    /// Failed in a way that may pass; retried at the job's due time.
    case transientError = "transient-error"
    /// Failed in a way that retrying will not fix; waits for `barge retry` or a manifest change.
    case error
    /// A one-shot job (`barge get`) that finished.
    case complete
    /// Stopped for good by the user.
    case cancelled
    /// Mirrored and verified; re-checked at the due time.
    case upToDate = "up-to-date"
    /// Its manifest entry cannot be carried out as written.
    case invalid

    /// Whether the job has a transfer in the engine.
    public var isRunning: Bool { self == .connecting || self == .transferring }

    /// Whether the job has ended until a person (or a manifest change) acts.
    public var isTerminal: Bool { self == .error || self == .complete || self == .cancelled || self == .invalid }
}

/// What a job transfers: a manifest's download entry, or a one-shot `barge get`.
public struct JobSpec: Hashable, Sendable {
    /// The manifest's id, or nil for a one-shot job.
    public var manifest: String?
    /// The sources, tried in order.
    public var urls: [String]
    /// The local path (the job's key: one job per destination).
    public var destination: String
    /// The expected SHA-256, lowercase hex.
    public var sha256: String?
    /// The expected size in bytes.
    public var size: UInt64?
    /// Priority, network, windows, rates, refresh, retry, owner, mode, headers, credentials.
    public var policy: TransferPolicy {
        get { self.policyBox.policy }
        set { self.policyBox = PolicyBox.interned(newValue) }
    }
    /// The policy, shared by every job that has the same one (an agent holds 100,000s of jobs, and the entries of
    /// a manifest mostly share its defaults).
    private var policyBox: PolicyBox

    /// Creates a spec.
    public init(
        manifest: String?,
        urls: [String],
        destination: String,
        sha256: String? = nil,
        size: UInt64? = nil,
        policy: TransferPolicy = TransferPolicy()
    ) {
        self.manifest = manifest
        self.urls = urls
        self.destination = destination
        self.sha256 = sha256
        self.size = size
        self.policyBox = PolicyBox.interned(policy)
    }

    /// The spec of a manifest's download entry.
    public init(manifest: String, entry: DownloadEntry) {
        self.init(
            manifest: manifest,
            urls: entry.urls,
            destination: entry.destination,
            sha256: entry.sha256,
            size: entry.size?.bytes,
            policy: entry.policy
        )
    }

    /// A one-shot job completes; a mirrored one is refreshed.
    public var isOneShot: Bool { self.manifest == nil }
}

/// An immutable policy shared by the jobs that have it.
final class PolicyBox: Sendable, Hashable {
    let policy: TransferPolicy

    private init(_ policy: TransferPolicy) { self.policy = policy }

    /// The box for `policy`: the same box as the last one made for an equal policy, while it is cached.
    static func interned(_ policy: TransferPolicy) -> PolicyBox {
        Self.cache.withLock { cache in
            if let box = cache[policy] { return box }
            if cache.count >= 4096 { cache.removeAll() }  // a bound; boxes in use stay valid
            let box = PolicyBox(policy)
            cache[policy] = box
            return box
        }
    }

    private static let cache = Mutex<[TransferPolicy: PolicyBox]>([:])

    static func == (lhs: PolicyBox, rhs: PolicyBox) -> Bool { lhs === rhs || lhs.policy == rhs.policy }
    func hash(into hasher: inout Hasher) { hasher.combine(self.policy) }
}

/// A job's persistent state: what the store keeps and the reconciler reads.
public struct JobRecord: Hashable, Sendable {
    /// The store's id, shown to people (`barge status`, `barge suspend 12`).
    public var id: Int64
    /// Where it is in its life.
    public var state: JobState
    /// Why, in words a person understands ("waiting for window 22:00-06:00").
    public var reason: String
    /// Suspended by a person; stays so until resumed.
    public var userSuspended: Bool
    /// Failed attempts since the last success.
    public var attempts: Int
    /// When the current run of failures began (epoch seconds).
    public var firstFailureAt: Double?
    /// When the job is next due: its retry time (transient error) or its refresh time (up to date); nil: now.
    public var dueAt: Double?
    /// When a transfer of it last started (round robin within a priority level).
    public var lastStartedAt: Double?
    /// When it last completed.
    public var completedAt: Double?
    /// Bytes known to be on disk in the partial (stored only after an fsync).
    public var offset: UInt64
    /// The size, when known.
    public var totalBytes: UInt64?
    /// The mirrored content's validators, for conditional refreshes.
    public var etag: String?
    public var lastModified: String?
    /// The mirrored content's SHA-256.
    public var contentSHA256: String?

    /// A new job: queued, never run.
    public init(id: Int64) {
        self.id = id
        self.state = .queued
        self.reason = "new"
        self.userSuspended = false
        self.attempts = 0
        self.offset = 0
    }
}

/// One job as the reconciler sees it: what it should do, what the store says, and whether it runs now.
public struct JobView: Hashable, Sendable {
    /// What to transfer.
    public var spec: JobSpec
    /// Its persistent state.
    public var record: JobRecord
    /// Whether the engine runs a transfer for it now.
    public var isRunning: Bool

    /// Creates a view.
    public init(spec: JobSpec, record: JobRecord, isRunning: Bool) {
        self.spec = spec
        self.record = record
        self.isRunning = isRunning
    }
}
