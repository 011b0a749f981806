import Yams

/// The result of reading the agent config: a config to use (built-in defaults where a key was bad) and every
/// problem found.
public struct ParsedAgentConfig: Sendable {
    /// The config; keys that failed to parse keep their defaults.
    public var config: AgentConfig
    /// Errors and warnings, in file order.
    public var diagnostics: [Diagnostic]

    /// Creates a result.
    public init(config: AgentConfig, diagnostics: [Diagnostic]) {
        self.config = config
        self.diagnostics = diagnostics
    }
}

/// Turns `barge.yaml` into an ``AgentConfig`` over the built-in defaults, reporting every problem with its
/// position. Relative paths in the file are taken relative to the file's directory.
public struct AgentConfigParser: Sendable {
    /// The defaults the file's keys override.
    public let defaults: AgentConfig

    /// Creates a parser over `defaults`.
    public init(defaults: AgentConfig) {
        self.defaults = defaults
    }

    static let keys = [
        "version", "manifests", "state-dir", "control-socket", "allowed-roots", "allowed-schemes", "concurrency",
        "bandwidth", "networks", "yield", "hooks", "proxy", "ssh-known-hosts", "admin-group",
        "stall-timeout", "link-grace", "metrics-listen",
    ]

    /// Parses `text`, the content of the config file at `path`.
    public func parse(text: String, path: String) -> ParsedAgentConfig {
        var source = YAMLSource(file: path)
        var config = self.defaults
        let directory = PathRules.directory(of: path)
        guard let root = source.compose(text) else {
            // An empty config file means the defaults.
            return ParsedAgentConfig(config: config, diagnostics: source.diagnostics)
        }
        guard let pairs = source.knownPairs(root, "the agent config", allowed: Self.keys) else {
            return ParsedAgentConfig(config: config, diagnostics: source.diagnostics)
        }
        for pair in pairs {
            let value = pair.value
            switch pair.key {
            case "version":
                if let version = source.string(value, "version"), version != "1" {
                    source.error(value, "config version '\(version)' is not supported; this barge reads version 1")
                }
            case "manifests":
                config.manifestDirectory =
                    Self.path(value, "manifests", relativeTo: directory, into: &source)
                    ?? config.manifestDirectory
            case "state-dir":
                config.stateDirectory =
                    Self.path(value, "state-dir", relativeTo: directory, into: &source)
                    ?? config.stateDirectory
            case "ssh-known-hosts":
                config.sshKnownHosts =
                    Self.path(value, "ssh-known-hosts", relativeTo: directory, into: &source)
                    ?? config.sshKnownHosts
            case "control-socket":
                config.controlSocket =
                    Self.path(value, "control-socket", relativeTo: directory, into: &source)
                    ?? config.controlSocket
            case "allowed-roots":
                if let roots = Self.roots(value, relativeTo: directory, into: &source) { config.allowedRoots = roots }
            case "allowed-schemes":
                if let schemes = Self.schemes(value, into: &source) { config.allowedSchemes = schemes }
            case "concurrency":
                config.concurrency = Self.concurrency(value, into: &source) ?? config.concurrency
            case "bandwidth":
                config.bandwidth = Self.bandwidth(value, into: &source) ?? config.bandwidth
            case "networks":
                config.networks = Self.networks(value, into: &source) ?? config.networks
            case "yield":
                config.yield = Self.yield(value, into: &source) ?? config.yield
            case "hooks":
                config.hooks = ManifestParser.hooks(value, into: &source) ?? config.hooks
            case "stall-timeout":
                if let span = source.unit(value, "stall-timeout", TimeSpan.init(parsing:)) {
                    if span.seconds < 1 {
                        source.error(value, "'stall-timeout' must be at least 1s")
                    } else {
                        config.stallTimeout = span
                    }
                }
            case "link-grace":
                if let span = source.unit(value, "link-grace", TimeSpan.init(parsing:)) {
                    if span > TimeSpan.minutes(10) {
                        source.error(value, "'link-grace' must be at most 10m (a link gone longer is not a flap)")
                    } else {
                        config.linkGrace = span
                    }
                }
            case "admin-group":
                if let group = source.string(value, "admin-group") {
                    if group.isEmpty || group.contains(where: { $0 == ":" || $0 == "/" || $0.isWhitespace }) {
                        source.error(value, "'admin-group' must be a group name or a numeric gid, such as barge-admin")
                    } else {
                        config.adminGroup = group
                    }
                }
            case "metrics-listen":
                if let text = source.string(value, "metrics-listen") {
                    if let listen = MetricsListenAddress(parsing: text) {
                        config.metricsListen = listen
                    } else {
                        source.error(
                            value,
                            "'metrics-listen' must be a port (9477, on 127.0.0.1) or ADDRESS:PORT "
                                + "(127.0.0.1:9477, [::1]:9477, 0.0.0.0:9477)"
                        )
                    }
                }
            case "proxy":
                if let proxy = source.string(value, "proxy") {
                    if let problem = URLRules.problem(with: proxy, allowedSchemes: ["http", "https"]) {
                        source.error(
                            value,
                            "'proxy' must be an http or https URL such as http://proxy:3128: \(problem)"
                        )
                    } else {
                        config.proxy = proxy
                    }
                }
            default:
                break
            }
        }
        let sorted = source.diagnostics.sorted { $0.location < $1.location }
        return ParsedAgentConfig(config: config, diagnostics: sorted)
    }

