public import BargeCore

/// Identifies one transfer within an engine.
public struct TransferID: Hashable, Sendable, CustomStringConvertible {
    /// The number.
    public var rawValue: UInt64

    /// Creates an id.
    public init(_ rawValue: UInt64) {
        self.rawValue = rawValue
    }

    public var description: String { "#\(self.rawValue)" }
}

/// What identifies a version of a remote file: its strong ETag, else its Last-Modified date.
public struct Validators: Hashable, Sendable, Codable {
    /// The `ETag` header as sent (quotes included).
    public var etag: String?
    /// The `Last-Modified` header as sent.
    public var lastModified: String?

    /// Creates validators.
    public init(etag: String? = nil, lastModified: String? = nil) {
        self.etag = etag
        self.lastModified = lastModified
    }

    /// The value for `If-Range`: a strong ETag, else the date; nil when neither can safely be used
    /// (weak ETags are not allowed in `If-Range`).
    public var ifRange: String? {
        if let etag, !etag.hasPrefix("W/") { return etag }
        return self.lastModified
    }

    /// Whether there is anything to make a conditional request with.
    public var isEmpty: Bool { self.etag == nil && self.lastModified == nil }

    /// The compact form kept in the partial's extended attribute.
    var encoded: String? {
        guard let value = self.ifRange else { return nil }
        return value == self.etag ? "etag:\(value)" : "last-modified:\(value)"
    }

    init?(encoded: String) {
        if encoded.hasPrefix("etag:") {
            self.init(etag: String(encoded.dropFirst(5)))
        } else if encoded.hasPrefix("last-modified:") {
            self.init(lastModified: String(encoded.dropFirst(14)))
        } else {
            return nil
        }
    }
}

/// TLS settings beyond the defaults (verification is always on).
public struct TLSOptions: Hashable, Sendable {
    /// A PEM file of CA certificates to trust instead of the system's.
    public var caFile: String?
    /// A PEM client certificate.
    public var clientCertificate: String?
    /// The client certificate's PEM private key.
    public var clientKey: String?

    /// No extra settings.
    public init(caFile: String? = nil, clientCertificate: String? = nil, clientKey: String? = nil) {
        self.caFile = caFile
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
    }
}

/// Everything the engine needs to fetch one file into place.
public struct TransferRequest: Sendable {
    /// Sources tried in order: the URL, or the mirrors.
    public var sources: [String]
    /// The absolute local path.
    public var destination: String
    /// The expected size, checked against the server's and after the transfer.
    public var expectedSize: UInt64?
    /// The expected SHA-256, lowercase hex.
    public var sha256: String?
    /// Report the content's SHA-256 in ``CompletedTransfer/sha256`` even when none is expected. Hashing is
    /// otherwise skipped: it costs a tenth of the engine thread's time on a burst of small files, and a resumed
    /// partial need not be read again.
    public var reportsSHA256 = false
    /// Extra request headers.
    public var headers: [HTTPHeader] = []
    /// Credentials from a secret file.
    public var credentials: Credentials?
    /// Validators of the file now at the destination: the request becomes conditional (304 → not modified).
    public var currentValidators: Validators?
    /// The resume point the caller knows to be on disk (the agent's checkpoint); nil trusts the partial's size.
    public var resumeOffset: UInt64?
    /// Whether an earlier run may have left a partial to resume or replace. A caller that knows none did (the
    /// agent's job that never started) saves a lookup per file; a partial there anyway is replaced once this
    /// transfer names its own.
    public var mayHaveEarlierPartial = true
    /// The validators of the partial's content as the caller stored them; used when the partial's own extended
    /// attribute is missing.
    public var partialValidators: Validators?
    /// `fsync` the partial and report a ``TransferEvent/checkpoint(offset:)`` every this many bytes; nil: never
    /// (a one-shot download needs no checkpoints: the partial's size is its resume point).
    public var checkpointInterval: UInt64?
    /// A per-transfer cap.
    public var maxRate: RateLimit = .off
    /// Where the transfer stands in the engine's line for a connection: higher priorities are admitted first.
    public var priority: Priority = .foreground
    /// No byte for this long → the attempt fails as stalled.
    public var stallTimeout: Double = 60
    /// Connection set-up limit.
    public var connectTimeout: Double = 30
    /// Whether a redirect from https to http is followed.
    public var allowInsecureRedirect = false
    /// Redirects followed at most.
    public var maxRedirects = 10
    /// The URL schemes allowed, for the request and for redirects.
    public var allowedSchemes: [String] = ["https", "http"]
    /// Permission bits of the committed file.
    public var mode: UInt32 = 0o644
    /// Owner of the committed file (numeric), or nil to leave it to the engine's user.
    public var owner: (uid: UInt32, gid: UInt32)?
    /// TLS settings.
    public var tls = TLSOptions()
    /// A proxy URL; nil uses the standard environment variables (`https_proxy`, `no_proxy`, …).
    public var proxy: String?
    /// The interface its connections are bound to (nil: wherever the kernel's routes send them).
    public var interface: String?
    /// Whether it draws from its interface's yield budget (``TransferEngine/setYieldRate(on:_:direction:)``): a background
    /// transfer that backs off while other traffic uses the link. Needs `interface`.
    public var yields = false
    /// Whether its connections are marked Lower-Effort (DSCP LE, RFC 8622), so routers that honour it forward the
    /// user's own traffic first.
    public var lowerEffort = false
    /// The known-hosts file for `sftp://` and `scp://`: the server's host key must be in it (nil refuses them).
    public var sshKnownHosts: String?
    /// The TCP congestion control of its new connections (`lp` for background uploads), where the kernel has it;
    /// nil leaves the system's.
    public var congestionControl: String?
    /// Set for an upload: ``destination`` is then the local file sent to the one source URL.
    public var upload: UploadRequest?

    /// Creates a request for `sources` → `destination`.
    public init(sources: [String], destination: String) {
        self.sources = sources
        self.destination = destination
    }
}

extension TransferRequest {
    /// A request for a manifest's download entry, under the agent config's schemes.
    public init(entry: DownloadEntry, config: AgentConfig) {
        self.init(spec: JobSpec(manifest: "", entry: entry), config: config)
    }

    /// The request for a job: its sources, checks and policy, with the agent config's schemes and proxy.
    public init(spec: JobSpec, config: AgentConfig) {
        self.init(sources: spec.urls, destination: spec.destination)
        self.priority = spec.policy.priority
        self.expectedSize = spec.size
        self.sha256 = spec.sha256
        self.headers = spec.policy.headers
        self.credentials = spec.policy.credentials
        self.maxRate = spec.policy.maxRate
        self.mode = spec.policy.mode
        self.allowedSchemes = config.allowedSchemes
        self.proxy = config.proxy
        self.sshKnownHosts = config.sshKnownHosts
        self.stallTimeout = Double(config.stallTimeout.seconds)
        // Normal and low are background: polite on the wire, and yielding where the agent watches the link.
        let background = spec.policy.priority == .normal || spec.policy.priority == .low
        self.lowerEffort = background && config.yield.lowerEffort
        self.yields = background && config.yield.enabled
    }
}

extension TransferRequest {
    /// Whether the content is hashed: a hash is expected or asked for.
    var hashesContent: Bool { self.sha256 != nil || self.reportsSHA256 }
}
