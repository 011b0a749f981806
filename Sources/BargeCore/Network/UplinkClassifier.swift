import Glibc

/// What the kernel says about one network interface, as the network monitor reads it from netlink and sysfs: the
/// facts the cost of an uplink is judged on. Recorded facts make the classifier testable without a machine.
public struct InterfaceFacts: Hashable, Sendable {
    /// The interface's name (`wlan0`, `wwan0`, `enp0s31f6`).
    public var name: String
    /// Its link-layer type (`ARPHRD_*`: 1 Ethernet, 512 PPP, 519 raw IP, 65534 none).
    public var linkType: UInt16
    /// `DEVTYPE=` of its uevent (`wlan`, `wwan`, `bluetooth`, `bridge` …), when it has one.
    public var deviceType: String?
    /// The kernel driver of its device (the `device/driver` link's name: `rndis_host`, `ipheth`, `e1000e` …).
    public var driver: String?
    /// rtnetlink's link kind (`IFLA_INFO_KIND`: `wireguard`, `tun`, `veth`, `bridge` …) of a virtual interface.
    public var linkKind: String?
    /// Whether it is a wireless (802.11) device (`wireless` or `phy80211` in sysfs).
    public var isWireless: Bool
    /// The gateway of its default route, when it has one.
    public var gateway: String?
    /// The gateway's link-layer address, when the neighbour table knows it.
    public var gatewayMAC: String?

    /// Facts of an interface.
    public init(
        name: String,
        linkType: UInt16 = UplinkClassifier.ethernetLinkType,
        deviceType: String? = nil,
        driver: String? = nil,
        linkKind: String? = nil,
        isWireless: Bool = false,
        gateway: String? = nil,
        gatewayMAC: String? = nil
    ) {
        self.name = name
        self.linkType = linkType
        self.deviceType = deviceType
        self.driver = driver
        self.linkKind = linkKind
        self.isWireless = isWireless
        self.gateway = gateway
        self.gatewayMAC = gatewayMAC
    }
}

/// A person's setting for one interface (`barge net set IFACE --cost … --roaming …`): each part fixed or left to
/// the rules and heuristics (`auto`, nil here).
public struct UplinkOverride: Hashable, Sendable, Codable {
    /// The cost set by hand, or nil for `auto`.
    public var cost: NetworkCost?
    /// Roaming set by hand, or nil for `auto`.
    public var roaming: Bool?

    /// An override.
    public init(cost: NetworkCost? = nil, roaming: Bool? = nil) {
        self.cost = cost
        self.roaming = roaming
    }

    /// Whether `name` can be an interface's name: 1–15 bytes (IFNAMSIZ), none of `/`, `:`, `%`, white space or
    /// control characters.
    public static func isInterfaceName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count < 16 && name != "." && name != ".."
            && !name.unicodeScalars.contains { scalar in
                scalar == "/" || scalar == ":" || scalar == "%" || scalar.properties.isWhitespace
                    || scalar.properties.generalCategory == .control
            }
    }

    /// `cost metered, roaming auto`, as `barge net set` confirms it.
    public static func describe(_ override: UplinkOverride) -> String {
        let roaming = override.roaming.map { $0 ? "yes" : "no" } ?? "auto"
        return "cost \(override.cost?.rawValue ?? "auto"), roaming \(roaming)"
    }
}

/// A change to an interface's override, as `barge net set` asks it: each half `auto` (back to the rules), a value,
/// or absent (kept as it is). The agent applies it to the stored override in one step.
public struct UplinkOverrideChange: Codable, Hashable, Sendable {
    /// `metered`, `unmetered`, `auto`, or nil to keep.
    public var cost: String?
    /// `yes`, `no`, `auto`, or nil to keep.
    public var roaming: String?

    /// A change.
    public init(cost: String? = nil, roaming: String? = nil) {
        self.cost = cost
        self.roaming = roaming
    }

    /// What is wrong with a change.
    public struct Invalid: Error, CustomStringConvertible {
        /// What was expected.
        public var description: String
    }

    /// `current` with the change made.
    public func applied(to current: UplinkOverride) throws(Invalid) -> UplinkOverride {
        var override = current
        switch self.cost {
        case nil: break
        case "auto": override.cost = nil
        case let text?:
            guard let cost = NetworkCost(rawValue: text) else {
                throw Invalid(description: "cost: expected metered, unmetered or auto, not '\(text)'")
            }
            override.cost = cost
        }
        switch self.roaming {
        case nil: break
        case "auto": override.roaming = nil
        case "yes": override.roaming = true
        case "no": override.roaming = false
        case let text?: throw Invalid(description: "roaming: expected yes, no or auto, not '\(text)'")
        }
        return override
    }
}