    static func path(
        _ node: Node,
        _ key: String,
        relativeTo directory: String,
        into source: inout YAMLSource
    ) -> String? {
        guard let text = source.string(node, key) else { return nil }
        let resolved = PathRules.resolve(text, against: directory)
        switch PathRules.normalize(resolved, allowTrailingSlash: true) {
        case .success(let path): return path
        case .failure(let problem):
            source.error(node, problem.message(key: key, path: text))
            return nil
        }
    }

    static func roots(_ node: Node, relativeTo directory: String, into source: inout YAMLSource) -> [String]? {
        guard case .sequence(let items) = node, !items.isEmpty else {
            source.error(node, "'allowed-roots' must be a non-empty list of directories such as [/srv, /var/lib]")
            return nil
        }
        var roots: [String] = []
        for item in items {
            guard let root = Self.path(item, "allowed-roots", relativeTo: directory, into: &source) else { return nil }
            if root == "/" {
                source.warning(item, "'/' as an allowed root lets manifests write anywhere, /etc included")
            }
            roots.append(root)
        }
        return roots
    }

    static func schemes(_ node: Node, into source: inout YAMLSource) -> [String]? {
        guard let names = source.stringList(node, "allowed-schemes") else { return nil }
        guard case .sequence(let items) = node else { return nil }
        var schemes: [String] = []
        for (name, item) in zip(names, items) {
            let lowered = name.lowercased()
            guard AgentConfig.knownSchemes.contains(lowered) else {
                source.error(
                    item,
                    "'\(name)' is not a scheme barge speaks; expected some of "
                        + AgentConfig.knownSchemes.joined(separator: ", ")
                        + Suggestion.hint(for: lowered, in: AgentConfig.knownSchemes)
                )
                return nil
            }
            schemes.append(lowered)
        }
        return schemes
    }

    static func concurrency(_ node: Node, into source: inout YAMLSource) -> Concurrency? {
        guard let pairs = source.knownPairs(node, "'concurrency'", allowed: ["total", "per-host"]) else { return nil }
        var concurrency = Concurrency()
        for pair in pairs {
            guard let value = source.integer(pair.value, pair.key, in: 1...1024) else { return nil }
            if pair.key == "total" { concurrency.total = value } else { concurrency.perHost = value }
        }
        return concurrency
    }

    /// `[{at: "08:00", days: [mon-fri], limit: off | RATE | {low: RATE, normal: RATE, high: RATE, foreground: RATE}}]`
    static func bandwidth(_ node: Node, into source: inout YAMLSource) -> [BandwidthRule]? {
        guard case .sequence(let items) = node else {
            source.error(node, "'bandwidth' must be a list of rows such as {at: \"08:00\", limit: 4MiB/s}")
            return nil
        }
        var rules: [BandwidthRule] = []
        for item in items {
            guard let pairs = source.knownPairs(item, "a bandwidth row", allowed: ["at", "days", "limit"]) else {
                return nil
            }
            var rule = BandwidthRule(at: 0)
            var sawAt = false
            var sawLimit = false
            for pair in pairs {
                switch pair.key {
                case "at":
                    sawAt = true
                    guard
                        let minutes = source.unit(
                            pair.value,
                            "at",
                            { text throws(UnitError) in
                                try TimeWindow.parseClock(Substring(text), in: text)
                            }
                        )
                    else { return nil }
                    guard minutes < 1440 else {
                        source.error(pair.value, "'at' must be before 24:00; write 00:00 for midnight")
                        return nil
                    }
                    rule.at = minutes
                case "days":
                    guard let days = ManifestParser.weekdays(pair.value, into: &source) else { return nil }
                    rule.days = days
                case "limit":
                    sawLimit = true
                    if case .scalar = pair.value {
                        guard let limit = source.unit(pair.value, "limit", RateLimit.init(parsing:)) else { return nil }
                        rule.total = limit
                    } else {
                        let levels = Priority.allCases.map(\.rawValue)
                        guard let limits = source.knownPairs(pair.value, "'limit'", allowed: levels) else { return nil }
                        for limit in limits {
                            guard let rate = source.unit(limit.value, limit.key, RateLimit.init(parsing:)) else {
                                return nil
                            }
                            rule.perPriority[Priority(rawValue: limit.key)!] = rate
                        }
                    }
                default:
                    break
                }
            }
            guard sawAt, sawLimit else {
                source.error(
                    item,
                    "a bandwidth row needs 'at' (HH:MM) and 'limit' (a rate, off, or rates per priority)"
                )
                return nil
            }
            rules.append(rule)
        }
        return rules
    }

