import Testing

@testable import BargeCore

/// The uplink classifier over facts recorded from real interfaces (netlink's link type and kind, sysfs's uevent
/// DEVTYPE, driver link and wireless directory).
@Suite("Uplink classifier")
struct UplinkClassifierTests {
    /// One recorded interface and what the heuristics must make of it.
    struct Recorded: Sendable, CustomTestStringConvertible {
        var facts: InterfaceFacts
        var kind: InterfaceKind
        var cost: NetworkCost
        var testDescription: String { self.facts.name }
    }

    static let recorded: [Recorded] = [
        // A laptop's wired port (e1000e) and Wi-Fi (iwlwifi).
        Recorded(facts: InterfaceFacts(name: "enp0s31f6", driver: "e1000e"), kind: .ethernet, cost: .unmetered),
        Recorded(
            facts: InterfaceFacts(name: "wlp2s0", deviceType: "wlan", driver: "iwlwifi", isWireless: true),
            kind: .wifi,
            cost: .unmetered
        ),
        // A Wi-Fi stick whose uevent has no DEVTYPE: the wireless directory tells.
        Recorded(
            facts: InterfaceFacts(name: "wlx00c0ca", driver: "rt2800usb", isWireless: true),
            kind: .wifi,
            cost: .unmetered
        ),
        // A Qualcomm modem in raw-IP mode, and one whose driver shows it as Ethernet.
        Recorded(
            facts: InterfaceFacts(name: "wwan0", linkType: 519, deviceType: "wwan", driver: "qmi_wwan"),
            kind: .wwan,
            cost: .metered
        ),
        Recorded(facts: InterfaceFacts(name: "wwp0s20u4i6", driver: "cdc_mbim"), kind: .wwan, cost: .metered),
        Recorded(facts: InterfaceFacts(name: "mhi_hwip0", linkType: 519), kind: .wwan, cost: .metered),
        // A PPP dial-up or 3G stick.
        Recorded(facts: InterfaceFacts(name: "ppp0", linkType: 512), kind: .ppp, cost: .metered),
        // Bluetooth PAN to a phone.
        Recorded(
            facts: InterfaceFacts(name: "bnep0", deviceType: "bluetooth", driver: "bnep"),
            kind: .bluetooth,
            cost: .metered
        ),
        // Android USB tethering (RNDIS, NCM) and an iPhone.
        Recorded(facts: InterfaceFacts(name: "usb0", driver: "rndis_host"), kind: .tether, cost: .metered),
        Recorded(facts: InterfaceFacts(name: "enx0a1b2c", driver: "cdc_ncm"), kind: .tether, cost: .metered),
        Recorded(facts: InterfaceFacts(name: "eth1", driver: "ipheth"), kind: .tether, cost: .metered),
        // VPNs: WireGuard and OpenVPN's tun (ARPHRD_NONE, like some modems: the link kind tells them apart).
        Recorded(
            facts: InterfaceFacts(name: "wg0", linkType: 65534, linkKind: "wireguard"),
            kind: .vpn,
            cost: .unmetered
        ),
        Recorded(facts: InterfaceFacts(name: "tun0", linkType: 65534, linkKind: "tun"), kind: .vpn, cost: .unmetered),
        // A veth pair end (the tests' namespaces) is Ethernet to the kernel.
        Recorded(facts: InterfaceFacts(name: "veth-wired", linkKind: "veth"), kind: .ethernet, cost: .unmetered),
        // Something else: an InfiniBand port.
        Recorded(facts: InterfaceFacts(name: "ib0", linkType: 32), kind: .other, cost: .unmetered),
    ]

    @Test(arguments: Self.recorded)
    func theHeuristicsClassifyEveryKind(_ recorded: Recorded) {
        let verdict = UplinkClassifier.classify(recorded.facts, rules: [])
        #expect(verdict.kind == recorded.kind)
        #expect(verdict.cost == recorded.cost)
        guard case .heuristic(let reason) = verdict.costSource else {
            Issue.record("the cost came from \(verdict.costSource), not the heuristics")
            return
        }
        #expect(reason.hasPrefix(recorded.kind.rawValue + ": "))
        #expect(verdict.roaming == false)
    }

    static let modem = InterfaceFacts(
        name: "wwan0",
        linkType: 519,
        deviceType: "wwan",
        gateway: "10.64.0.1",
        gatewayMAC: "AA:BB:CC:00:11:22"
    )

