/// The agent's configuration (`/etc/barge/barge.yaml`): paths, limits, network rules and hooks.
public struct AgentConfig: Hashable, Sendable {
    /// Whether this is the system agent (run by root) or a per-user agent.
    public enum Scope: String, Hashable, Sendable {
        /// The system-wide agent; manifests must be owned by root.
        case system
        /// A per-user agent; manifests must be owned by that user (or root).
        case user
    }

    /// System or per-user.
    public var scope: Scope
    /// The drop-in directory of manifests.
    public var manifestDirectory: String
    /// Where the SQLite store lives; a local filesystem.
    public var stateDirectory: String
    /// The control socket's path.
    public var controlSocket: String
    /// Every download destination and upload source lies below one of these.
    public var allowedRoots: [String]
    /// URL schemes manifests may use.
    public var allowedSchemes: [String]
    /// Transfer concurrency limits.
    public var concurrency: Concurrency
    /// The global bandwidth timetable.
    public var bandwidth: [BandwidthRule]
    /// Cost rules for uplinks, first match wins.
    public var networks: [NetworkRule]
    /// Yielding to foreground traffic.
    public var yield: YieldPolicy
    /// Commands run on job events.
    public var hooks: Hooks
    /// The proxy for every transfer (`http://proxy:3128`); nil uses the standard environment variables.
    public var proxy: String?
    /// The known-hosts file that `sftp://` and `scp://` servers' host keys are checked against (an unknown or
    /// changed key is refused).
    public var sshKnownHosts: String
    /// The group (name or gid) whose members may control every job through the control socket, as root and the
    /// agent's own user may; other local users read the status and control only the jobs they added.
    public var adminGroup: String?
    /// A transfer that receives nothing for this long (while it is not paused or waiting for a connection) fails
    /// its attempt as stalled, a transient error.
    public var stallTimeout = TimeSpan(seconds: 60)
    /// How long transfers whose origin lost its route (a link down) stay paused on their connections before they
    /// are stopped; a link that comes back sooner continues them where they were.
    public var linkGrace = TimeSpan(seconds: 2)
    /// Where to serve `GET /metrics` over TCP as well as on the control socket; nil (the default): nowhere.
    public var metricsListen: MetricsListenAddress?

    /// Schemes a manifest may name at all; `allowed-schemes` picks from these.
    public static let knownSchemes = ["http", "https", "file", "sftp", "ftp", "ftps", "smb", "smbs"]

    /// The built-in defaults for `scope`, with per-user paths from `environment`.
    public static func defaults(scope: Scope, environment: UserEnvironment = UserEnvironment()) -> AgentConfig {
        switch scope {
        case .system:
            AgentConfig(
                scope: .system,
                manifestDirectory: "/etc/barge/manifests.d",
                stateDirectory: "/var/lib/barge",
                controlSocket: "/run/barge/barge.sock",
                allowedRoots: ["/srv", "/var/lib", "/var/cache", "/opt"],
                allowedSchemes: ["https", "http"],
                concurrency: Concurrency(),
                bandwidth: [],
                networks: [],
                yield: YieldPolicy(),
                hooks: Hooks(),
                sshKnownHosts: "/etc/ssh/ssh_known_hosts"
            )
        case .user:
            {
                var config = AgentConfig.defaults(scope: .system)
                config.scope = .user
                config.manifestDirectory = environment.configHome + "/barge/manifests.d"
                config.stateDirectory = environment.stateHome + "/barge"
                config.controlSocket = environment.runtimeDirectory + "/barge.sock"
                config.allowedRoots = [environment.home]
                config.sshKnownHosts = environment.home + "/.ssh/known_hosts"
                return config
            }()
        }
    }

    /// The default config file for `scope`.
    public static func defaultPath(scope: Scope, environment: UserEnvironment = UserEnvironment()) -> String {
        switch scope {
        case .system: "/etc/barge/barge.yaml"
        case .user: environment.configHome + "/barge/barge.yaml"
        }
    }

    /// Whether `path` (absolute, normalised) lies below one of the allowed roots.
    public func isAllowed(path: String) -> Bool {
        self.allowedRoots.contains { root in PathRules.isPath(path, below: root) }
    }

