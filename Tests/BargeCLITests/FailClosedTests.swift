import BargeCore
import BargeTestSupport
import Foundation
import Glibc
import Testing

/// The agent fails closed: an error reading its input never counts as "nothing", so nothing is pruned, cancelled
/// or removed because of it.
@Suite("barge agent fails closed", .serialized, .enabled(if: NginxServer.isAvailable, "nginx is not installed"))
struct FailClosedTests {
    /// Two `prune: true` manifests, mirrored; returns the mirrored files' paths.
    private static func mirrorTwo(_ agent: AgentUnderTest, _ nginx: NginxServer) async throws -> [String] {
        var paths: [String] = []
        for index in 1...2 {
            let url = try nginx.serve("k\(index).bin", bytes: TestContent.bytes(count: 5000, seed: UInt64(40 + index)))
            try agent.scratch.write(
                "manifests.d/\(index)0-kept\(index).yaml",
                "version: 1\nprune: true\ndownload:\n  - url: \(url)\n    dest: \(agent.output)/k\(index).bin\n"
            )
            paths.append(agent.output + "/k\(index).bin")
        }
        return paths
    }

    /// How long a directory that was missing, unreadable or empty takes to count as settled again (the agent's
    /// 10 s hold on removals, and a retry), with room to spare.
    static let settles: Double = 25

    private static func mirrored(_ agent: AgentUnderTest, _ count: Int) -> Bool {
        (try? agent.status())?.jobs.filter { $0.state == "up-to-date" }.count == count
    }

