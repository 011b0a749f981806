import BargeCore
import BargeTestSupport
import Foundation
import Glibc
import Testing

/// `GET /metrics`, read with curl (on the control socket and on the TCP listener) and parsed by prometheus_client's
/// parser from PyPI (`scripts/servers/metrics-json.py`): what a Prometheus server would make of it.
@Suite(
    "Metrics",
    .serialized,
    .enabled(if: NginxServer.isAvailable && TusServer.isAvailable, "needs nginx and the test venv (install-deps.sh)")
)
struct MetricsTests {
    /// One sample as prometheus_client parsed it.
    struct Sample: Decodable {
        var name: String
        var type: String
        var labels: [String: String]
        var value: Double
    }

    /// The samples of a scrape, parsed; the parser refusing the text fails the test.
    static func scrape(_ curlArguments: [String]) throws -> [Sample] {
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        curl.arguments = ["--silent", "--show-error", "--fail"] + curlArguments
        let parser = Process()
        parser.executableURL = URL(fileURLWithPath: TusServer.python)
        parser.arguments = [BargeCommand.packageRoot + "/scripts/servers/metrics-json.py"]
        let pipe = Pipe()
        let output = Pipe()
        let errors = Pipe()
        curl.standardOutput = pipe
        parser.standardInput = pipe
        parser.standardOutput = output
        parser.standardError = errors
        try curl.run()
        try parser.run()
        let json = output.fileHandleForReading.readDataToEndOfFile()
        let problem = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        curl.waitUntilExit()
        parser.waitUntilExit()
        try #require(curl.terminationStatus == 0, "curl \(curlArguments) failed")
        try #require(parser.terminationStatus == 0, "prometheus_client refused the text: \(problem)")
        return try JSONDecoder().decode([Sample].self, from: json)
    }

    /// The value of the sample `name` with `labels` (all of them), or nil.
    static func value(_ samples: [Sample], _ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { sample in
            sample.name == name && labels.allSatisfy { key, value in sample.labels[key] == value }
        }?.value
    }

    /// Bytes received from 127.0.0.1: by `lo`, which is no uplink.
    static let received = ["direction": "received", "uplink": "lo", "cost": "none"]

    /// A download from nginx on 127.0.0.1 (rate-limited, so it is caught mid-way) and one that fails (404): the bytes
    /// counter moves with the transfer and ends at the file's size, the jobs gauge follows the states, the failure is
    /// counted by class, and the reconciler's histogram fills. The TCP listener serves the same, and nothing else.
    @Test func countersMoveAsATransferRunsAndParseAsPrometheusText() async throws {
        let nginx = try NginxServer(rateLimit: "2m")
        let content = TestContent.bytes(count: 16 << 20, seed: 91)
        let url = try nginx.serve("data.bin", bytes: content)
        let port = try freeLoopbackPort()
        let agent = try AgentUnderTest(extraConfig: "metrics-listen: \(port)\n")
        try await agent.start()
        defer { _ = agent.stop() }
        let socket = ["--unix-socket", agent.socket, "http://localhost/metrics"]
        let idle = try Self.scrape(socket)
        #expect(Self.value(idle, "barge_jobs", ["state": "queued"]) == 0)
        #expect(Self.value(idle, "barge_transferred_bytes_total", Self.received) == nil)
        #expect(idle.contains { $0.name == "barge_netlink_events_total" && $0.type == "counter" })

        try agent.scratch.write(
            "manifests.d/10-metrics.yaml",
            """
            version: 1
            download:
              - url: \(url)
                dest: \(agent.output)/data.bin
              - url: \(url.replacingOccurrences(of: "data.bin", with: "missing.bin"))
                dest: \(agent.output)/missing.bin

            """
        )
        let midway = await eventually(timeout: 20) {
            let bytes = (try? agent.status())?.jobs.first { $0.destination.hasSuffix("/data.bin") }?.bytes ?? 0
            return bytes >= 512 << 10 && bytes < content.count - (1 << 20)
        }
        let states = ((try? agent.status())?.jobs ?? []).map { "\($0.state) \($0.bytes) \($0.reason)" }
        try #require(midway, "\(states) \(agent.log)")
        let during = try Self.scrape(socket)
        let counted = try #require(Self.value(during, "barge_transferred_bytes_total", Self.received))
        #expect(counted > 0 && counted < Double(content.count), "\(counted)")
        #expect(Self.value(during, "barge_jobs", ["state": "transferring"]) == 1)
        let reconciles = try #require(Self.value(during, "barge_reconcile_duration_seconds_count"))
        #expect(reconciles >= 1)
        #expect(during.contains { $0.name == "barge_reconcile_duration_seconds_bucket" && $0.labels["le"] == "+Inf" })

        let done = await eventually(timeout: 30) {
            (try? agent.status())?.jobs.first { $0.destination.hasSuffix("/data.bin") }?.state == "up-to-date"
        }
        try #require(done, "\(agent.log)")
        let after = try Self.scrape(socket)
        #expect(Self.value(after, "barge_transferred_bytes_total", Self.received) == Double(content.count))
        #expect(Self.value(after, "barge_jobs", ["state": "up-to-date"]) == 1)
        #expect(Self.value(after, "barge_jobs", ["state": "error"]) == 1)
        #expect(Self.value(after, "barge_jobs", ["state": "transferring"]) == 0)
        #expect(Self.value(after, "barge_transfer_errors_total", ["class": "permanent"]) == 1)
        #expect((Self.value(after, "barge_reconcile_duration_seconds_count") ?? 0) > reconciles)

        let overTCP = try Self.scrape(["http://127.0.0.1:\(port)/metrics"])
        #expect(Self.value(overTCP, "barge_transferred_bytes_total", Self.received) == Double(content.count))
        let elsewhere = try BargeCommand.run(
            executable: "/usr/bin/curl",
            ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(port)/v1/status"]
        )
        #expect(elsewhere.standardOutput == "404")
    }

    /// The netlink counter moves with the kernel's events: an agent in a namespace of its own sees a dummy link made
    /// there.
    @Test(.enabled(if: NetworkNamespace.isAvailable, "needs root and iproute2"))
    func theNetlinkCounterMovesWithTheKernelsEvents() async throws {
        let namespace = try NetworkNamespace()
        let agent = try AgentUnderTest()
        try await agent.start(launcher: [NetworkNamespace.ip, "netns", "exec", namespace.name])
        defer { _ = agent.stop() }
        let socket = ["--unix-socket", agent.socket, "http://localhost/metrics"]
        let before = try #require(Self.value(try Self.scrape(socket), "barge_netlink_events_total"))
        try namespace.ip("link add barge-m0 type veth peer name barge-m1")
        try namespace.ip("link set barge-m0 up")
        let moved = await eventually {
            (Self.value((try? Self.scrape(socket)) ?? [], "barge_netlink_events_total") ?? 0) >= before + 2
        }
        #expect(moved, "\(before)")
    }
}
