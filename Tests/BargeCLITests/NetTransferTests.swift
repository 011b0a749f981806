import BargeCore
import BargeTestSupport
import Foundation
import Testing

/// Transfers caught mid-way by the network, in namespaces made by the test: the agent in a client namespace, nginx
/// in an origin namespace, two veth links between them ("wired" and "wwan", which a rule calls metered), each slowed
/// to 8 Mbit/s from the origin by `tc … tbf` so that a transfer is still running when the network changes.
@Suite(
    "Transfers when the network changes",
    .serialized,
    .enabled(if: NetworkNamespace.isAvailable && NginxServer.isAvailable, "needs root, iproute2 and nginx")
)
struct NetTransferTests {
    /// The namespaces, the links and the origin.
    final class Lab: @unchecked Sendable {
        let client: NetworkNamespace
        let origin: NetworkNamespace
        let nginx: NginxServer
        /// `http://10.99.0.1:PORT`: an origin beyond the default route.
        let remote: String
        /// `http://10.77.0.1:PORT`: the origin's address on the wired LAN, reached by wired0 whatever the route.
        let lan: String

        init() async throws {
            self.client = try NetworkNamespace()
            self.origin = try NetworkNamespace()
            try NetTests.addLink(self.client, self.origin, "wired", subnet: 77)
            try NetTests.addLink(self.client, self.origin, "wwan", subnet: 78)
            try self.origin.ip("addr add 10.99.0.1/32 dev lo")
            for link in ["wired1", "wwan1"] {
                try self.origin.tc("qdisc add dev \(link) root tbf rate 8mbit burst 32kbit latency 400ms")
            }
            try self.client.ip("route add default via 10.77.0.1 dev wired0")
            (self.nginx, self.remote) = try await NetTests.startNginx(
                in: self.origin,
                reachedFrom: self.client,
                at: "10.99.0.1"
            )
            self.lan = "http://10.77.0.1:\(self.nginx.port)"
        }

        /// An agent with the wwan rule (and `extraConfig`), started in the client namespace (on `systemBus`, when
        /// given).
        func agent(extraConfig: String = "", systemBus: String? = nil) async throws -> AgentUnderTest {
            let agent = try AgentUnderTest(
                extraConfig: "networks:\n  - {match: {interface: \"wwan*\"}, cost: metered}\n" + extraConfig
            )
            if let systemBus { agent.systemBus = systemBus }
            try await agent.start(launcher: [NetworkNamespace.ip, "netns", "exec", self.client.name])
            return agent
        }
    }

    /// A manifest of downloads (`url` → destination name, network policy).
    static func manifest(_ agent: AgentUnderTest, _ entries: [(String, String, String)]) -> String {
        "version: 1\ndownload:\n"
            + entries.map { url, name, network in
                "  - url: \(url)\n    dest: \(agent.output)/\(name)\n    network: \(network)\n"
            }.joined()
    }

    /// The job writing `name`, as the agent reports it now.
    static func job(_ agent: AgentUnderTest, _ name: String) -> JobStatus? {
        (try? agent.status())?.jobs.first { $0.destination.hasSuffix("/" + name) }
    }

    /// What every job is doing, for failure messages.
    static func states(_ agent: AgentUnderTest) -> String {
        ((try? agent.status())?.jobs ?? []).map {
            "\($0.destination): \($0.state) \($0.transfer ?? "-") \($0.bytes) \($0.reason)"
        }
        .joined(separator: "; ")
    }

