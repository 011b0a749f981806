/// What `barge net --json` prints: the uplinks and the verdict on each.
public struct NetworkReport: Codable, Hashable, Sendable {
    /// One uplink.
    public struct UplinkReport: Codable, Hashable, Sendable {
        /// The interface's name.
        public var name: String
        /// Its kind (`ethernet`, `wifi`, `wwan` …).
        public var kind: String
        /// `unmetered` or `metered`.
        public var cost: String
        /// Why: `rule 1 'wwan*'`, `set by hand (barge net set)`, `wwan: DEVTYPE=wwan` …
        public var costSource: String
        /// Whether it is roaming.
        public var roaming: Bool
        /// Why it is or is not.
        public var roamingSource: String
        /// The address families it carries a default route for: `ipv4`, `ipv6`.
        public var families: [String]
        /// The gateway of its default route.
        public var gateway: String?

        /// An uplink's report.
        public init(
            name: String,
            kind: String,
            cost: String,
            costSource: String,
            roaming: Bool,
            roamingSource: String,
            families: [String],
            gateway: String?
        ) {
            self.name = name
            self.kind = kind
            self.cost = cost
            self.costSource = costSource
            self.roaming = roaming
            self.roamingSource = roamingSource
            self.families = families
            self.gateway = gateway
        }
    }

    /// Every uplink, in name order.
    public var uplinks: [UplinkReport]

    /// A report.
    public init(uplinks: [UplinkReport]) { self.uplinks = uplinks }

    /// The report as `barge net` prints it: one line per uplink.
    public var text: String {
        guard !self.uplinks.isEmpty else {
            return "no uplink (no interface is up with an address and a default route)\n"
        }
        return self.uplinks.map { uplink in
            let roaming = uplink.roaming ? "roaming (\(uplink.roamingSource))" : "not roaming"
            return "\(uplink.name): \(uplink.kind), \(uplink.cost) (\(uplink.costSource)), \(roaming), "
                + "\(uplink.families.joined(separator: "+")) via \(uplink.gateway ?? "no gateway")\n"
        }.joined()
    }
}
