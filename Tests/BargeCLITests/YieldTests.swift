import BargeCore
import BargeTestSupport
import Foundation
import Testing

/// Background transfers beside the user's own, in namespaces made by the test: the agent in a client namespace,
/// nginx in an origin namespace, one veth link between them slowed to 20 Mbit/s from the origin by `tc … tbf`.
@Suite(
    "Yielding to other traffic",
    .serialized,
    .enabled(if: NetworkNamespace.isAvailable && NginxServer.isAvailable, "needs root, iproute2 and nginx")
)
struct YieldTests {
    /// A low-priority download runs alone, then `curl` downloads from the same origin: the agent sees the other
    /// traffic on the link and backs off (the job's reason and limit say so, and its rate falls to a small share
    /// of the link while curl runs), and once curl ends it climbs back to the whole link. Its connections are
    /// marked Lower-Effort (DSCP LE): the origin's side of the link counts the marked packets.
    @Test func aLowPriorityDownloadBacksOffWhileCurlDownloadsAndClimbsBack() async throws {
        let client = try NetworkNamespace()
        let origin = try NetworkNamespace()
        try NetTests.addLink(client, origin, "wired", subnet: 77)
        try origin.tc("qdisc add dev wired1 root tbf rate 20mbit burst 32kbit latency 400ms")
        // Counts what the client sends marked LE (the DSCP field's upper six bits: 0x04 in the TOS byte) in a class
        // of its own, the rest in another; both far faster than the link.
        try client.tc("qdisc add dev wired0 root handle 1: htb default 20 r2q 100000")
        try client.tc("class add dev wired0 parent 1: classid 1:10 htb rate 1gbit")
        try client.tc("class add dev wired0 parent 1: classid 1:20 htb rate 1gbit")
        try client.tc("filter add dev wired0 parent 1: protocol ip u32 match ip dsfield 0x04 0xfc flowid 1:10")
        try client.ip("route add default via 10.77.0.1 dev wired0")
        let (nginx, base) = try await NetTests.startNginx(in: origin, reachedFrom: client, at: "10.77.0.1")
        _ = try nginx.serve("background.bin", bytes: TestContent.bytes(count: 48 << 20, seed: 81))
        // 20 MiB: about 8 s of the link, long enough to see the agent back off while it runs on a loaded machine.
        _ = try nginx.serve("foreground.bin", bytes: TestContent.bytes(count: 20 << 20, seed: 82))

        let agent = try AgentUnderTest()
        try await agent.start(launcher: [NetworkNamespace.ip, "netns", "exec", client.name])
        defer { _ = agent.stop() }
        try agent.scratch.write(
            "manifests.d/10-bg.yaml",
            "version: 1\ndownload:\n  - url: \(base)/background.bin\n    dest: \(agent.output)/bg.bin\n"
                + "    priority: low\n"
        )
        func job() -> JobStatus? { (try? agent.status())?.jobs.first }
        // Alone, it takes the link: no limit.
        let running = await eventually(timeout: 20) { (job()?.bytesPerSecond ?? 0) > 1_500_000 }
        try #require(running, "\(String(describing: job()))")
        #expect(job()?.limit == nil, "\(String(describing: job()))")

        let curl = client.process(["/usr/bin/curl", "-sf", "-o", "/dev/null", base + "/foreground.bin"])
        try curl.run()
        defer { if curl.isRunning { curl.terminate() } }
        let yielding = await eventually(timeout: 10) {
            job()?.reason.contains("yielding to other traffic:") == true
        }
        try #require(yielding, "\(String(describing: job()))")
        #expect(job()?.limit?.contains("(yielding to other traffic:") == true, "\(String(describing: job()))")
        // While curl runs, Barge's share of the link falls to a small part of it.
        let backedOff = await eventually(timeout: 10) {
            (job()?.bytesPerSecond ?? .infinity) < 400_000 && curl.isRunning
        }
        #expect(backedOff, "\(String(describing: job()))")
        let curlDone = await eventually(timeout: 30) { !curl.isRunning }
        try #require(curlDone)
        #expect(curl.terminationStatus == 0)

        // Curl is done: the budget climbs back, and the job ends unlimited at the link's rate.
        let climbed = await eventually(timeout: 30) {
            guard let job = job() else { return false }
            return job.state == "up-to-date" || (job.limit == nil && (job.bytesPerSecond ?? 0) > 1_500_000)
        }
        #expect(climbed, "\(String(describing: job())) \(agent.log.suffix(6000))")

        // Per class: `class htb 1:10 …` then ` Sent BYTES bytes PACKETS pkt …`.
        let classes = try client.tc("-s class show dev wired0")
        var packets: [String: Int] = [:]
        var current = ""
        for line in classes.split(separator: "\n") {
            let words = line.split(separator: " ")
            if words.first == "class", words.count > 2 { current = String(words[2]) }
            if words.first == "Sent", words.count > 3 { packets[current] = Int(words[3]) }
        }
        // Barge's acknowledgements went marked; curl's (and the probe's) did not.
        #expect((packets["1:10"] ?? 0) > 1_000, "\(classes)")
        #expect((packets["1:20"] ?? 0) > 1_000, "\(classes)")
    }

