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

    /// A veth pair NAME0 (10.SUBNET.0.2/24, the uplink) and NAME1 (10.SUBNET.0.1, its gateway), both up.
    static func addLink(_ namespace: NetworkNamespace, _ name: String, subnet: Int) throws {
        try namespace.ip("link add \(name)0 type veth peer name \(name)1")
        try namespace.ip("addr add 10.\(subnet).0.2/24 dev \(name)0")
        try namespace.ip("addr add 10.\(subnet).0.1/24 dev \(name)1")
        try namespace.ip("link set \(name)1 up")
        try namespace.ip("link set \(name)0 up")
    }

    @Test func uplinksFollowTheRouteTheLinksAndTheRules() async throws {
        let namespace = try NetworkNamespace()
        try Self.addLink(namespace, "wired", subnet: 77)
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
        try Self.addLink(namespace, "wwan", subnet: 78)
        try namespace.ip("route replace default via 10.78.0.1 dev wwan0")
        let modem = ["wwan0 ethernet metered (rule 1 'wwan*')"]
        #expect(await eventually { lines.all.last.map(Self.uplinks) == modem }, "\(lines.all)")

        // Its link goes down: the kernel drops its routes, and no uplink is left.
        try namespace.ip("link set wwan0 down")
        #expect(await eventually { lines.all.last.map(Self.uplinks) == [] }, "\(lines.all)")

        // The wired default route comes back.
        try namespace.ip("route add default via 10.77.0.1 dev wired0")
        #expect(await eventually { lines.all.last.map(Self.uplinks) == wired }, "\(lines.all)")

        // The one-shot form says the same.
        let once = namespace.process([BargeCommand.executable, "net", "--json", "--config", self.config])
        let onceOutput = Pipe()
        once.standardOutput = onceOutput
        try once.run()
        let printed = String(decoding: onceOutput.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        once.waitUntilExit()
        #expect(once.terminationStatus == 0)
        #expect(Self.uplinks(printed.trimmingCharacters(in: .newlines)) == wired)
    }
}