    /// `[{match: {interface: "wwan*", kind: tether}, cost: metered, roaming: true}]`
    static func networks(_ node: Node, into source: inout YAMLSource) -> [NetworkRule]? {
        guard case .sequence(let items) = node else {
            source.error(
                node,
                "'networks' must be a list of rules such as {match: {interface: \"wwan*\"}, cost: metered}"
            )
            return nil
        }
        var rules: [NetworkRule] = []
        for item in items {
            guard let pairs = source.knownPairs(item, "a network rule", allowed: ["match", "cost", "roaming"]) else {
                return nil
            }
            let errorsBefore = source.errorCount
            var rule = NetworkRule()
            var sawMatch = false
            for pair in pairs {
                switch pair.key {
                case "match":
                    sawMatch = true
                    guard
                        let conditions = source.knownPairs(
                            pair.value,
                            "'match'",
                            allowed: ["interface", "kind", "gateway", "gateway-mac"]
                        ),
                        !conditions.isEmpty
                    else {
                        if case .mapping = pair.value {
                            source.error(
                                pair.value,
                                "'match' needs 'interface' (a name glob), 'kind', 'gateway' or 'gateway-mac'"
                            )
                        }
                        return nil
                    }
                    for condition in conditions {
                        switch condition.key {
                        case "interface": rule.interface = source.string(condition.value, "interface")
                        case "kind": rule.kind = source.choice(condition.value, "kind", as: InterfaceKind.self)
                        case "gateway":
                            guard let text = source.string(condition.value, "gateway") else { break }
                            guard let address = UplinkClassifier.canonicalAddress(text) else {
                                source.error(
                                    condition.value,
                                    "'gateway' must be an IPv4 or IPv6 address, such as 192.168.8.1 or fe80::1"
                                )
                                break
                            }
                            rule.gateway = address
                        default:
                            guard let text = source.string(condition.value, "gateway-mac") else { break }
                            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
                            guard parts.count == 6, parts.allSatisfy({ $0.count == 2 && $0.allSatisfy(\.isHexDigit) })
                            else {
                                source.error(
                                    condition.value,
                                    "'gateway-mac' must be a MAC address of six hex pairs, such as aa:bb:cc:00:11:22"
                                )
                                break
                            }
                            rule.gatewayMAC = text.lowercased()
                        }
                    }
                case "cost":
                    rule.cost = source.choice(pair.value, "cost", as: NetworkCost.self)
                case "roaming":
                    rule.roaming = source.boolean(pair.value, "roaming")
                default:
                    break
                }
            }
            guard source.errorCount == errorsBefore else { return nil }
            guard sawMatch, rule.cost != nil || rule.roaming != nil else {
                source.error(item, "a network rule needs 'match' and at least one of 'cost' or 'roaming'")
                return nil
            }
            rules.append(rule)
        }
        return rules
    }

    /// A share of a link's capacity: `5%` (more than 0, at most 50 %).
    static func share(parsing text: String) throws(UnitError) -> Double {
        let trimmed = text.trimmingASCIIWhitespace()
        guard trimmed.hasSuffix("%"), let percent = Double(trimmed.dropLast().trimmingASCIIWhitespace()),
            percent > 0, percent <= 50
        else {
            throw UnitError("'\(text)' is not a share of the link; expected a percentage from 0 to 50, such as 5%")
        }
        return percent / 100
    }

    static func yield(_ node: Node, into source: inout YAMLSource) -> YieldPolicy? {
        let allowed = ["enabled", "capacity", "lower-effort", "threshold", "floor", "climb", "upload-congestion"]
        guard let pairs = source.knownPairs(node, "'yield'", allowed: allowed) else { return nil }
        var policy = YieldPolicy()
        for pair in pairs {
            if pair.key == "enabled" {
                guard let enabled = source.boolean(pair.value, "enabled") else { return nil }
                policy.enabled = enabled
            } else if pair.key == "lower-effort" {
                guard let marked = source.boolean(pair.value, "lower-effort") else { return nil }
                policy.lowerEffort = marked
            } else if pair.key == "threshold" || pair.key == "floor" {
                guard let share = source.unit(pair.value, pair.key, Self.share(parsing:)) else { return nil }
                if pair.key == "threshold" { policy.threshold = share } else { policy.floor = share }
            } else if pair.key == "upload-congestion" {
                guard let name = source.string(pair.value, "upload-congestion") else { return nil }
                let valid =
                    !name.isEmpty && name.utf8.count < 16
                    && name.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5f }
                guard valid else {
                    source.error(
                        pair.value,
                        "'upload-congestion' must name a TCP congestion control (lp, bbr, reno …) or be 'off', "
                            + "found '\(name)'"
                    )
                    return nil
                }
                policy.uploadCongestionControl = name == "off" ? nil : name
            } else if pair.key == "climb" {
                guard let span = source.unit(pair.value, "climb", TimeSpan.init(parsing:)) else { return nil }
                guard span.seconds >= 1, span <= TimeSpan.minutes(10) else {
                    source.error(pair.value, "'climb' must be from 1s to 10m")
                    return nil
                }
                policy.climb = span
            } else {
                guard let capacity = source.unit(pair.value, "capacity", ByteRate.init(parsing:)) else { return nil }
                policy.capacity = capacity
            }
        }
        return policy
    }
}
