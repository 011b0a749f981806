/// How urgent a transfer is, as BITS has it: foreground runs at once; the background levels take turns by rank.
public enum Priority: String, CaseIterable, Hashable, Sendable, Codable, Comparable {
    /// A person is waiting: runs at once, not held back for other traffic.
    case foreground
    /// Background, before normal and low.
    case high
    /// Background; the default.
    case normal
    /// Background, only when nothing else waits.
    case low

    /// Rank: foreground is highest.
    var rank: Int {
        switch self {
        case .foreground: 3
        case .high: 2
        case .normal: 1
        case .low: 0
        }
    }

    public static func < (lhs: Priority, rhs: Priority) -> Bool { lhs.rank < rhs.rank }
}

/// Which networks a transfer may use, by their cost.
public enum NetworkCostPolicy: String, CaseIterable, Hashable, Sendable, Codable {
    /// Any uplink, metered and roaming included.
    case any
    /// Any uplink but a roaming one.
    case notRoaming = "not-roaming"
    /// Only unmetered uplinks; the default, so a background agent never spends paid data unasked.
    case unmetered
}

/// When an entry is checked again against its origin after it has been mirrored.
public enum RefreshInterval: Hashable, Sendable, CustomStringConvertible {
    /// Fetch once; never check again.
    case never
    /// A conditional request this often.
    case every(TimeSpan)

    /// `never` or a duration.
    public var description: String {
        switch self {
        case .never: "never"
        case .every(let span): span.description
        }
    }
}

/// Retry timing after transient errors (BITS's minimum retry delay and no-progress timeout).
public struct RetryPolicy: Hashable, Sendable {
    /// The first retry waits this long; later ones back off exponentially with jitter.
    public var minDelay: TimeSpan
    /// A job that makes no progress for this long turns into an error.
    public var giveUpAfter: TimeSpan

    /// Creates a policy.
    public init(minDelay: TimeSpan, giveUpAfter: TimeSpan) {
        self.minDelay = minDelay
        self.giveUpAfter = giveUpAfter
    }

    /// 60 s first retry, error after 14 days without progress.
    public static let `default` = RetryPolicy(minDelay: TimeSpan(seconds: 60), giveUpAfter: .days(14))
    /// BITS's floor for the retry delay.
    public static let minimumDelay = TimeSpan(seconds: 5)
}

/// The owner of a written file: `user` or `user:group` (names or numeric ids).
public struct FileOwner: Hashable, Sendable, CustomStringConvertible {
    /// User name or numeric uid.
    public var user: String
    /// Group name or numeric gid; nil keeps the user's primary group.
    public var group: String?

    /// Creates an owner.
    public init(user: String, group: String?) {
        self.user = user
        self.group = group
    }

    public var description: String { self.group.map { "\(self.user):\($0)" } ?? self.user }
}

/// One request header added to every request of an entry.
public struct HTTPHeader: Hashable, Sendable {
    /// Header name, e.g. `X-Fleet`.
    public var name: String
    /// Header value.
    public var value: String

    /// Creates a header.
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// Where an entry's credentials live: always a file, never inline in a manifest.
public enum Credentials: Hashable, Sendable {
    /// A file holding a bearer token.
    case bearerFile(String)
    /// A file holding `user:password` for HTTP basic authentication.
    case basicFile(String)
    /// A private key file for `sftp://` and `scp://` (the user is the URL's, `sftp://user@host/…`).
    case sshKeyFile(String)

    /// The path of the secret file.
    public var path: String {
        switch self {
        case .bearerFile(let path), .basicFile(let path), .sshKeyFile(let path): path
        }
    }
}

/// The complete policy of one entry after defaults are applied.
public struct TransferPolicy: Hashable, Sendable {
    /// Urgency.
    public var priority: Priority = .normal
    /// Which networks the entry may use.
    public var network: NetworkCostPolicy = .unmetered
    /// How often a mirrored entry is checked again.
    public var refresh: RefreshInterval = .every(.hours(24))
    /// When the entry may transfer; empty means at any time.
    public var windows: [TimeWindow] = []
    /// Per-entry rate cap.
    public var maxRate: RateLimit = .off
    /// Retry timing.
    public var retry: RetryPolicy = .default
    /// Owner of the written file; nil leaves it to the agent's user.
    public var owner: FileOwner?
    /// Permission bits of the written file.
    public var mode: UInt32 = 0o644
    /// Extra request headers.
    public var headers: [HTTPHeader] = []
    /// Credentials, from a secret file.
    public var credentials: Credentials?

    /// The built-in defaults.
    public init() {}
}

/// Policy keys as written in a `defaults:` block or an entry: every key optional, applied over the next level.
public struct PolicyOverrides: Hashable, Sendable {
    public var priority: Priority?
    public var network: NetworkCostPolicy?
    public var refresh: RefreshInterval?
    public var windows: [TimeWindow]?
    public var maxRate: RateLimit?
    public var retryMinDelay: TimeSpan?
    public var retryGiveUpAfter: TimeSpan?
    public var owner: FileOwner?
    public var mode: UInt32?
    public var headers: [HTTPHeader]?
    public var credentials: Credentials?

    /// No overrides.
    public init() {}

    /// `base` with these overrides applied. Headers merge by name (case-insensitively), the override winning.
    public func applied(to base: TransferPolicy) -> TransferPolicy {
        var policy = base
        if let priority { policy.priority = priority }
        if let network { policy.network = network }
        if let refresh { policy.refresh = refresh }
        if let windows { policy.windows = windows }
        if let maxRate { policy.maxRate = maxRate }
        if let retryMinDelay { policy.retry.minDelay = retryMinDelay }
        if let retryGiveUpAfter { policy.retry.giveUpAfter = retryGiveUpAfter }
        if let owner { policy.owner = owner }
        if let mode { policy.mode = mode }
        if let headers {
            let names = Set(headers.map { $0.name.lowercased() })
            policy.headers = policy.headers.filter { !names.contains($0.name.lowercased()) } + headers
        }
        if let credentials { policy.credentials = credentials }
        return policy
    }
}
