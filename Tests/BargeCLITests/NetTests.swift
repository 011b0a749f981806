import BargeCore
import BargeTestSupport
import Foundation
import Testing

/// `barge net` against real netlink events in a network namespace made by the test: veth pairs as a "wired" and
/// a "wwan" uplink, the default route moved between them, a link taken down.
@Suite(
    "barge net in a network namespace",
    .serialized,
    .enabled(if: NetworkNamespace.isAvailable, "needs root and iproute2")
)
struct NetTests {
    let scratch: ScratchDirectory
    let config: String

    init() throws {
        self.scratch = try ScratchDirectory()
        self.config = try self.scratch.write(
            "barge.yaml",
            """
            state-dir: \(self.scratch.path)/state
            manifests: \(self.scratch.path)/manifests.d
            networks:
              - {match: {interface: "wwan*"}, cost: metered}

            """
        )
    }

    /// The uplinks a `barge net --json` line names: name, kind, cost, source.
    static func uplinks(_ line: String) -> [String] {
        guard let report = try? JSONDecoder().decode(NetworkReport.self, from: Data(line.utf8)) else { return ["?"] }
        return report.uplinks.map { "\($0.name) \($0.kind) \($0.cost) (\($0.costSource))" }
    }

    /// A veth pair from the client namespace to the origin's: NAME0 (10.SUBNET.0.2/24, the client's uplink) and
    /// NAME1 (10.SUBNET.0.1, its gateway, in the origin's namespace), both up.
    static func addLink(_ client: NetworkNamespace, _ origin: NetworkNamespace, _ name: String, subnet: Int) throws {
        try client.ip("link add \(name)0 type veth peer name \(name)1")
        try client.ip("link set \(name)1 netns \(origin.name)")
        try origin.ip("addr add 10.\(subnet).0.1/24 dev \(name)1")
        try origin.ip("link set \(name)1 up")
        try client.ip("addr add 10.\(subnet).0.2/24 dev \(name)0")
        try client.ip("link set \(name)0 up")
    }

    /// nginx in `origin`, once `client` reaches it at `address`; returns it with its base URL (`http://ADDRESS:PORT`).
    static func startNginx(
        in origin: NetworkNamespace,
        reachedFrom client: NetworkNamespace,
        at address: String,
        webDAV: Bool = false
    ) async throws -> (nginx: NginxServer, base: String) {
        let nginx = try webDAV ? NginxServer.webDAV(namespace: origin.name) : NginxServer(namespace: origin.name)
        let base = "http://\(address):\(nginx.port)"
        _ = try nginx.serve("probe.txt", bytes: Array("ok".utf8))
        let ready = await eventually {
            client.succeeds(["/usr/bin/curl", "-sf", "--max-time", "2", "-o", "/dev/null", base + "/probe.txt"])
        }
        try #require(ready, "nginx did not start in the origin namespace")
        return (nginx, base)
    }

    @Test func uplinksFollowTheRouteTheLinksAndTheRules() async throws {
        let namespace = try NetworkNamespace()
        let origin = try NetworkNamespace()
        try Self.addLink(namespace, origin, "wired", subnet: 77)
        try namespace.ip("route add default via 10.77.0.1 dev wired0")

        let watch = namespace.process([BargeCommand.executable, "net", "--watch", "--json", "--config", self.config])
        let output = Pipe()
        watch.standardOutput = output
        let lines = LineCollector(output)
        try watch.run()
        defer {
            watch.terminate()
            watch.waitUntilExit()
        }
        let wired = ["wired0 ethernet unmetered (ethernet: ARPHRD_ETHER)"]
        #expect(await eventually { lines.all.last.map(Self.uplinks) == wired }, "\(lines.all)")

        // A second uplink that a rule calls metered; the default route moves to it.
        try Self.addLink(namespace, origin, "wwan", subnet: 78)
        try namespace.ip("route replace default via 10.78.0.1 dev wwan0")
        let modem = ["wwan0 ethernet metered (rule 1 'wwan*')"]
        #expect(await eventually { lines.all.last.map(Self.uplinks) == modem }, "\(lines.all)")

        // An origin on the wired LAN is still reached by the wired link, whatever the default route.
        let egress = try Self.once(
            namespace,
            self.config,
            ["--to", "10.77.0.1", "--to", "10.99.0.1", "--to", "127.0.0.1"]
        )
        #expect(
            egress?.egress.map { "\($0.to) \($0.via?.name ?? "-") \($0.via?.cost ?? "-") \($0.via?.costSource ?? "-")" }
                == [
                    "10.77.0.1 wired0 unmetered ethernet: ARPHRD_ETHER", "10.99.0.1 wwan0 metered rule 1 'wwan*'",
                    "127.0.0.1 lo unmetered other: loopback",
                ]
        )