    /// First match wins, for cost and roaming each: a later rule can still give roaming when an earlier one gave
    /// only the cost.
    @Test func rulesDecideBeforeTheHeuristicsFirstMatchEach() {
        let rules = [
            NetworkRule(interface: "eth*", cost: .metered),
            NetworkRule(interface: "wwan*", cost: .unmetered),
            NetworkRule(kind: .wwan, cost: .metered, roaming: false),
            NetworkRule(interface: "wwan0", roaming: true),
        ]
        let verdict = UplinkClassifier.classify(Self.modem, rules: rules)
        #expect(verdict.cost == .unmetered)
        #expect(verdict.costSource == .rule(number: 2, matched: "wwan*"))
        #expect(verdict.roaming == false)
        #expect(verdict.roamingSource == .rule(number: 3, matched: "kind wwan"))
        #expect(verdict.costSource.description == "rule 2 'wwan*'")
    }

    @Test func rulesMatchTheGatewayAndItsAddressWithoutCase() {
        let byMAC = [NetworkRule(gatewayMAC: "aa:bb:cc:00:11:22", cost: .unmetered)]
        #expect(UplinkClassifier.classify(Self.modem, rules: byMAC).cost == .unmetered)
        let otherGateway = [NetworkRule(gateway: "10.64.0.2", cost: .unmetered)]
        #expect(UplinkClassifier.classify(Self.modem, rules: otherGateway).cost == .metered)
        let bothMustHold = [NetworkRule(interface: "wwan0", gateway: "10.64.0.2", cost: .unmetered)]
        #expect(UplinkClassifier.classify(Self.modem, rules: bothMustHold).cost == .metered)
    }