    /// Why a local path (absolute, normalised) may not be written or read by a transfer, or nil: it must lie below
    /// an allowed root and never inside the agent's own state or manifest directory. The same rules hold for a
    /// manifest entry and for a job added through the control socket.
    public func pathProblem(_ path: String) -> PathProblem? {
        guard self.isAllowed(path: path) else { return .outsideAllowedRoots(self.allowedRoots) }
        if PathRules.isPath(path, below: self.stateDirectory) { return .insideStateDirectory(self.stateDirectory) }
        if PathRules.isPath(path, below: self.manifestDirectory) {
            return .insideManifestDirectory(self.manifestDirectory)
        }
        return nil
    }

    /// Why a file a transfer writes or reads may not be at `path` (absolute, normalised): ``pathProblem(_:)``'s
    /// reasons, and an allowed root itself, since a file there would be made in the root's parent, outside every
    /// root (a root that does not exist yet, say). A download's destination and a job's are files.
    public func fileProblem(_ path: String) -> PathProblem? {
        let root = self.allowedRoots.first { root in
            (root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root) == path
        }
        if let root { return .allowedRootItself(root) }
        return self.pathProblem(path)
    }

    /// Why a local path is refused (``AgentConfig/pathProblem(_:)``, ``AgentConfig/fileProblem(_:)``).
    public enum PathProblem: Hashable, Sendable {
        /// Below none of the allowed roots (listed).
        case outsideAllowedRoots([String])
        /// An allowed root itself, for a file.
        case allowedRootItself(String)
        /// Inside the agent's state directory (its database).
        case insideStateDirectory(String)
        /// Inside the drop-in directory.
        case insideManifestDirectory(String)

        /// What is wrong, for people, about `path`.
        public func message(path: String) -> String {
            switch self {
            case .outsideAllowedRoots(let roots):
                "'\(path)' is outside the allowed roots (\(roots.joined(separator: ", ")))"
            case .allowedRootItself(let root):
                "'\(path)' is the allowed root \(root) itself; name a file below it"
            case .insideStateDirectory(let directory):
                "'\(path)' lies inside barge's own state directory \(directory)"
            case .insideManifestDirectory(let directory):
                "'\(path)' lies inside barge's own manifest directory \(directory)"
            }
        }
    }
}

/// The per-user directories (XDG base directories) a user agent's defaults come from.
public struct UserEnvironment: Hashable, Sendable {
    /// `$HOME`.
    public var home: String
    /// `$XDG_CONFIG_HOME`, else `~/.config`.
    public var configHome: String
    /// `$XDG_STATE_HOME`, else `~/.local/state`.
    public var stateHome: String
    /// `$XDG_RUNTIME_DIR`, else a directory in the state home.
    public var runtimeDirectory: String

    /// Derives the directories from environment variables (pass `ProcessInfo.processInfo.environment`).
    public init(variables: [String: String] = [:]) {
        func absolute(_ name: String) -> String? {
            guard let value = variables[name], value.hasPrefix("/") else { return nil }
            return value
        }
        let home = absolute("HOME") ?? "/"
        self.home = home
        let base = home == "/" ? "" : home
        self.configHome = absolute("XDG_CONFIG_HOME") ?? base + "/.config"
        self.stateHome = absolute("XDG_STATE_HOME") ?? base + "/.local/state"
        self.runtimeDirectory = absolute("XDG_RUNTIME_DIR") ?? self.stateHome + "/barge/run"
    }
}

/// Transfer concurrency limits.
public struct Concurrency: Hashable, Sendable {
    /// Transfers running at once across all hosts.
    public var total: Int = 8
    /// Transfers running at once to one host.
    public var perHost: Int = 4

    /// The defaults: 8 in all, 4 per host.
    public init() {}
}

/// One row of the bandwidth timetable: from `at` on the given days, these caps apply until the next row.
public struct BandwidthRule: Hashable, Sendable {
    /// Minutes after midnight (local time).
    public var at: Int
    /// The days the row applies on.
    public var days: WeekdaySet
    /// A cap on all transfers together (`limit: 4MiB/s`), or off.
    public var total: RateLimit?
    /// Caps per priority level (`limit: {low: 1MiB/s}`).
    public var perPriority: [Priority: RateLimit]

    /// Creates a row.
    public init(
        at: Int,
        days: WeekdaySet = .everyDay,
        total: RateLimit? = nil,
        perPriority: [Priority: RateLimit] = [:]
    ) {
        self.at = at
        self.days = days
        self.total = total
        self.perPriority = perPriority
    }
}