    /// The route to an `unmetered` entry's origin moves to the metered wwan mid-transfer: the transfer pauses at
    /// once, naming the uplink and the rule, and its bytes stop (while another job, on the wired LAN, goes on);
    /// back on the wired link it resumes on the same connection (nginx served the file in one response) and ends
    /// in a complete, correct file.
    @Test func aTransferPausesWhenItsRouteTurnsMeteredAndResumesOnTheSameConnection() async throws {
        let lab = try await Lab()
        let content = TestContent.bytes(count: 3 << 20, seed: 71)
        _ = try lab.nginx.serve("big.bin", bytes: content)
        _ = try lab.nginx.serve("clock.bin", bytes: TestContent.bytes(count: 6 << 20, seed: 72))
        let agent = try await lab.agent()
        defer { _ = agent.stop() }
        try agent.scratch.write(
            "manifests.d/10-net.yaml",
            Self.manifest(
                agent,
                [
                    ("\(lab.remote)/big.bin", "big.bin", "unmetered"), ("\(lab.lan)/clock.bin", "clock.bin", "any"),
                ]
            )
        )
        let started = await eventually(timeout: 20) { (Self.job(agent, "big.bin")?.bytes ?? 0) >= 256 << 10 }
        try #require(started, "\(Self.states(agent))")

        try lab.client.ip("route replace default via 10.78.0.1 dev wwan0")
        let waiting = "waiting for an unmetered network (metered: wwan0, rule 1 'wwan*')"
        let paused = await eventually {
            Self.job(agent, "big.bin").map { "\($0.state) \($0.transfer ?? "-") \($0.reason)" }
                == "suspended paused \(waiting)"
        }
        try #require(paused, "\(Self.states(agent))")
        // The bytes stop: the job on the wired LAN, which may go on, is the clock.
        let clockAtPause = Self.job(agent, "clock.bin")?.bytes ?? 0
        _ = await eventually { (Self.job(agent, "clock.bin")?.bytes ?? 0) >= clockAtPause + (64 << 10) }
        let heldAt = Self.job(agent, "big.bin")?.bytes
        let clockMoved = await eventually(timeout: 20) {
            (Self.job(agent, "clock.bin")?.bytes ?? 0) >= clockAtPause + (640 << 10)
        }
        #expect(clockMoved, "\(Self.states(agent))")
        #expect(heldAt != nil && Self.job(agent, "big.bin")?.bytes == heldAt, "\(Self.states(agent))")
        #expect(Self.job(agent, "clock.bin")?.state == "transferring")

        try lab.client.ip("route replace default via 10.77.0.1 dev wired0")
        let done = await eventually(timeout: 30) {
            ((try? agent.status())?.jobs ?? []).allSatisfy { $0.state == "up-to-date" }
        }
        #expect(done, "\(Self.states(agent))")
        #expect(agent.scratch.read("out/big.bin") == content)
        // One response carried the whole file: the paused transfer went on where it was.
        #expect(lab.nginx.served("/big.bin", count: 1).map(\.status) == [200])
        #expect(Self.job(agent, "big.bin")?.attempts == 0)
    }

    /// NetworkManager (its device's `Metered`) and ModemManager (its modem's 3GPP registration), stand-ins on a bus of
    /// the test's own, decide while transfers run: a roaming registration pauses the `unmetered` and the
    /// `not-roaming` jobs (their bytes stop while an `any` job on the same link goes on); back home with
    /// `Metered=yes`, only the `unmetered` one stays held; `barge net` names each source; back to `no`, all end in
    /// correct files, and the metrics counted bytes under each cost class.
    @Test(
        .enabled(if: DesktopBus.isAvailable, "needs dbus-daemon, dbus-send, python3-dbus and python3-gi"),
        .enabled(if: TusServer.isAvailable, "needs the test venv's prometheus_client (install-deps.sh)")
    )
    func networkManagerAndModemManagerVerdictsHoldAndReleaseTransfers() async throws {
        let lab = try await Lab()
        let bus = try DesktopBus(scripts: BargeCommand.packageRoot + "/scripts/servers")
        defer { bus.stop() }
        try bus.send("AddDevice", ["string:wired0", "string:wired0", "uint32:4"])  // guess-no
        try bus.send("AddModem", ["string:wired0", "uint32:1"])  // home
        let cheap = TestContent.bytes(count: 3 << 20, seed: 81)
        let roaming = TestContent.bytes(count: 6 << 20, seed: 82)
        _ = try lab.nginx.serve("cheap.bin", bytes: cheap)
        _ = try lab.nginx.serve("roam.bin", bytes: roaming)
        _ = try lab.nginx.serve("clock.bin", bytes: TestContent.bytes(count: 8 << 20, seed: 83))
        let agent = try await lab.agent(systemBus: bus.address)
        defer { _ = agent.stop() }
        func net() throws -> [String] {
            let shown = try agent.barge(["net", "--json"])
            let report = try JSONDecoder().decode(NetworkReport.self, from: Data(shown.standardOutput.utf8))
            return report.uplinks.map { "\($0.name) \($0.cost) (\($0.costSource)) \($0.roaming) (\($0.roamingSource))" }
        }
        #expect(
            try net() == ["wired0 unmetered (NetworkManager Metered=guess-no) false (ModemManager registration home)"]
        )
        try agent.scratch.write(
            "manifests.d/10-net.yaml",
            Self.manifest(
                agent,
                [
                    ("\(lab.remote)/cheap.bin", "cheap.bin", "unmetered"),
                    ("\(lab.remote)/roam.bin", "roam.bin", "not-roaming"),
                    ("\(lab.lan)/clock.bin", "clock.bin", "any"),
                ]
            )
        )
        let started = await eventually(timeout: 20) {
            (Self.job(agent, "cheap.bin")?.bytes ?? 0) >= 128 << 10 && (Self.job(agent, "roam.bin")?.bytes ?? 0) > 0
        }
        try #require(started, "\(Self.states(agent))")