    /// The same for uploads, on the client's own egress: a low-priority upload (PUT to nginx's WebDAV in the origin
    /// namespace) runs alone on a link slowed to 20 Mbit/s from the client, then `curl -T` uploads beside it: the
    /// agent sees the link's sent bytes that are not its own, the job backs off (its reason and limit say so, its
    /// rate falls) and climbs back once curl is done.
    @Test func aLowPriorityUploadBacksOffWhileCurlUploadsAndClimbsBack() async throws {
        let client = try NetworkNamespace()
        let origin = try NetworkNamespace()
        try NetTests.addLink(client, origin, "wired", subnet: 78)
        try client.tc("qdisc add dev wired0 root tbf rate 20mbit burst 32kbit latency 400ms")
        try client.ip("route add default via 10.78.0.1 dev wired0")
        let (nginx, base) = try await NetTests.startNginx(
            in: origin,
            reachedFrom: client,
            at: "10.78.0.1",
            webDAV: true
        )

        let agent = try AgentUnderTest(extraConfig: "allowed-schemes: [http]")
        let source = agent.output + "/capture.bin"
        try Data(TestContent.bytes(count: 48 << 20, seed: 91)).write(to: URL(fileURLWithPath: source))
        let foreground = agent.output + "/foreground.bin"
        try Data(TestContent.bytes(count: 20 << 20, seed: 92)).write(to: URL(fileURLWithPath: foreground))
        try await agent.start(launcher: [NetworkNamespace.ip, "netns", "exec", client.name])
        defer { _ = agent.stop() }
        try agent.scratch.write(
            "manifests.d/10-up.yaml",
            "version: 1\nupload:\n  - src: \(source)\n    url: \(base)/dav/capture.bin\n    priority: low\n"
                + "    settle: 0s\n"
        )
        func job() -> JobStatus? { (try? agent.status())?.jobs.first { $0.destination == source } }
        let running = await eventually(timeout: 20) { (job()?.bytesPerSecond ?? 0) > 1_500_000 }
        try #require(running, "\(String(describing: job()))")
        #expect(job()?.limit == nil, "\(String(describing: job()))")

        let curl = client.process(["/usr/bin/curl", "-sf", "-o", "/dev/null", "-T", foreground, base + "/dav/fg.bin"])
        try curl.run()
        defer { if curl.isRunning { curl.terminate() } }
        let yielding = await eventually(timeout: 10) {
            job()?.reason.contains("yielding to other traffic:") == true
        }
        try #require(yielding, "\(String(describing: job())) \(agent.log.suffix(3000))")
        #expect(job()?.limit?.contains("(yielding to other traffic:") == true, "\(String(describing: job()))")
        let backedOff = await eventually(timeout: 10) {
            (job()?.bytesPerSecond ?? .infinity) < 400_000 && curl.isRunning
        }
        #expect(backedOff, "\(String(describing: job())) \(agent.log.suffix(2000))")
        let curlDone = await eventually(timeout: 40) { !curl.isRunning }
        try #require(curlDone)
        #expect(curl.terminationStatus == 0)

        let climbed = await eventually(timeout: 40) {
            guard let job = job() else { return false }
            return job.state == "up-to-date" || (job.limit == nil && (job.bytesPerSecond ?? 0) > 1_500_000)
        }
        #expect(climbed, "\(String(describing: job())) \(agent.log.suffix(6000))")
        let done = await eventually(timeout: 60) { job()?.state == "up-to-date" }
        #expect(done, "\(String(describing: job()))")
        let served = FileManager.default.contents(atPath: nginx.root + "/dav/capture.bin")
        #expect(served?.count == 48 << 20)
    }
}