/// Where a verdict on an uplink's cost or roaming came from, so `barge net` and a paused job can say why.
public enum VerdictSource: Hashable, Sendable, CustomStringConvertible {
    /// Set by hand with `barge net set`.
    case override
    /// The rule at this index of barge.yaml's `networks` (counted from 1), shown as it matched.
    case rule(number: Int, matched: String)
    /// A rule that would make the uplink costlier and may match: its other conditions hold, but the gateway's MAC,
    /// which it names, is not known yet. Taken as matching (fail closed) until the neighbour table says.
    case ruleUntilGatewayKnown(number: Int, matched: String)
    /// NetworkManager's `Metered` property of the device.
    case networkManager(NetworkManagerMetered)
    /// ModemManager's 3GPP registration of the modem whose network port the interface is.
    case modemManager(ModemRegistration)
    /// The kernel's facts, with the one that decided.
    case heuristic(String)

    public var description: String {
        switch self {
        case .override: "set by hand"
        case .rule(let number, let matched): "rule \(number) '\(matched)'"
        case .ruleUntilGatewayKnown(let number, let matched): "rule \(number) '\(matched)', gateway's MAC not known yet"
        case .networkManager(let value): "NetworkManager Metered=\(value)"
        case .modemManager(let registration): "ModemManager registration \(registration)"
        case .heuristic(let reason): reason
        }
    }
}

/// The classifier's answer for one uplink: its kind, cost and roaming, each part with its source.
public struct UplinkVerdict: Hashable, Sendable {
    /// The interface's kind.
    public var kind: InterfaceKind
    /// What its traffic costs.
    public var cost: NetworkCost
    /// Why it has that cost.
    public var costSource: VerdictSource
    /// Whether it is roaming.
    public var roaming: Bool
    /// Why it is (or is not) roaming.
    public var roamingSource: VerdictSource

    /// A verdict.
    public init(
        kind: InterfaceKind,
        cost: NetworkCost,
        costSource: VerdictSource,
        roaming: Bool,
        roamingSource: VerdictSource
    ) {
        self.kind = kind
        self.cost = cost
        self.costSource = costSource
        self.roaming = roaming
        self.roamingSource = roamingSource
    }

    /// What it costs to use, for ranking uplinks: 0 unmetered, 1 metered, 2 roaming.
    public var price: Int { self.roaming ? 2 : self.cost == .metered ? 1 : 0 }
}

