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
        /// Why: `rule 1 'wwan*'`, `set by hand`, `wwan: DEVTYPE=wwan` …
        public var costSource: String
        /// Whether it is roaming.
        public var roaming: Bool
        /// Why it is or is not.
        public var roamingSource: String
        /// The address families it carries a default route for: `ipv4`, `ipv6`.
        public var families: [String]
        /// The gateway of its default route.
        public var gateway: String?
        /// The gateway's link-layer address, when the neighbour table knows it.
        public var gatewayMAC: String?
        /// Bytes per second the interface receives and sends now, all traffic (its kernel counters over a short
        /// span); nil when not measured.
        public var receiveRate: UInt64?
        /// See `receiveRate`.
        public var sendRate: UInt64?
        /// Bytes per second of Barge's own transfers that leave by it (through the agent only).
        public var bargeRate: UInt64?

        /// An uplink's report.
        public init(
            name: String,
            kind: String,
            cost: String,
            costSource: String,
            roaming: Bool,
            roamingSource: String,
            families: [String],
            gateway: String?,
            gatewayMAC: String? = nil
        ) {
            self.name = name
            self.kind = kind
            self.cost = cost
            self.costSource = costSource
            self.roaming = roaming
            self.roamingSource = roamingSource
            self.families = families
            self.gateway = gateway
            self.gatewayMAC = gatewayMAC
        }
    }

    /// The interface traffic to one address leaves by (`barge net --to ADDRESS`).
    public struct EgressReport: Codable, Hashable, Sendable {
        /// The address asked about.
        public var to: String
        /// The interface and its verdict; nil when there is no route to the address.
        public var via: UplinkReport?

        /// An answer.
        public init(to: String, via: UplinkReport?) {
            self.to = to
            self.via = via
        }
    }

    /// A verdict set by hand (`barge net set`), whether or not its interface is up.
    public struct OverrideReport: Codable, Hashable, Sendable {
        /// The interface.
        public var name: String
        /// The cost set; nil: `auto`.
        public var cost: String?
        /// Roaming set; nil: `auto`.
        public var roaming: Bool?

        /// An override's report.
        public init(name: String, cost: String?, roaming: Bool?) {
            self.name = name
            self.cost = cost
            self.roaming = roaming
        }
    }

    /// Every uplink, in name order.
    public var uplinks: [UplinkReport]
    /// The overrides in force (nil: not known, as when the agent does not answer and the store cannot be read).
    public var overrides: [OverrideReport]?
    /// Whether the report comes from the running agent (its monitor, its overrides) or was read here.
    public var fromAgent: Bool?
    /// The egress of each address asked about, in the order asked.
    public var egress: [EgressReport]

    /// A report.
    public init(uplinks: [UplinkReport], egress: [EgressReport] = []) {
        self.uplinks = uplinks
        self.egress = egress
    }

    /// A rate for people: `1.2 MiB/s`.
    static func rate(_ bytesPerSecond: UInt64) -> String {
        ByteCount(bytesPerSecond).humanReadable + "/s"
    }

    /// The report as `barge net` prints it: one line per uplink, then one per address asked about.
    public var text: String {
        var text =
            self.uplinks.isEmpty ? "no uplink (no interface is up with an address and a default route)\n" : ""
        for uplink in self.uplinks {
            let roaming = uplink.roaming ? "roaming (\(uplink.roamingSource))" : "not roaming"
            text += "\(uplink.name): \(uplink.kind), \(uplink.cost) (\(uplink.costSource)), \(roaming), "
            text += "\(uplink.families.joined(separator: "+")) via \(uplink.gateway ?? "no gateway")"
            if let mac = uplink.gatewayMAC { text += " (\(mac))" }
            if let receive = uplink.receiveRate, let send = uplink.sendRate {
                text += "; now \(Self.rate(receive)) in, \(Self.rate(send)) out"
                if let barge = uplink.bargeRate { text += " (Barge: \(Self.rate(barge)))" }
            }
            text += "\n"
        }
        for override in self.overrides ?? [] {
            let roaming = override.roaming.map { $0 ? "yes" : "no" } ?? "auto"
            text += "override \(override.name): cost \(override.cost ?? "auto"), roaming \(roaming)\n"
        }
        for egress in self.egress {
            guard let via = egress.via else {
                text += "to \(egress.to): no route\n"
                continue
            }
            text += "to \(egress.to): by \(via.name), \(via.kind), \(via.cost) (\(via.costSource))\n"
        }
        return text
    }
}