        /// Waits until each job is held for its reason, then checks that their bytes stop while the clock job's go
        /// on.
        func hold(_ expected: [String: String]) async {
            let held = await eventually {
                expected.allSatisfy { name, reason in
                    Self.job(agent, name).map { "\($0.state) \($0.reason)" } == "suspended \(reason)"
                }
            }
            #expect(held, "\(Self.states(agent))")
            let clockAtPause = Self.job(agent, "clock.bin")?.bytes ?? 0
            _ = await eventually { (Self.job(agent, "clock.bin")?.bytes ?? 0) >= clockAtPause + (64 << 10) }
            let heldAt = expected.keys.map { Self.job(agent, $0)?.bytes }
            let clockMoved = await eventually(timeout: 20) {
                (Self.job(agent, "clock.bin")?.bytes ?? 0) >= clockAtPause + (512 << 10)
            }
            #expect(clockMoved, "\(Self.states(agent))")
            #expect(expected.keys.map { Self.job(agent, $0)?.bytes } == heldAt, "\(Self.states(agent))")
        }
        let roamingSource = "(roaming: wired0, ModemManager registration roaming)"
        try bus.send("SetRegistration", ["string:wired0", "uint32:5"])
        await hold([
            "cheap.bin": "waiting for an unmetered network \(roamingSource)",
            "roam.bin": "waiting for a network that is not roaming \(roamingSource)",
        ])
        #expect(
            try net() == ["wired0 unmetered (NetworkManager Metered=guess-no) true (ModemManager registration roaming)"]
        )
        try bus.send("SetRegistration", ["string:wired0", "uint32:1"])
        try bus.send("SetMetered", ["string:wired0", "uint32:1"])
        await hold(["cheap.bin": "waiting for an unmetered network (metered: wired0, NetworkManager Metered=yes)"])
        // A `not-roaming` job may use a metered link: it was let go again.
        #expect(Self.job(agent, "roam.bin")?.state != "suspended", "\(Self.states(agent))")
        #expect(try net() == ["wired0 metered (NetworkManager Metered=yes) false (ModemManager registration home)"])

        // NetworkManager leaves the bus (stopped, restarting): its last verdict stays in force. ModemManager's next
        // change is read after NetworkManager's leaving (one connection, in order): once it shows, the leaving was
        // read too.
        try bus.send("StopNetworkManager", [])
        try bus.send("SetRegistration", ["string:wired0", "uint32:7"])
        let seen = await eventually {
            (try? net()) == [
                "wired0 metered (NetworkManager Metered=yes) true (ModemManager registration roaming-sms-only)"
            ]
        }
        #expect(seen, "\((try? net()) ?? [])")
        #expect(Self.job(agent, "cheap.bin")?.state == "suspended", "\(Self.states(agent))")
        try bus.send("SetRegistration", ["string:wired0", "uint32:1"])

        // Changed while away, read when it is back.
        try bus.send("SetMetered", ["string:wired0", "uint32:2"])
        try bus.send("StartNetworkManager", [])
        let done = await eventually(timeout: 40) {
            ((try? agent.status())?.jobs ?? []).allSatisfy { $0.state == "up-to-date" }
        }
        #expect(done, "\(Self.states(agent))")
        #expect(agent.scratch.read("out/cheap.bin") == cheap)
        #expect(agent.scratch.read("out/roam.bin") == roaming)
        #expect(try net() == ["wired0 unmetered (NetworkManager Metered=no) false (ModemManager registration home)"])
        // The metrics count the bytes by the uplink's cost class as it was when they went: the clock job's moved
        // while wired0 was metered, and while it was roaming.
        let samples = try MetricsTests.scrape(["--unix-socket", agent.socket, "http://localhost/metrics"])
        for cost in ["unmetered", "metered", "roaming"] {
            let labels = ["direction": "received", "uplink": "wired0", "cost": cost]
            #expect((MetricsTests.value(samples, "barge_transferred_bytes_total", labels) ?? 0) > 0, "\(cost)")
        }
    }

    /// The link goes down mid-transfer: the transfer pauses at once with "no route to ORIGIN". Back within the
    /// link grace (6 s here, so that a slow test still sees the paused state and acts within it), the same transfer
    /// goes on; down for longer, it is stopped and waits, neither failed nor backing off, and when the link returns
    /// it starts again at once from its offset (a Range request) and ends in a complete, correct file. 12 MiB at
    /// the link's 1 MB/s: still running at the second outage.
    @Test func aLinkDownAndUpContinuesOrResumesFromTheOffset() async throws {
        let lab = try await Lab()
        let content = TestContent.bytes(count: 12 << 20, seed: 73)
        _ = try lab.nginx.serve("big.bin", bytes: content)
        let agent = try await lab.agent(extraConfig: "link-grace: 6s\n")
        defer { _ = agent.stop() }
        try agent.scratch.write(
            "manifests.d/10-net.yaml",
            Self.manifest(agent, [("\(lab.remote)/big.bin", "big.bin", "unmetered")])
        )
        let host = "10.99.0.1:\(lab.nginx.port)"
        let started = await eventually(timeout: 20) { (Self.job(agent, "big.bin")?.bytes ?? 0) >= 256 << 10 }
        try #require(started, "\(Self.states(agent))")

        // A flap: down, and up again well within the grace.
        try lab.client.ip("link set wired0 down")
        let paused = await eventually {
            Self.job(agent, "big.bin").map { "\($0.state) \($0.transfer ?? "-") \($0.reason)" }
                == "suspended paused no route to \(host)"
        }
        try #require(paused, "\(Self.states(agent))")
        try lab.client.ip("link set wired0 up")
        try lab.client.ip("route add default via 10.77.0.1 dev wired0")
        let going = await eventually {
            Self.job(agent, "big.bin").map { "\($0.state) \($0.transfer ?? "-")" } == "transferring connected"
        }
        try #require(going, "\(Self.states(agent))")
        let afterFlap = Self.job(agent, "big.bin")?.bytes ?? 0
        let moving = await eventually { (Self.job(agent, "big.bin")?.bytes ?? 0) >= afterFlap + (128 << 10) }
        #expect(moving, "\(Self.states(agent))")

        // An outage longer than the grace: the transfer is stopped (its connection let go), still suspended.
        try lab.client.ip("link set wired0 down")
        let stopped = await eventually(timeout: 30) {
            Self.job(agent, "big.bin").map { "\($0.state) \($0.transfer ?? "-") \($0.reason)" }
                == "suspended - no route to \(host)"
        }
        try #require(stopped, "\(Self.states(agent))")
        let offset = Self.job(agent, "big.bin")?.bytes ?? 0
        #expect(offset > 0 && Self.job(agent, "big.bin")?.dueAt == nil)
        try lab.client.ip("link set wired0 up")
        try lab.client.ip("route add default via 10.77.0.1 dev wired0")
        let done = await eventually(timeout: 60) { Self.job(agent, "big.bin")?.state == "up-to-date" }
        #expect(done, "\(Self.states(agent))")
        #expect(agent.scratch.read("out/big.bin") == content)
        #expect(Self.job(agent, "big.bin")?.attempts == 0)
        // The flap cost nothing; the outage one request, from the stored offset on.
        let served = lab.nginx.served("/big.bin", count: 2)
        #expect(served.map(\.status) == [200, 206], "\(served)")
        #expect(served.last?.range == "bytes=\(offset)-", "\(served)")
    }

    /// `barge net set wired0 --cost metered` mid-transfer pauses an `unmetered` entry with the override as the
    /// reason; the override outlives a restart of the agent (the entry still waits); `--cost auto` gives the link
    /// back to the rules and the entry ends in a complete, correct file.
    @Test func aManualOverrideHoldsATransferAndOutlivesARestart() async throws {
        let lab = try await Lab()
        let content = TestContent.bytes(count: 3 << 20, seed: 74)
        _ = try lab.nginx.serve("big.bin", bytes: content)
        let agent = try await lab.agent()
        defer { _ = agent.stop() }
        try agent.scratch.write(
            "manifests.d/10-net.yaml",
            Self.manifest(agent, [("\(lab.remote)/big.bin", "big.bin", "unmetered")])
        )
        let started = await eventually(timeout: 20) { (Self.job(agent, "big.bin")?.bytes ?? 0) >= 256 << 10 }
        try #require(started, "\(Self.states(agent))")

        let set = try BargeCommand.run(["net", "set", "wired0", "--cost", "metered", "--config", agent.configPath])
        #expect(set.status == 0 && set.standardOutput == "wired0: cost metered, roaming auto\n", "\(set)")
        let waiting = "suspended waiting for an unmetered network (metered: wired0, set by hand)"
        let held = await eventually { Self.job(agent, "big.bin").map { "\($0.state) \($0.reason)" } == waiting }
        try #require(held, "\(Self.states(agent))")
        let shown = try BargeCommand.run(["net", "--json", "--config", agent.configPath])
        let report = try JSONDecoder().decode(NetworkReport.self, from: Data(shown.standardOutput.utf8))
        #expect(report.fromAgent == true)
        #expect(report.uplinks.map { "\($0.name) \($0.cost) \($0.costSource)" } == ["wired0 metered set by hand"])
        #expect(report.overrides == [NetworkReport.OverrideReport(name: "wired0", cost: "metered", roaming: nil)])
        #expect((try? agent.status())?.agent.network == "wired0 metered (set by hand)")

        #expect(agent.stop() == 0)
        try await agent.start(launcher: [NetworkNamespace.ip, "netns", "exec", lab.client.name])
        let stillHeld = await eventually { Self.job(agent, "big.bin").map { "\($0.state) \($0.reason)" } == waiting }
        #expect(stillHeld, "\(Self.states(agent))")
        #expect(Self.job(agent, "big.bin")?.transfer == nil)

        let auto = try BargeCommand.run(["net", "set", "wired0", "--cost", "auto", "--config", agent.configPath])
        #expect(auto.status == 0, "\(auto)")
        let done = await eventually(timeout: 30) { Self.job(agent, "big.bin")?.state == "up-to-date" }
        #expect(done, "\(Self.states(agent))")
        #expect(agent.scratch.read("out/big.bin") == content)
    }

    /// Both links carry a default route, the metered wwan's preferred (lower metric). A transfer that may use any
    /// network runs over the wwan; when the wired link's route appears, that transfer is left alone (one response,
    /// from the wwan's address), but new connections are bound to the cheaper wired link, where its route allows:
    /// an `unmetered` entry added then runs at once, bound, instead of waiting.
    @Test func newConnectionsPreferACheaperUplinkThatAppears() async throws {
        let lab = try await Lab()
        try lab.client.ip("route replace default via 10.78.0.1 dev wwan0 metric 100")
        try lab.client.ip("route del default via 10.77.0.1 dev wired0")
        let big = TestContent.bytes(count: 3 << 20, seed: 75)
        let small = TestContent.bytes(count: 256 << 10, seed: 76)
        _ = try lab.nginx.serve("big.bin", bytes: big)
        _ = try lab.nginx.serve("small.bin", bytes: small)
        let agent = try await lab.agent()
        defer { _ = agent.stop() }
        try agent.scratch.write(
            "manifests.d/10-any.yaml",
            Self.manifest(agent, [("\(lab.remote)/big.bin", "big.bin", "any")])
        )
        let started = await eventually(timeout: 20) { (Self.job(agent, "big.bin")?.bytes ?? 0) >= 256 << 10 }
        try #require(started, "\(Self.states(agent))")

        try lab.client.ip("route add default via 10.77.0.1 dev wired0 metric 200")
        try agent.scratch.write(
            "manifests.d/20-unmetered.yaml",
            Self.manifest(agent, [("\(lab.remote)/small.bin", "small.bin", "unmetered")])
        )
        let done = await eventually(timeout: 30) {
            ((try? agent.status())?.jobs ?? []).count == 2
                && ((try? agent.status())?.jobs ?? []).allSatisfy { $0.state == "up-to-date" }
        }
        #expect(done, "\(Self.states(agent))")
        #expect(agent.scratch.read("out/big.bin") == big)
        #expect(agent.scratch.read("out/small.bin") == small)
        let bigServed = lab.nginx.served("/big.bin", count: 1)
        #expect(bigServed.map { "\($0.status) \($0.remote)" } == ["200 10.78.0.2"], "\(bigServed)")
        let smallServed = lab.nginx.served("/small.bin", count: 1)
        #expect(smallServed.map { "\($0.status) \($0.remote)" } == ["200 10.77.0.2"], "\(smallServed)")
    }

    /// A transfer is bound to the uplink it was judged by: when a metered modem's default route appears and is
    /// preferred (lower metric), an `unmetered` transfer running over the wired link stays on it (its
    /// acknowledgements do not start leaving by the modem), and ends in a complete, correct file in one response.
    @Test func aRunningTransferStaysOnItsUplinkWhenAMeteredRouteIsPreferred() async throws {
        let lab = try await Lab()
        let content = TestContent.bytes(count: 3 << 20, seed: 77)
        _ = try lab.nginx.serve("big.bin", bytes: content)
        let agent = try await lab.agent()
        defer { _ = agent.stop() }
        try agent.scratch.write(
            "manifests.d/10-net.yaml",
            Self.manifest(agent, [("\(lab.remote)/big.bin", "big.bin", "unmetered")])
        )
        let started = await eventually(timeout: 20) { (Self.job(agent, "big.bin")?.bytes ?? 0) >= 256 << 10 }
        try #require(started, "\(Self.states(agent))")
        let sentByModem = try lab.client.counter("wwan0", "tx_bytes")
        try lab.client.ip("route add default via 10.78.0.1 dev wwan0 metric 10")
        try lab.client.ip("route add default via 10.77.0.1 dev wired0 metric 100")
        try lab.client.ip("route del default via 10.77.0.1 dev wired0 metric 0")
        let done = await eventually(timeout: 30) { Self.job(agent, "big.bin")?.state == "up-to-date" }
        #expect(done, "\(Self.states(agent))")
        #expect(agent.scratch.read("out/big.bin") == content)
        #expect(lab.nginx.served("/big.bin", count: 1).map(\.status) == [200])
        // A few hundred bytes of neighbour discovery at most; the transfer's acknowledgements would be tens of KiB.
        let modem = try lab.client.counter("wwan0", "tx_bytes") - sentByModem
        #expect(modem < 4096, "the modem sent \(modem) bytes")
    }
}