    /// A gateway whose MAC is not known yet: a rule naming a MAC counts where it would make the uplink costlier
    /// (metered, roaming) and not where it would make it cheaper; an uplink without a gateway matches none.
    @Test func anUnknownGatewayMACFailsClosed() {
        var wired = InterfaceFacts(name: "eth0", driver: "e1000e")
        wired.gateway = "192.168.8.1"
        let phone = "aa:bb:cc:00:11:22"
        let metered = [NetworkRule(gatewayMAC: phone, cost: .metered, roaming: true)]
        let held = UplinkClassifier.classify(wired, rules: metered)
        #expect(held.cost == .metered && held.roaming)
        #expect(held.costSource == .ruleUntilGatewayKnown(number: 1, matched: "gateway-mac \(phone)"))
        #expect(held.costSource.description == "rule 1 'gateway-mac \(phone)', gateway's MAC not known yet")
        let cheaper = [
            NetworkRule(gatewayMAC: phone, cost: .unmetered, roaming: false),
            NetworkRule(interface: "eth*", cost: .metered),
        ]
        let notYet = UplinkClassifier.classify(wired, rules: cheaper)
        #expect(notYet.cost == .metered && notYet.costSource == .rule(number: 2, matched: "eth*"))
        #expect(notYet.roamingSource == .heuristic("no roaming source"))
        wired.gatewayMAC = "AA:BB:CC:00:11:23"
        #expect(UplinkClassifier.classify(wired, rules: metered).cost == .unmetered)
        wired.gatewayMAC = "AA:BB:CC:00:11:22"
        #expect(
            UplinkClassifier.classify(wired, rules: metered).costSource
                == .rule(number: 1, matched: "gateway-mac \(phone)")
        )
        wired.gatewayMAC = nil
        wired.gateway = nil
        #expect(UplinkClassifier.classify(wired, rules: metered).cost == .unmetered)
    }

    /// An override beats the rules, a rule beats NetworkManager, NetworkManager beats the heuristics; `auto` (nil)
    /// leaves that part to the next source.
    @Test func sourcesComeInOrder() {
        let rules = [NetworkRule(interface: "wwan0", cost: .metered, roaming: true)]
        let overridden = UplinkClassifier.classify(
            Self.modem,
            rules: rules,
            override: UplinkOverride(cost: .unmetered),
            desktop: DesktopNetworkFacts(metered: .yes)
        )
        #expect(overridden.cost == .unmetered && overridden.costSource == .override)
        #expect(overridden.roaming == true && overridden.roamingSource == .rule(number: 1, matched: "wwan0"))
        let ruled = UplinkClassifier.classify(Self.modem, rules: rules, desktop: DesktopNetworkFacts(metered: .no))
        #expect(ruled.cost == .metered && ruled.costSource == .rule(number: 1, matched: "wwan0"))
        // A guess never makes a link cheaper than the kernel's facts; an explicit `no` does.
        let guessed = UplinkClassifier.classify(Self.modem, rules: [], desktop: DesktopNetworkFacts(metered: .guessNo))
        #expect(guessed.cost == .metered && guessed.costSource == .heuristic("wwan: DEVTYPE=wwan"))
        let managed = UplinkClassifier.classify(Self.modem, rules: [], desktop: DesktopNetworkFacts(metered: .no))
        #expect(managed.cost == .unmetered && managed.costSource == .networkManager(.no))
        let unknown = UplinkClassifier.classify(Self.modem, rules: [], desktop: DesktopNetworkFacts(metered: .unknown))
        #expect(unknown.cost == .metered && unknown.costSource == .heuristic("wwan: DEVTYPE=wwan"))
    }

    /// ModemManager's registration decides roaming after the overrides and the rules; a modem that is not registered
    /// says nothing. NetworkManager's `Metered` and the registration land on the interfaces they name.
    @Test func modemManagerDecidesRoamingAfterTheRules() {
        let roaming = DesktopNetworkFacts(metered: .guessYes, registration: .roamingSMSOnly)
        let verdict = UplinkClassifier.classify(Self.modem, rules: [], desktop: roaming)
        #expect(verdict.roaming && verdict.roamingSource == .modemManager(.roamingSMSOnly))
        #expect(verdict.roamingSource.description == "ModemManager registration roaming-sms-only")
        #expect(verdict.cost == .metered && verdict.costSource.description == "NetworkManager Metered=guess-yes")
        let home = UplinkClassifier.classify(Self.modem, rules: [], desktop: DesktopNetworkFacts(registration: .home))
        #expect(!home.roaming && home.roamingSource == .modemManager(.home))
        let searching = UplinkClassifier.classify(
            Self.modem,
            rules: [],
            desktop: DesktopNetworkFacts(registration: .searching)
        )
        #expect(!searching.roaming && searching.roamingSource == .heuristic("no roaming source"))
        let ruled = UplinkClassifier.classify(
            Self.modem,
            rules: [NetworkRule(interface: "wwan*", roaming: false)],
            desktop: roaming
        )
        #expect(!ruled.roaming && ruled.roamingSource == .rule(number: 1, matched: "wwan*"))

        let facts = DesktopNetworkFacts.byInterface(
            devices: [
                .init(interface: "cdc-wdm0", ipInterface: "wwan0", metered: 3),
                .init(interface: "eth0", ipInterface: "", metered: 2),
                .init(interface: "wlan0", ipInterface: "wlan0", metered: 99),
            ],
            modems: [
                .init(
                    ports: [.init("cdc-wdm0", 6), .init("wwan0", DesktopNetworkFacts.networkPortType)],
                    registration: 5
                ),
                .init(ports: [.init("wwan1", DesktopNetworkFacts.networkPortType)], registration: nil),
            ]
        )
        #expect(
            facts == [
                "cdc-wdm0": DesktopNetworkFacts(metered: .guessYes),
                "wwan0": DesktopNetworkFacts(metered: .guessYes, registration: .roaming),
                "eth0": DesktopNetworkFacts(metered: .no), "wlan0": DesktopNetworkFacts(metered: .unknown),
            ]
        )
        // Two devices or modems on one interface: the costlier verdict wins, whichever comes first.
        let cases: [([UInt32], NetworkManagerMetered)] = [
            ([3, 0], .guessYes), ([0, 3], .guessYes), ([2, 4], .no), ([2, 1], .yes),
        ]
        for (values, expected) in cases {
            let merged = DesktopNetworkFacts.byInterface(
                devices: values.map { .init(interface: "wwan0", ipInterface: "", metered: $0) },
                modems: []
            )
            #expect(merged["wwan0"]?.metered == expected, "\(values)")
        }
        let modems = DesktopNetworkFacts.byInterface(
            devices: [],
            modems: [
                .init(ports: [.init("wwan0", DesktopNetworkFacts.networkPortType)], registration: 5),
                .init(ports: [.init("wwan0", DesktopNetworkFacts.networkPortType)], registration: 1),
            ]
        )
        #expect(modems["wwan0"]?.registration == .roaming)
    }
}
