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

/// What a job transfers: a manifest's download entry, one file matched by an upload entry, or a one-shot
/// `barge get`. An upload's ``destination`` is its local file (the job's key) and its one URL where it goes.
///
/// Held compactly (an agent keeps 100,000s): paths and URLs share their directory part with their neighbours,
/// the policy with every job that has the same one, and the rarely set parts (mirrors, expected hash and size)
/// live in one optional box.
public struct JobSpec: Hashable, Sendable {
    private var manifestName: String?
    private var firstURL: SharedHeadText?
    private var destinationText: SharedHeadText
    private var extras: SpecExtras?
    /// The policy, shared by every job that has the same one (the entries of a manifest mostly share its
    /// defaults).
    private var policyBox: PolicyBox

    /// Creates a spec.
    public init(
        manifest: String?,
        urls: [String],
        destination: String,
        sha256: String? = nil,
        size: UInt64? = nil,
        policy: TransferPolicy = TransferPolicy(),
        upload: UploadDetails? = nil
    ) {
        self.manifestName = manifest.map(InternedString.of)
        self.firstURL = urls.first.map(SharedHeadText.init)
        self.destinationText = SharedHeadText(destination)
        self.extras = SpecExtras.make(otherURLs: Array(urls.dropFirst()), sha256: sha256, size: size, upload: upload)
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

    /// The manifest's id, or nil for a one-shot job.
    public var manifest: String? {
        get { self.manifestName }
        set { self.manifestName = newValue.map(InternedString.of) }
    }

    /// The sources, tried in order.
    public var urls: [String] {
        get {
            guard let first = self.firstURL else { return [] }
            return [first.text] + (self.extras?.otherURLs ?? [])
        }
        set {
            self.firstURL = newValue.first.map(SharedHeadText.init)
            self.extras = SpecExtras.make(
                otherURLs: Array(newValue.dropFirst()),
                sha256: self.sha256,
                size: self.size,
                upload: self.upload
            )
        }
    }

    /// The first source.
    public var url: String { self.firstURL?.text ?? "" }

    /// The first source's `host:port` (``URLRules/host(of:)``): the key of the per-host limits.
    public var host: String { self.firstURL?.urlHost ?? "" }

    /// The local path (the job's key: one job per destination).
    public var destination: String {
        get { self.destinationText.text }
        set { self.destinationText = SharedHeadText(newValue) }
    }

    /// The destination as held (for indexes that must not copy the path).
    public var destinationKey: SharedHeadText { self.destinationText }

    /// The expected SHA-256, lowercase hex.
    public var sha256: String? {
        get { self.extras?.sha256 }
        set {
            self.extras = SpecExtras.make(
                otherURLs: self.extras?.otherURLs ?? [],
                sha256: newValue,
                size: self.size,
                upload: self.upload
            )
        }
    }

    /// The expected size in bytes.
    public var size: UInt64? {
        get { self.extras?.size }
        set {
            self.extras = SpecExtras.make(
                otherURLs: self.extras?.otherURLs ?? [],
                sha256: self.sha256,
                size: newValue,
                upload: self.upload
            )
        }
    }

    /// Priority, network, windows, rates, refresh, retry, owner, mode, headers, credentials.
    public var policy: TransferPolicy {
        get { self.policyBox.policy }
        set { self.policyBox = PolicyBox.interned(newValue) }
    }

    /// An upload's protocol, after-action and the local file as last found; nil for a download.
    public var upload: UploadDetails? {
        get { self.extras?.upload }
        set {
            self.extras = SpecExtras.make(
                otherURLs: self.extras?.otherURLs ?? [],
                sha256: self.sha256,
                size: self.size,
                upload: newValue
            )
        }
    }

    /// Whether the job sends its local file to the server.
    public var isUpload: Bool { self.extras?.upload != nil }

    /// A one-shot job completes; a mirrored one is refreshed.
    public var isOneShot: Bool { self.manifestName == nil }
}

/// A local file as found: what tells that it changed, or was replaced by another file.
public struct SourceStamp: Hashable, Sendable, Codable, CustomStringConvertible {
    /// Its size in bytes.
    public var size: UInt64
    /// Its modification time, nanoseconds since the epoch.
    public var modified: Int64
    /// Its inode number (0: not known): a file put in its place (`cp -p`, a rename) is another file.
    public var inode: UInt64