        // Its link goes down: the kernel drops its routes, and no uplink is left.
        try namespace.ip("link set wwan0 down")
        #expect(await eventually { lines.all.last.map(Self.uplinks) == [] }, "\(lines.all)")

        // The wired default route comes back.
        try namespace.ip("route add default via 10.77.0.1 dev wired0")
        #expect(await eventually { lines.all.last.map(Self.uplinks) == wired }, "\(lines.all)")

        // The one-shot form says the same.
        let once = try Self.once(namespace, self.config)
        #expect(once?.uplinks.map(\.name) == ["wired0"])
    }

    /// A `gateway-mac` rule: the monitor asks an idle gateway for its MAC (nothing else talks to it here), and
    /// while a gateway's MAC is not known, a rule that makes the uplink metered holds (fail closed).
    @Test func aGatewayMACRuleFailsClosedUntilTheNeighbourIsKnown() async throws {
        let namespace = try NetworkNamespace()
        let origin = try NetworkNamespace()
        try Self.addLink(namespace, origin, "wired", subnet: 77)
        try origin.ip("link set wired1 address 02:00:00:00:77:01")
        try namespace.ip("route add default via 10.77.0.1 dev wired0")
        let config = try self.scratch.write(
            "mac.yaml",
            """
            state-dir: \(self.scratch.path)/state
            manifests: \(self.scratch.path)/manifests.d
            networks:
              - {match: {gateway-mac: "02:00:00:00:77:01"}, cost: metered}

            """
        )
        let watch = namespace.process([BargeCommand.executable, "net", "--watch", "--json", "--config", config])
        let output = Pipe()
        watch.standardOutput = output
        let lines = LineCollector(output)
        try watch.run()
        defer {
            watch.terminate()
            watch.waitUntilExit()
        }
        func lastReport() -> NetworkReport? {
            lines.all.last.flatMap { try? JSONDecoder().decode(NetworkReport.self, from: Data($0.utf8)) }
        }
        let matched = ["wired0 ethernet metered (rule 1 'gateway-mac 02:00:00:00:77:01')"]
        #expect(await eventually { lines.all.last.map(Self.uplinks) == matched }, "\(lines.all)")
        #expect(lastReport()?.uplinks.first?.gatewayMAC == "02:00:00:00:77:01")

        // A gateway that does not answer: its MAC stays unknown, and the metered rule holds.
        try namespace.ip("route replace default via 10.77.0.9 dev wired0")
        let unknown = [
            "wired0 ethernet metered (rule 1 'gateway-mac 02:00:00:00:77:01', gateway's MAC not known yet)"
        ]
        #expect(await eventually { lines.all.last.map(Self.uplinks) == unknown }, "\(lines.all)")
        #expect(lastReport()?.uplinks.first?.gatewayMAC == nil)

        try namespace.ip("neigh replace 10.77.0.9 lladdr 02:00:00:00:77:02 dev wired0 nud permanent")
        let other = ["wired0 ethernet unmetered (ethernet: ARPHRD_ETHER)"]
        #expect(await eventually { lines.all.last.map(Self.uplinks) == other }, "\(lines.all)")
        #expect(lastReport()?.uplinks.first?.gatewayMAC == "02:00:00:00:77:02")

        try namespace.ip("neigh replace 10.77.0.9 lladdr 02:00:00:00:77:01 dev wired0 nud permanent")
        #expect(await eventually { lines.all.last.map(Self.uplinks) == matched }, "\(lines.all)")
    }

    /// An uplink with IPv6 only, whose default route goes by a link-local gateway: it counts as an uplink of that
    /// family, and a rule naming the gateway with its zone matches it.
    @Test func anIPv6UplinkWithALinkLocalGateway() async throws {
        let namespace = try NetworkNamespace()
        let origin = try NetworkNamespace()
        try namespace.ip("link add wired0 type veth peer name wired1")
        try namespace.ip("link set wired1 netns \(origin.name)")
        try origin.ip("addr add fe80::1/64 dev wired1 nodad")
        try origin.ip("addr add 2001:db8:77::1/64 dev wired1 nodad")
        try origin.ip("link set wired1 up")
        try namespace.ip("addr add 2001:db8:77::2/64 dev wired0 nodad")
        try namespace.ip("link set wired0 up")
        try namespace.ip("-6 route add default via fe80::1 dev wired0")
        let config = try self.scratch.write(
            "v6.yaml",
            """
            state-dir: \(self.scratch.path)/state
            manifests: \(self.scratch.path)/manifests.d
            networks:
              - {match: {gateway: "FE80::1%wired0"}, cost: metered}

            """
        )
        var report: NetworkReport?
        let found = await eventually {
            report = try? Self.once(namespace, config, ["--to", "2001:db8:99::1"])
            return report?.uplinks.count == 1
        }
        #expect(found, "\(String(describing: report))")
        let uplink = report?.uplinks.first
        #expect(uplink.map { "\($0.name) \($0.families) \($0.gateway ?? "-")" } == "wired0 [\"ipv6\"] fe80::1")
        #expect(uplink.map { "\($0.cost) (\($0.costSource))" } == "metered (rule 1 'gateway fe80::1')")
        #expect(report?.egress.map { "\($0.to) \($0.via?.name ?? "-")" } == ["2001:db8:99::1 wired0"])
    }

    /// `barge net --json ARGUMENTS` run once in the namespace, decoded.
    static func once(
        _ namespace: NetworkNamespace,
        _ config: String,
        _ arguments: [String] = []
    ) throws
        -> NetworkReport?
    {
        let once = namespace.process([BargeCommand.executable, "net", "--json", "--config", config] + arguments)
        let output = Pipe()
        once.standardOutput = output
        try once.run()
        let printed = output.fileHandleForReading.readDataToEndOfFile()
        once.waitUntilExit()
        #expect(once.terminationStatus == 0)
        return try? JSONDecoder().decode(NetworkReport.self, from: printed)
    }

    /// The agent in the client namespace, an origin beyond the default route in the origin's: an entry that may
    /// use only unmetered networks waits while the default route is the metered wwan, naming it and the rule, and
    /// runs to a complete, correct file once the route moves to the wired link.
    @Test(.enabled(if: NginxServer.isAvailable, "needs nginx"))
    func theAgentWaitsOnAMeteredUplinkAndRunsWhenTheRouteMoves() async throws {
        let client = try NetworkNamespace()
        let origin = try NetworkNamespace()
        try Self.addLink(client, origin, "wired", subnet: 77)
        try Self.addLink(client, origin, "wwan", subnet: 78)
        try origin.ip("addr add 10.99.0.1/32 dev lo")
        try client.ip("route add default via 10.78.0.1 dev wwan0")

        let content = TestContent.bytes(count: 1 << 20, seed: 61)
        let (nginx, base) = try await Self.startNginx(in: origin, reachedFrom: client, at: "10.99.0.1")
        _ = try nginx.serve("f.bin", bytes: content)

        let agent = try AgentUnderTest(extraConfig: "networks:\n  - {match: {interface: \"wwan*\"}, cost: metered}\n")
        try agent.scratch.write(
            "manifests.d/10-net.yaml",
            "version: 1\ndownload:\n  - url: \(base)/f.bin\n    dest: \(agent.output)/f.bin\n"
        )
        try await agent.start(launcher: [NetworkNamespace.ip, "netns", "exec", client.name])
        defer { _ = agent.stop() }
        let waiting = "waiting for an unmetered network (metered: wwan0, rule 1 'wwan*')"
        let held = await eventually {
            (try? agent.status())?.jobs.first.map { "\($0.state) \($0.reason)" } == "suspended \(waiting)"
        }
        #expect(held, "\((try? agent.status())?.jobs.map { "\($0.state) \($0.reason)" } ?? [])")
        #expect(!FileManager.default.fileExists(atPath: agent.output + "/f.bin"))

        // An entry added now whose origin is on the wired LAN goes by the wired link: it runs while the other waits.
        try agent.scratch.write(
            "manifests.d/20-lan.yaml",
            "version: 1\ndownload:\n  - url: http://10.77.0.1:\(nginx.port)/f.bin\n    dest: \(agent.output)/lan.bin\n"
        )
        let lanDone = await eventually(timeout: 20) {
            (try? agent.status())?.jobs.first { $0.destination.hasSuffix("/lan.bin") }?.state == "up-to-date"
        }
        #expect(lanDone, "\((try? agent.status())?.jobs.map { "\($0.state) \($0.reason)" } ?? [])")
        #expect(agent.scratch.read("out/lan.bin") == content)
        #expect((try? agent.status())?.jobs.first { $0.destination.hasSuffix("/f.bin") }?.state == "suspended")

        try client.ip("route replace default via 10.77.0.1 dev wired0")
        let done = await eventually(timeout: 20) {
            (try? agent.status())?.jobs.allSatisfy { $0.state == "up-to-date" } == true
        }
        #expect(done, "\((try? agent.status())?.jobs.map { "\($0.state) \($0.reason)" } ?? [])")
        #expect(agent.scratch.read("out/f.bin") == content)
    }
}