/// Judges an uplink's kind, cost and roaming from the kernel's facts; pure, no I/O.
///
/// Cost and roaming are each decided by the first of these that says something: a manual override, the first
/// matching rule of barge.yaml that sets it, the desktop's network stack (NetworkManager's `Metered` for cost,
/// ModemManager's registration for roaming), the kernel heuristics. The heuristics call mobile broadband (wwan, raw
/// IP, PPP), Bluetooth and tethered phones metered; Ethernet, Wi-Fi, VPNs and anything else unmetered. Nothing in the
/// kernel says "roaming": without an override, a rule or ModemManager, an uplink is not roaming.
public enum UplinkClassifier {
    /// An address as the kernel's tables print it (inet_ntop's form, an IPv6 zone such as `%wlan0` dropped: a
    /// link-local gateway is matched by its address, its interface by `interface`); nil when it is not one.
    public static func canonicalAddress(_ text: String) -> String? {
        let bare = String(text.prefix { $0 != "%" })
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        var v4 = in_addr()
        if inet_pton(AF_INET, bare, &v4) == 1, inet_ntop(AF_INET, &v4, &buffer, socklen_t(buffer.count)) != nil {
            return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, bare, &v6) == 1, inet_ntop(AF_INET6, &v6, &buffer, socklen_t(buffer.count)) != nil {
            return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return nil
    }

    /// `ARPHRD_ETHER`.
    public static let ethernetLinkType: UInt16 = 1
    /// `ARPHRD_PPP`.
    public static let pppLinkType: UInt16 = 512
    /// `ARPHRD_RAWIP` (a modem's raw IP interface, qmi_wwan or mhi).
    public static let rawIPLinkType: UInt16 = 519
    /// `ARPHRD_LOOPBACK`.
    public static let loopbackLinkType: UInt16 = 772
    /// `ARPHRD_NONE` (a tun device, WireGuard, some modems).
    public static let noneLinkType: UInt16 = 65534

    /// Drivers of phones sharing their mobile data over USB.
    static let tetheringDrivers: Set<String> = ["rndis_host", "ipheth", "cdc_ncm", "cdc_eem", "cdc_subset"]
    /// Drivers of USB modems that look like Ethernet.
    static let modemDrivers: Set<String> = ["qmi_wwan", "cdc_mbim", "huawei_cdc_ncm", "sierra_net", "cdc_ether_modem"]
    /// rtnetlink link kinds of tunnels.
    static let tunnelKinds: Set<String> = ["wireguard", "tun", "ipip", "gre", "sit", "ip6tnl", "vti", "xfrm"]

    /// The interface's kind, with the fact that decided it.
    public static func kind(of facts: InterfaceFacts) -> (kind: InterfaceKind, because: String) {
        if let kind = facts.linkKind, Self.tunnelKinds.contains(kind) { return (.vpn, "link kind \(kind)") }
        switch facts.deviceType {
        case "wwan": return (.wwan, "DEVTYPE=wwan")
        case "bluetooth": return (.bluetooth, "DEVTYPE=bluetooth")
        case "wlan": return (.wifi, "DEVTYPE=wlan")
        default: break
        }
        if facts.driver == "bnep" { return (.bluetooth, "driver bnep") }
        if let driver = facts.driver, Self.modemDrivers.contains(driver) { return (.wwan, "driver \(driver)") }
        if let driver = facts.driver, Self.tetheringDrivers.contains(driver) { return (.tether, "driver \(driver)") }
        switch facts.linkType {
        case Self.pppLinkType: return (.ppp, "ARPHRD_PPP")
        case Self.rawIPLinkType: return (.wwan, "ARPHRD_RAWIP")
        case Self.noneLinkType: return (.wwan, "ARPHRD_NONE")
        default: break
        }
        if facts.isWireless { return (.wifi, "802.11") }
        if facts.linkType == Self.loopbackLinkType { return (.other, "loopback") }
        if facts.linkType == Self.ethernetLinkType { return (.ethernet, "ARPHRD_ETHER") }
        return (.other, "ARPHRD \(facts.linkType)")
    }

    /// Whether a rule's conditions hold for an uplink.
    public enum RuleMatch: Sendable, Equatable {
        /// Every condition holds.
        case matches
        /// A condition does not hold.
        case fails
        /// Every other condition holds, but the rule names a gateway MAC and the uplink's gateway has none known yet
        /// (its neighbour entry is missing or unresolved).
        case gatewayMACUnknown
    }

    /// Whether `rule`'s conditions all hold for an uplink of these facts and kind.
    public static func match(_ rule: NetworkRule, _ facts: InterfaceFacts, kind: InterfaceKind) -> RuleMatch {
        if let glob = rule.interface, fnmatch(glob, facts.name, 0) != 0 { return .fails }
        if let wanted = rule.kind, wanted != kind { return .fails }
        if let gateway = rule.gateway, gateway != facts.gateway { return .fails }
        if let mac = rule.gatewayMAC {
            guard let known = facts.gatewayMAC else { return facts.gateway == nil ? .fails : .gatewayMACUnknown }
            if mac != known.lowercased() { return .fails }
        }
        return .matches
    }

    /// The verdict on one uplink. `desktop`: what NetworkManager and ModemManager say of the interface, when they
    /// run.
    public static func classify(
        _ facts: InterfaceFacts,
        rules: [NetworkRule],
        override: UplinkOverride? = nil,
        desktop: DesktopNetworkFacts? = nil
    ) -> UplinkVerdict {
        let (kind, because) = Self.kind(of: facts)
        var cost: (NetworkCost, VerdictSource)?
        var roaming: (Bool, VerdictSource)?
        if let set = override?.cost { cost = (set, .override) }
        if let set = override?.roaming { roaming = (set, .override) }
        for (index, rule) in rules.enumerated() where cost == nil || roaming == nil {
            switch Self.match(rule, facts, kind: kind) {
            case .fails: continue
            case .matches:
                let source = VerdictSource.rule(number: index + 1, matched: Self.describe(rule))
                if cost == nil, let ruled = rule.cost { cost = (ruled, source) }
                if roaming == nil, let ruled = rule.roaming { roaming = (ruled, source) }
            case .gatewayMACUnknown:
                // Fail closed: what would make the uplink costlier holds until the MAC is known; what would make it
                // cheaper does not.
                let source = VerdictSource.ruleUntilGatewayKnown(number: index + 1, matched: Self.describe(rule))
                if cost == nil, rule.cost == .metered { cost = (.metered, source) }
                if roaming == nil, rule.roaming == true { roaming = (true, source) }
            }
        }
        let metered: Set<InterfaceKind> = [.wwan, .ppp, .bluetooth, .tether]
        // NetworkManager's `unknown` and a modem that is not registered say nothing: the heuristics decide. So does
        // a `guess-no` on a link the heuristics call metered (a tethered phone without Android's DHCP option): a
        // guess never makes a link cheaper than the kernel's facts; an explicit `no` does.
        if cost == nil, let said = desktop?.metered, let saidCost = said.cost,
            !(said == .guessNo && metered.contains(kind))
        {
            cost = (saidCost, .networkManager(said))
        }
        if roaming == nil, let registration = desktop?.registration, let said = registration.isRoaming {
            roaming = (said, .modemManager(registration))
        }
        let (finalCost, costSource) =
            cost ?? (metered.contains(kind) ? .metered : .unmetered, .heuristic("\(kind.rawValue): \(because)"))
        let (finalRoaming, roamingSource) = roaming ?? (false, .heuristic("no roaming source"))
        return UplinkVerdict(
            kind: kind,
            cost: finalCost,
            costSource: costSource,
            roaming: finalRoaming,
            roamingSource: roamingSource
        )
    }

    /// A rule's conditions as barge.yaml writes them: `interface wwan*, kind wwan`.
    static func describe(_ rule: NetworkRule) -> String {
        var parts: [String] = []
        if let glob = rule.interface { parts.append(glob) }
        if let kind = rule.kind { parts.append("kind \(kind.rawValue)") }
        if let gateway = rule.gateway { parts.append("gateway \(gateway)") }
        if let mac = rule.gatewayMAC { parts.append("gateway-mac \(mac)") }
        return parts.joined(separator: ", ")
    }
}