    /// A rename of the directory (a configuration tool swapping it), its removal and its return, and a directory
    /// made unreadable: every job and file stays, `barge status` says why, and the agent picks the directory up
    /// again when it is back, the replacement included.
    @Test(
        .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "setpriv is not installed")
    )
    func anUnreadableMissingOrReplacedDirectoryLosesNothing() async throws {
        let nginx = try NginxServer()
        let agent = try AgentUnderTest()
        let files = try await Self.mirrorTwo(agent, nginx)
        // Without these capabilities root is bound by the directory's mode, as an agent of another user would be.
        let dropped = "-dac_override,-dac_read_search"
        try await agent.start(launcher: ["/usr/bin/setpriv", "--inh-caps=\(dropped)", "--bounding-set=\(dropped)"])
        #expect(await eventually { Self.mirrored(agent, 2) })
        func problem() -> String? { (try? agent.status())?.agent.manifestDirectoryProblem }
        func everythingKept(_ when: String) throws {
            let status = try agent.status()
            #expect(status.jobs.count == 2, "\(when): \(status.jobs)")
            #expect(status.jobs.allSatisfy { $0.state == "up-to-date" }, "\(when): \(status.jobs)")
            for file in files { #expect(FileManager.default.fileExists(atPath: file), "\(when): \(file) is gone") }
        }

        // Unreadable.
        #expect(chmod(agent.manifests, 0) == 0)
        #expect(await eventually { problem()?.contains("Permission denied") == true }, "\(agent.log)")
        try everythingKept("unreadable")
        let table = try agent.barge(["status"]).standardOutput
        #expect(table.contains("cannot read the manifest directory"), "\(table)")
        #expect(chmod(agent.manifests, 0o755) == 0)
        #expect(await eventually(timeout: Self.settles) { problem() == nil }, "\(agent.log)")
        try everythingKept("readable again")

        // Removed (renamed away), then back.
        let away = agent.scratch.path + "/manifests.away"
        #expect(rename(agent.manifests, away) == 0)
        #expect(await eventually { problem()?.contains("No such file") == true })
        try everythingKept("missing")
        #expect(rename(away, agent.manifests) == 0)
        #expect(await eventually(timeout: Self.settles) { problem() == nil }, "\(agent.log)")
        try everythingKept("back")

        // Removed and made again, empty, then filled (`rm -rf` and a copy): nothing is lost meanwhile.
        let copy = agent.scratch.path + "/manifests.copy"
        try FileManager.default.copyItem(atPath: agent.manifests, toPath: copy)
        try FileManager.default.removeItem(atPath: agent.manifests)
        try FileManager.default.createDirectory(atPath: agent.manifests, withIntermediateDirectories: false)
        #expect(await eventually { problem()?.contains("holds no manifest") == true }, "\(agent.log)")
        try everythingKept("emptied")
        for name in try FileManager.default.contentsOfDirectory(atPath: copy) {
            try FileManager.default.copyItem(atPath: copy + "/" + name, toPath: agent.manifests + "/" + name)
        }
        #expect(await eventually(timeout: Self.settles) { problem() == nil }, "\(agent.log)")
        try everythingKept("filled again")

        // Replaced: a new directory with the same manifests and one more is swapped in by two renames.
        let fresh = agent.scratch.path + "/manifests.new"
        try FileManager.default.copyItem(atPath: agent.manifests, toPath: fresh)
        let third = try nginx.serve("k3.bin", bytes: TestContent.bytes(count: 3000, seed: 43))
        try agent.scratch.write(
            "manifests.new/30-new.yaml",
            "version: 1\ndownload:\n  - url: \(third)\n    dest: \(agent.output)/k3.bin\n"
        )
        #expect(rename(agent.manifests, agent.scratch.path + "/manifests.old") == 0)
        #expect(rename(fresh, agent.manifests) == 0)
        #expect(await eventually { Self.mirrored(agent, 3) }, "\(String(describing: try? agent.status()))")
        for file in files { #expect(FileManager.default.fileExists(atPath: file)) }
        // The watch moved to the new directory: an edit there is seen at once (no retry is pending).
        let fourth = try nginx.serve("k4.bin", bytes: TestContent.bytes(count: 3000, seed: 44))
        try agent.scratch.write(
            "manifests.d/40-later.yaml",
            "version: 1\ndownload:\n  - url: \(fourth)\n    dest: \(agent.output)/k4.bin\n"
        )
        #expect(await eventually(timeout: 3) { Self.mirrored(agent, 4) })
        #expect(agent.stop() == 0)
    }

    /// The agent keeps going while each attempt makes progress: every connection dropped after 1 MiB, and the
    /// 8 MiB file arrives with each byte served once (a failed attempt's bytes are kept as a checkpoint).
    @Test func aServerDroppingEveryConnectionStillDeliversTheFile() async throws {
        let (origin, content, url) = try FaultOrigin.droppingEveryMiB(seed: 45)
        let agent = try AgentUnderTest()
        try agent.scratch.write(
            "manifests.d/10-drops.yaml",
            "version: 1\ndownload:\n  - url: \(url)\n    dest: \(agent.output)/d.bin\n"
                + "    retry: {min-delay: 1h, give-up-after: 1h}\n"
        )
        try await agent.start()
        #expect(await eventually(timeout: 60) { Self.mirrored(agent, 1) }, "\(String(describing: try? agent.status()))")
        #expect(agent.scratch.read("out/d.bin") == content)
        let served = origin.served("/dropping")
        #expect(served.count == 8)
        #expect(served.map(\.bodyBytes).reduce(0, +) == content.count)
        #expect(agent.stop() == 0)
    }

    /// A drop-in directory whose parent is missing too when the agent starts: the agent runs and says so, takes the
    /// directory when it is made, and from then on sees new manifests at once (its watches were added late).
    @Test func aDirectoryWhoseParentIsMissingIsWatchedOnceItIsMade() async throws {
        let nginx = try NginxServer()
        let agent = try AgentUnderTest(manifestsAt: "etc/barge/manifests.d", makingManifests: false)
        try await agent.start()
        func problem() -> String? { (try? agent.status())?.agent.manifestDirectoryProblem }
        #expect(problem()?.contains("No such file") == true, "\(agent.log)")
        for index in 1...2 {
            let url = try nginx.serve("p\(index).bin", bytes: TestContent.bytes(count: 3000, seed: UInt64(60 + index)))
            if index == 2 {
                // Once the directory has settled the agent no longer reads it on a timer: only the watch sees this.
                #expect(await eventually(timeout: 20) { problem() == nil }, "\(agent.log)")
            }
            try agent.scratch.write(
                "etc/barge/manifests.d/\(index)0-p.yaml",
                "version: 1\ndownload:\n  - url: \(url)\n    dest: \(agent.output)/p\(index).bin\n"
            )
            let timeout: Double = index == 1 ? 15 : 3
            #expect(
                await eventually(timeout: timeout) { Self.mirrored(agent, index) },
                "\(String(describing: try? agent.status()))"
            )
        }
        #expect(agent.stop() == 0)
    }

    /// The trust error's advice (`chmod go-w`) is taken at once, with no other edit of the file.
    @Test func aPermissionFixIsSeenWithoutAnotherEdit() async throws {
        let nginx = try NginxServer()
        let agent = try AgentUnderTest()
        let url = try nginx.serve("trust.bin", bytes: TestContent.bytes(count: 2000, seed: 46))
        let path = try agent.scratch.write(
            "manifests.d/10-trust.yaml",
            "version: 1\ndownload:\n  - url: \(url)\n    dest: \(agent.output)/trust.bin\n",
            mode: 0o666
        )
        try await agent.start()
        let refused = try #require(try agent.status().manifests.first)
        #expect(refused.state == "invalid")
        #expect(refused.errors.joined().contains("chmod go-w"), "\(refused.errors)")
        #expect(chmod(path, 0o644) == 0)
        #expect(await eventually(timeout: 3) { Self.mirrored(agent, 1) }, "\(String(describing: try? agent.status()))")
        #expect(agent.stop() == 0)
    }

    /// An agent that cannot bind its control socket says so and exits 1 (systemd never hears READY=1).
    @Test func anAgentThatCannotBindItsSocketExitsNonZero() async throws {
        let scratch = try ScratchDirectory()
        try scratch.write("not-a-directory", "")
        try scratch.write(
            "barge.yaml",
            """
            manifests: \(scratch.path)/manifests.d
            state-dir: \(scratch.path)/state
            control-socket: \(scratch.path)/not-a-directory/barge.sock
            allowed-roots: [\(scratch.path)/out]
            """
        )
        let result = try BargeCommand.run(["agent", "--config", scratch.path + "/barge.yaml"])
        #expect(result.status == 1)
        #expect(result.standardError.contains("not-a-directory"), "\(result.standardError)")
    }

    /// A `barge get --foreground` beside the agent, onto the file the agent is fetching, neither writes nor
    /// removes the agent's partial; the agent's file arrives whole.
    @Test func aForegroundGetBesideTheAgentNeverWritesItsPartial() async throws {
        // 15 s at this rate: the agent is still writing when the second transfer comes, however slow it is to start.
        let nginx = try NginxServer(rateLimit: "200k")
        let agent = try AgentUnderTest()
        let content = TestContent.bytes(count: 3 << 20, seed: 47)
        let url = try nginx.serve("shared.bin", bytes: content)
        try agent.scratch.write(
            "manifests.d/10-shared.yaml",
            "version: 1\ndownload:\n  - url: \(url)\n    dest: \(agent.output)/shared.bin\n"
        )
        try await agent.start()
        let partial = agent.output + "/.shared.bin.barge-partial"
        #expect(await eventually { FileManager.default.fileExists(atPath: partial) })
        let result = try agent.barge(["get", "--foreground", "--retries", "0", url, agent.output + "/shared.bin"])
        #expect(result.status == 1)
        #expect(result.standardError.contains("another transfer is writing it"), "\(result.standardError)")
        #expect(await eventually(timeout: 60) { Self.mirrored(agent, 1) })
        #expect(agent.scratch.read("out/shared.bin") == content)
        #expect(agent.stop() == 0)
    }

    /// Barge's own admission keeps the per-host limit: with one connection to the host, 20 files wait their turn
    /// as `queued` (never failed as stalled, though each waits far longer than the stall timeout) and arrive in
    /// one connection at a time.
    @Test func aHostLimitOfOneQueuesTwentyFilesAndFailsNone() async throws {
        let origin = try FaultOrigin()
        var behaviour = FaultOrigin.Behaviour()
        behaviour.dripBytesPerTick = 10_000  // every 50 ms: 0.3 s a file
        behaviour.faultyRequests = 1000
        let agent = try AgentUnderTest(extraConfig: "concurrency: {total: 8, per-host: 1}\nstall-timeout: 1s")
        var manifest = "version: 1\ndownload:\n"
        var contents: [String: [UInt8]] = [:]
        for index in 0..<20 {
            let content = TestContent.bytes(count: 60_000, seed: UInt64(800 + index))
            contents["q\(index).bin"] = content
            let url = origin.serve("/q\(index)", content: content, behaviour: behaviour)
            manifest += "  - url: \(url)\n    dest: \(agent.output)/q\(index).bin\n"
        }
        try agent.scratch.write("manifests.d/10-queue.yaml", manifest)
        try await agent.start()
        #expect(
            await eventually {
                (try? agent.status())?.jobs.contains { $0.reason.hasPrefix("waiting for a connection") } == true
            }
        )
        #expect(
            await eventually(timeout: 60) { Self.mirrored(agent, 20) },
            "\(String(describing: try? agent.status()))"
        )
        let jobs = try agent.status().jobs
        #expect(jobs.allSatisfy { $0.attempts == 0 }, "\(jobs.filter { $0.attempts > 0 })")
        for (name, content) in contents { #expect(agent.scratch.read("out/" + name) == content) }
        #expect(origin.peakConnections == 1)
        #expect(agent.stop() == 0)
    }

    /// A manifest that is invalid when the agent starts runs its last good version, stored in an earlier run.
    @Test func anInvalidManifestKeepsItsLastGoodVersionAcrossARestart() async throws {
        let nginx = try NginxServer()
        let agent = try AgentUnderTest()
        let files = try await Self.mirrorTwo(agent, nginx)
        try await agent.start()
        #expect(await eventually { Self.mirrored(agent, 2) })
        #expect(agent.stop() == 0)
        let path = agent.manifests + "/10-kept1.yaml"
        let good = try String(contentsOfFile: path, encoding: .utf8)
        try (good + "not-a-key: 1\n").write(toFile: path, atomically: true, encoding: .utf8)
        try await agent.start()
        let status = try agent.status()
        let manifest = try #require(status.manifests.first { $0.id == "10-kept1" && $0.path == path })
        #expect(manifest.state == "invalid")
        #expect(manifest.runningLastGoodVersion)
        #expect(manifest.lastGoodVersionStoredAt != nil)
        #expect(status.jobs.count == 2)
        #expect(status.jobs.allSatisfy { $0.state == "up-to-date" }, "\(status.jobs)")
        for file in files { #expect(FileManager.default.fileExists(atPath: file)) }
        let table = try agent.barge(["status"]).standardOutput
        #expect(table.contains("its last good version, stored"), "\(table)")
        // Its stored version is its `prune: true` too: removing the file now removes what it mirrored.
        unlink(path)
        #expect(await eventually { (try? agent.status())?.jobs.count == 1 })
        #expect(!FileManager.default.fileExists(atPath: files[0]))
        #expect(FileManager.default.fileExists(atPath: files[1]))
        #expect(agent.stop() == 0)
    }
}