/// The cost class of an uplink.
public enum NetworkCost: String, CaseIterable, Hashable, Sendable, Codable {
    /// Flat-rate: ethernet, home Wi-Fi.
    case unmetered
    /// Paid by volume: mobile data, tethering.
    case metered
}

/// A kind of network interface, as the network monitor classifies it (``UplinkClassifier/kind(of:)``).
public enum InterfaceKind: String, CaseIterable, Hashable, Sendable, Codable {
    case ethernet, wifi, wwan, ppp, bluetooth, tether, vpn, other
}

/// A cost rule: uplinks that match get this cost and/or roaming flag.
public struct NetworkRule: Hashable, Sendable {
    /// An interface-name glob (`wwan*`); nil matches any name.
    public var interface: String?
    /// An interface kind; nil matches any kind.
    public var kind: InterfaceKind?
    /// The uplink's gateway address (`192.168.8.1`, `fe80::1`); nil matches any.
    public var gateway: String?
    /// The gateway's link-layer address (`aa:bb:cc:dd:ee:ff`, compared without case); nil matches any.
    public var gatewayMAC: String?
    /// The cost given to a matching uplink.
    public var cost: NetworkCost?
    /// Whether a matching uplink is roaming.
    public var roaming: Bool?

    /// Creates a rule.
    public init(
        interface: String? = nil,
        kind: InterfaceKind? = nil,
        gateway: String? = nil,
        gatewayMAC: String? = nil,
        cost: NetworkCost? = nil,
        roaming: Bool? = nil
    ) {
        self.interface = interface
        self.kind = kind
        self.gateway = gateway
        self.gatewayMAC = gatewayMAC
        self.cost = cost
        self.roaming = roaming
    }
}

/// Yielding bandwidth to the user's own (foreground) traffic on the link.
public struct YieldPolicy: Hashable, Sendable {
    /// Whether background transfers back off when other traffic uses the link.
    public var enabled: Bool = true
    /// The link's real capacity, when slower than the interface reports.
    public var capacity: ByteRate?
    /// Whether background transfers (normal, low) mark their connections Lower-Effort (DSCP LE, RFC 8622).
    public var lowerEffort: Bool = true
    /// Other traffic counts once above this share of the link's capacity (0.05: 5 %).
    public var threshold: Double = 0.05
    /// The background budget never goes below this share of the capacity while yielding.
    public var floor: Double = 0.02
    /// How long the budget takes to climb from nothing back to the capacity once the other traffic stops.
    public var climb = TimeSpan(seconds: 10)
    /// The TCP congestion control of background uploads' new connections (TCP-LP, `lp`, backs off as soon as
    /// queues build); nil leaves the system's. Set where the kernel has it, silently skipped where not.
    public var uploadCongestionControl: String? = "lp"

    /// Enabled, no capacity hint.
    public init() {}
}

/// The TCP address of the metrics listener (`metrics-listen`): a port alone means loopback (127.0.0.1).
public struct MetricsListenAddress: Hashable, Sendable {
    /// A numeric IPv4 or IPv6 address (no brackets).
    public var host: String
    /// 1–65535.
    public var port: Int

    /// `9477` (on 127.0.0.1), `127.0.0.1:9477`, `[::1]:9477` or `0.0.0.0:9477`; nil for anything else.
    public init?(parsing text: String) {
        if let port = Int(text) {
            self.host = "127.0.0.1"
            self.port = port
        } else if text.hasPrefix("["), let close = text.firstIndex(of: "]"),
            text[text.index(after: close)...].hasPrefix(":"),
            let port = Int(text[text.index(close, offsetBy: 2)...])
        {
            self.host = String(text[text.index(after: text.startIndex)..<close])
            self.port = port
            guard self.host.contains(":") else { return nil }
        } else if let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) {
            self.host = String(text[..<colon])
            self.port = port
            guard !self.host.contains(":") else { return nil }
        } else {
            return nil
        }
        guard (1...65535).contains(self.port), UplinkClassifier.canonicalAddress(self.host) != nil else { return nil }
    }

    /// As written in barge.yaml: `127.0.0.1:9477`, `[::1]:9477`.
    public var description: String {
        self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }
}
