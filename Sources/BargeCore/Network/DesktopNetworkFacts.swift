/// NetworkManager's `Metered` value of a device (`NMMetered`): set on its connection (`yes`, `no`) or guessed by
/// NetworkManager (`guess-yes`, `guess-no`, from the DHCP vendor option or the device's type).
public enum NetworkManagerMetered: UInt32, Hashable, Sendable, CustomStringConvertible {
    /// Nothing is known: the next source decides.
    case unknown = 0
    /// Metered, as the connection's `connection.metered` says.
    case yes = 1
    /// Not metered, as the connection's `connection.metered` says.
    case no = 2
    /// Guessed metered (an Android hotspot's DHCP option, a modem).
    case guessYes = 3
    /// Guessed not metered.
    case guessNo = 4

    public var description: String {
        switch self {
        case .unknown: "unknown"
        case .yes: "yes"
        case .no: "no"
        case .guessYes: "guess-yes"
        case .guessNo: "guess-no"
        }
    }

    /// How costly a value says a link is, for merging two devices' values on one interface: an explicit `yes`
    /// first, then `guess-yes`, `no`, `guess-no`, `unknown` (the costlier verdict wins: fail closed).
    var costliness: Int {
        switch self {
        case .yes: 4
        case .guessYes: 3
        case .no: 2
        case .guessNo: 1
        case .unknown: 0
        }
    }

    /// The cost it says, or nil for `unknown`.
    public var cost: NetworkCost? {
        switch self {
        case .yes, .guessYes: .metered
        case .no, .guessNo: .unmetered
        case .unknown: nil
        }
    }
}

/// ModemManager's 3GPP registration state of a modem (`MMModem3gppRegistrationState`).
public enum ModemRegistration: UInt32, Hashable, Sendable, CustomStringConvertible {
    /// Not registered, not searching.
    case idle = 0
    /// Registered on the home network.
    case home = 1
    /// Searching for a network.
    case searching = 2
    /// Registration refused.
    case denied = 3
    /// Unknown.
    case unknown = 4
    /// Registered on a roaming network.
    case roaming = 5
    /// Home network, SMS only.
    case homeSMSOnly = 6
    /// Roaming network, SMS only.
    case roamingSMSOnly = 7
    /// Emergency services only.
    case emergencyOnly = 8
    /// Home network, CSFB not preferred.
    case homeCSFBNotPreferred = 9
    /// Roaming network, CSFB not preferred.
    case roamingCSFBNotPreferred = 10
    /// Attached for access to restricted local operator services.
    case attachedRLOS = 11

    public var description: String {
        switch self {
        case .idle: "idle"
        case .home: "home"
        case .searching: "searching"
        case .denied: "denied"
        case .unknown: "unknown"
        case .roaming: "roaming"
        case .homeSMSOnly: "home-sms-only"
        case .roamingSMSOnly: "roaming-sms-only"
        case .emergencyOnly: "emergency-only"
        case .homeCSFBNotPreferred: "home-csfb-not-preferred"
        case .roamingCSFBNotPreferred: "roaming-csfb-not-preferred"
        case .attachedRLOS: "attached-rlos"
        }
    }

    /// Whether it says roaming (true), home (false), or nothing (nil: not registered, or unknown).
    public var isRoaming: Bool? {
        switch self {
        case .roaming, .roamingSMSOnly, .roamingCSFBNotPreferred: true
        case .home, .homeSMSOnly, .homeCSFBNotPreferred: false
        case .idle, .searching, .denied, .unknown, .emergencyOnly, .attachedRLOS: nil
        }
    }
}

/// What the desktop's network stack says about one interface: NetworkManager's `Metered` of its device and
/// ModemManager's registration of the modem whose network port it is. A verdict source between barge.yaml's rules
/// and the kernel heuristics.
public struct DesktopNetworkFacts: Hashable, Sendable {
    /// NetworkManager's `Metered` of the device, when NetworkManager manages it.
    public var metered: NetworkManagerMetered?
    /// The 3GPP registration of the modem this interface is the network port of, when ModemManager knows one.
    public var registration: ModemRegistration?

    /// Facts.
    public init(metered: NetworkManagerMetered? = nil, registration: ModemRegistration? = nil) {
        self.metered = metered
        self.registration = registration
    }

    /// One NetworkManager device as its D-Bus properties describe it.
    public struct ManagedDevice: Hashable, Sendable {
        /// `Interface`: the device's control interface.
        public var interface: String
        /// `IpInterface`: the interface its IP traffic goes by (a modem's `wwan0` beside its control port), or
        /// empty.
        public var ipInterface: String
        /// `Metered` as NetworkManager's number (an unknown number counts as `unknown`).
        public var metered: UInt32

        /// A device.
        public init(interface: String, ipInterface: String, metered: UInt32) {
            self.interface = interface
            self.ipInterface = ipInterface
            self.metered = metered
        }
    }

    /// One ModemManager modem as its D-Bus properties describe it.
    public struct Modem: Hashable, Sendable {
        /// One of `Ports`: its name and `MMModemPortType` (2 is a network interface).
        public struct Port: Hashable, Sendable {
            /// The port's name (`wwan0`, `cdc-wdm0`).
            public var name: String
            /// Its `MMModemPortType`.
            public var type: UInt32

            /// A port.
            public init(_ name: String, _ type: UInt32) {
                self.name = name
                self.type = type
            }
        }

        /// `Ports`.
        public var ports: [Port]
        /// `Modem3gpp.RegistrationState`, when the modem speaks 3GPP.
        public var registration: UInt32?

        /// A modem.
        public init(ports: [Port], registration: UInt32?) {
            self.ports = ports
            self.registration = registration
        }
    }

    /// `MM_MODEM_PORT_TYPE_NET`.
    public static let networkPortType: UInt32 = 2

    /// The facts by interface name from what NetworkManager and ModemManager publish. A device's IP interface and its
    /// control interface both take its `Metered`; a modem's network ports take its registration. Where two devices
    /// or modems name one interface, the costlier verdict wins (metered over unmetered, roaming over home).
    public static func byInterface(devices: [ManagedDevice], modems: [Modem]) -> [String: DesktopNetworkFacts] {
        var facts: [String: DesktopNetworkFacts] = [:]
        for device in devices {
            let metered = NetworkManagerMetered(rawValue: device.metered) ?? .unknown
            for name in Set([device.interface, device.ipInterface]) where !name.isEmpty {
                if metered.costliness > facts[name]?.metered?.costliness ?? -1 {
                    facts[name, default: .init()].metered = metered
                }
            }
        }
        for modem in modems {
            guard let number = modem.registration else { continue }
            let registration = ModemRegistration(rawValue: number) ?? .unknown
            for port in modem.ports where port.type == Self.networkPortType && !port.name.isEmpty {
                // Roaming over home over a state that says nothing.
                func rank(_ state: ModemRegistration?) -> Int {
                    state.map { $0.isRoaming.map { $0 ? 2 : 1 } ?? 0 } ?? -1
                }
                if rank(registration) > rank(facts[port.name]?.registration) {
                    facts[port.name, default: .init()].registration = registration
                }
            }
        }
        return facts
    }
}