    /// Creates a stamp.
    public init(size: UInt64, modified: Int64, inode: UInt64 = 0) {
        self.size = size
        self.modified = modified
        self.inode = inode
    }

    public var description: String { "\(self.size) bytes, modified \(self.modified)ns, inode \(self.inode)" }
}

/// What makes a job an upload: how its file is sent, what happens to it afterwards, and the file as last found.
public struct UploadDetails: Hashable, Sendable {
    /// PUT or tus.
    public var uploadProtocol: UploadEntry.UploadProtocol
    /// What happens to the local file once the server has it.
    public var after: UploadEntry.AfterUpload
    /// tus: the most bytes in one PATCH.
    public var chunkSize: UInt64
    /// The most of the server's reply kept (0: none).
    public var replyLimit: UInt64
    /// The file as last found (by the scan, or as uploaded): a different stamp found later means it changed.
    public var stamp: SourceStamp
    /// Still being written when last found (changed within the entry's settle time, or open for writing): not
    /// uploaded until it settles. Never stored.
    public var isSettling: Bool

    /// Creates details.
    public init(
        uploadProtocol: UploadEntry.UploadProtocol,
        after: UploadEntry.AfterUpload = .keep,
        chunkSize: UInt64 = UploadEntry.defaultChunkSize.bytes,
        replyLimit: UInt64 = 0,
        stamp: SourceStamp,
        isSettling: Bool = false
    ) {
        self.uploadProtocol = uploadProtocol
        self.after = after
        self.chunkSize = chunkSize
        self.replyLimit = replyLimit
        self.stamp = stamp
        self.isSettling = isSettling
    }
}

/// The parts of a spec that most jobs do not have: mirrors after the first URL, an expected hash and size, an
/// upload's details.
final class SpecExtras: Sendable, Hashable {
    let otherURLs: [String]
    let sha256: String?
    let size: UInt64?
    let upload: UploadDetails?

    private init(otherURLs: [String], sha256: String?, size: UInt64?, upload: UploadDetails?) {
        self.otherURLs = otherURLs
        self.sha256 = sha256
        self.size = size
        self.upload = upload
    }

    /// A box for these parts, or nil when there are none.
    static func make(otherURLs: [String], sha256: String?, size: UInt64?, upload: UploadDetails?) -> SpecExtras? {
        otherURLs.isEmpty && sha256 == nil && size == nil && upload == nil
            ? nil : SpecExtras(otherURLs: otherURLs, sha256: sha256, size: size, upload: upload)
    }

    static func == (lhs: SpecExtras, rhs: SpecExtras) -> Bool {
        lhs.otherURLs == rhs.otherURLs && lhs.sha256 == rhs.sha256 && lhs.size == rhs.size
            && lhs.upload == rhs.upload
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(self.otherURLs)
        hasher.combine(self.sha256)
        hasher.combine(self.size)
        hasher.combine(self.upload)
    }
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

/// A job's persistent state: what the store keeps and the reconciler reads. Compact (optional times and sizes
/// are held with sentinels); the mirrored content's validators stay in the store (``MirrorValidators``) and are
/// read when a refresh starts.
public struct JobRecord: Hashable, Sendable {
    /// The store's id, shown to people (`barge status`, `barge suspend 12`).
    public var id: Int64
    /// Bytes known to be on disk in the partial (stored only after an fsync).
    public var offset: UInt64
    private var totalOrMax: UInt64 = .max
    /// When the current run of failures began (epoch seconds).
    @CompactTime public var firstFailureAt: Double? = nil
    /// When the job is next due: its retry time (transient error) or its refresh time (up to date); nil: now.
    @CompactTime public var dueAt: Double? = nil
    /// When a transfer of it last started (round robin within a priority level).
    @CompactTime public var lastStartedAt: Double? = nil
    /// When it last completed.
    @CompactTime public var completedAt: Double? = nil
    /// Why, in words a person understands ("waiting for window 22:00-06:00"). Empty for an up-to-date job: its
    /// status says when it is next checked, from its due time.
    public var reason: String
    private var failures: Int32 = 0
    /// Where it is in its life.
    public var state: JobState
    /// Suspended by a person; stays so until resumed.
    public var userSuspended: Bool
    /// A verified copy was mirrored and its validators (``MirrorValidators``) are in the store, so a refresh can
    /// be a conditional request.
    public var hasValidators: Bool = false

    /// A new job: queued, never run.
    public init(id: Int64) {
        self.id = id
        self.state = .queued
        self.reason = "new"
        self.userSuspended = false
        self.offset = 0
    }

    /// Failed attempts since the last success.
    public var attempts: Int {
        get { Int(self.failures) }
        set { self.failures = Int32(clamping: newValue) }
    }

    /// The size, when known.
    public var totalBytes: UInt64? {
        get { self.totalOrMax == .max ? nil : self.totalOrMax }
        set { self.totalOrMax = newValue ?? .max }
    }

    /// The reason to show at `now`: the stored one, or for an up-to-date job (which stores none) what it holds
    /// and when it is next checked ("mirrored 1MiB; next check in 23h 59m").
    public func statusReason(now: Double) -> String {
        guard self.reason.isEmpty, self.state == .upToDate else { return self.reason }
        let held = self.totalBytes.map { "mirrored \(ByteCount($0).humanReadable)" } ?? "mirrored"
        guard let due = self.dueAt else { return "\(held); never re-checked" }
        guard due > now else { return "\(held); check due now" }
        // Seconds matter only in the last hour.
        let seconds = Int64((due - now).rounded(.up))
        let shown = seconds >= 3600 ? (seconds + 59) / 60 * 60 : seconds
        return "\(held); next check in \(TimeSpan(seconds: shown))"
    }
}

/// A time (epoch seconds) or none, held in 8 bytes (none is -∞) where an optional takes 16 in a record.
@propertyWrapper
public struct CompactTime: Hashable, Sendable {
    private var seconds = -Double.infinity

    /// Holds `wrappedValue`.
    public init(wrappedValue: Double?) { self.wrappedValue = wrappedValue }

    /// The time, or nil.
    public var wrappedValue: Double? {
        get { self.seconds == -.infinity ? nil : self.seconds }
        set { self.seconds = newValue ?? -.infinity }
    }
}

/// What identifies a mirrored copy at its origin and locally: the validators of a conditional refresh and the
/// content's SHA-256; for an upload, its resumable session. Kept in the store, read when a transfer starts.
public struct MirrorValidators: Hashable, Sendable {
    /// The origin's entity tag.
    public var etag: String?
    /// The origin's Last-Modified.
    public var lastModified: String?
    /// The mirrored content's SHA-256, lowercase hex.
    public var contentSHA256: String?
    /// An upload's resumable session at its server (the tus upload's URL): the next run resumes it.
    public var uploadSession: String?

    /// Creates validators.
    public init(
        etag: String? = nil,
        lastModified: String? = nil,
        contentSHA256: String? = nil,
        uploadSession: String? = nil
    ) {
        self.etag = etag
        self.lastModified = lastModified
        self.contentSHA256 = contentSHA256
        self.uploadSession = uploadSession
    }
}

/// One job as the reconciler sees it: what it should do, what the store says, and whether it runs now.
public struct JobView: Hashable, Sendable {
    /// What to transfer.
    public var spec: JobSpec
    /// Its persistent state.
    public var record: JobRecord
    /// Whether the engine has a transfer for it now (connected, or waiting in the engine for a connection).
    public var isRunning: Bool
    /// Whether its transfer has a connection (the engine admitted it); false while it waits in the engine.
    public var isAdmitted: Bool

    /// Creates a view.
    public init(spec: JobSpec, record: JobRecord, isRunning: Bool, isAdmitted: Bool? = nil) {
        self.spec = spec
        self.record = record
        self.isRunning = isRunning
        self.isAdmitted = isAdmitted ?? isRunning
    }
}
