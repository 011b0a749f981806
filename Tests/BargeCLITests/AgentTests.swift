import BargeCore
import BargeTestSupport
import Foundation
import Glibc
import Testing

/// A `barge agent` process started by a test, with its own config, manifests, state and destination root.
final class AgentUnderTest: @unchecked Sendable {
    let scratch: ScratchDirectory
    var process: Process?
    var configPath: String { self.scratch.path + "/barge.yaml" }
    var manifests: String { self.scratch.path + "/" + self.manifestsInScratch }
    private let manifestsInScratch: String
    var output: String { self.scratch.path + "/out" }
    var socket: String { self.scratch.path + "/run/barge.sock" }
    /// The agent's system bus (`DBUS_SYSTEM_BUS_ADDRESS`): by default none, so that no test reads the machine's own
    /// NetworkManager; a test's ``DesktopBus`` otherwise.
    var systemBus = "unix:path=/nonexistent/barge-test-system-bus"
    /// Arguments after `agent --config FILE` (`--log-level debug`).
    var arguments: [String] = []
    /// Variables added to the agent's environment.
    var environment: [String: String] = [:]

    /// - Parameters:
    ///   - rootIsScratch: the allowed root is the whole scratch directory (state and manifests included), not only
    ///     `out`.
    ///   - manifestsAt: the drop-in directory's path in the scratch directory.
    ///   - makingManifests: whether the drop-in directory is made.
    init(
        extraConfig: String = "",
        rootIsScratch: Bool = false,
        manifestsAt: String = "manifests.d",
        makingManifests: Bool = true
    ) throws {
        self.scratch = try ScratchDirectory()
        self.manifestsInScratch = manifestsAt
        if makingManifests {
            try FileManager.default.createDirectory(atPath: self.manifests, withIntermediateDirectories: true)
        }
        try FileManager.default.createDirectory(atPath: self.output, withIntermediateDirectories: true)
        try self.scratch.write(
            "barge.yaml",
            """
            manifests: \(self.manifests)
            state-dir: \(self.scratch.path)/state
            control-socket: \(self.socket)
            allowed-roots: [\(rootIsScratch ? self.scratch.path : self.output)]
            \(extraConfig)
            """
        )
    }

    /// Starts the agent (through `launcher`, a command that execs the rest of its arguments, when given) and waits
    /// for its control socket.
    func start(launcher: [String] = []) async throws {
        let process = Process()
        let command = launcher + [BargeCommand.executable, "agent", "--config", self.configPath] + self.arguments
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        var environment = ProcessInfo.processInfo.environment
        environment["DBUS_SYSTEM_BUS_ADDRESS"] = self.systemBus
        environment.merge(self.environment) { $1 }
        process.environment = environment
        let logPath = self.scratch.path + "/agent.log"
        if !FileManager.default.fileExists(atPath: logPath) {
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        self.process = process
        let ready = await eventually(timeout: 20) { (try? self.status()) != nil }
        #expect(ready, "the agent did not answer: \(self.log)")
    }

    var log: String { (try? String(contentsOfFile: self.scratch.path + "/agent.log", encoding: .utf8)) ?? "" }

    /// `barge status --json`, decoded.
    func status() throws -> StatusReport {
        let result = try BargeCommand.run(["status", "--json", "--config", self.configPath])
        guard result.status == 0 else { throw StatusError(message: result.standardError) }
        do {
            return try JSONDecoder().decode(StatusReport.self, from: Data(result.standardOutput.utf8))
        } catch {
            let output = result.standardOutput
            throw StatusError(
                message: "\(error): \(output.utf8.count) bytes: \(output.prefix(200)) … \(output.suffix(200)); "
                    + "stderr: \(result.standardError)"
            )
        }
    }

    func barge(_ arguments: [String]) throws -> BargeCommand.Result {
        try BargeCommand.run(arguments + ["--config", self.configPath])
    }

    /// Ends the agent with `signal` and waits for it; an agent still running 30 s later is killed (its status is
    /// then SIGKILL), so a hung stop fails its test instead of hanging the run.
    func stop(_ signal: Int32 = SIGTERM) -> Int32 {
        guard let process = self.process else { return 0 }
        kill(process.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        self.process = nil
        return process.terminationStatus
    }

    deinit { _ = self.stop(SIGKILL) }

    struct StatusError: Error { var message: String }
}

@Suite("barge agent", .serialized, .enabled(if: NginxServer.isAvailable, "nginx is not installed"))
struct AgentTests {
    @Test func mirrorsThroughTwentyKillsWithoutEverExposingAPartialFile() async throws {
        let nginx = try NginxServer(rateLimit: "12m")
        let agent = try AgentUnderTest()
        let interval = 8 << 20  // Supervisor.checkpointInterval
        var contents: [String: [UInt8]] = [:]
        var entries = ""
        for index in 0..<4 {
            let content = TestContent.bytes(count: 24 << 20, seed: UInt64(700 + index))
            let name = "file\(index).bin"
            contents[name] = content
            entries += """
                  - url: \(try nginx.serve(name, bytes: content))
                    dest: \(agent.output)/\(name)
                    sha256: \(TestContent.sha256(content))

                """
        }
        try agent.scratch.write("manifests.d/10-big.yaml", "version: 1\ndownload:\n" + entries)
        // Every destination that exists is whole and verified: never a partial file in place.
        func checkDestinations() {
            for (name, content) in contents {
                let path = agent.output + "/" + name
                guard let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int else {
                    continue
                }
                #expect(size == content.count, "\(name) held \(size) bytes")
            }
        }
        var kills = 0
        for _ in 0..<20 {
            try await agent.start()
            try await Task.sleep(for: .milliseconds(Int.random(in: 200...700)))
            #expect(agent.stop(SIGKILL) == SIGKILL)
            kills += 1
            checkDestinations()
        }
        try await agent.start()
        let done = await eventually(timeout: 60) {
            ((try? agent.status())?.jobs.filter { $0.state == "up-to-date" }.count ?? 0) == contents.count
        }
        #expect(done, "\(String(describing: try? agent.status()))")
        #expect(agent.stop() == 0)
        for (name, content) in contents {
            #expect(agent.scratch.read("out/\(name)") == content, "\(name) differs from the origin")
            // Each request after a kill asks only for what was not checkpointed: it fetches again at most one
            // checkpoint interval of what earlier requests had already served, plus what arrived while the last
            // checkpoint was being made durable and stored and what was in flight (nginx counts what sits in the
            // sockets' buffers as served): 4 MiB, a third of a second at the origin's rate.
            var servedUpTo = 0
            let requests = nginx.served("/" + name)
            let history = requests.map { "\($0.status) \($0.range.isEmpty ? "whole" : $0.range): \($0.bytes)" }
            for request in requests {
                let start = Int(request.range.dropFirst("bytes=".count).prefix { $0 != "-" }) ?? 0
                #expect(
                    servedUpTo - start <= interval + (4 << 20),
                    "\(name): refetched \(servedUpTo - start) bytes; requests: \(history)"
                )
                servedUpTo = max(servedUpTo, start + request.bytes)
            }
        }
        #expect(kills == 20)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: agent.output).filter { $0.hasPrefix(".") }
        #expect(leftovers.isEmpty, "partials left: \(leftovers)")
    }

    @Test func manifestChangesShowWithinASecond() async throws {
        let nginx = try NginxServer()
        let agent = try AgentUnderTest()
        let a = try nginx.serve("a.bin", bytes: TestContent.bytes(count: 1000, seed: 1))
        let b = try nginx.serve("b.bin", bytes: TestContent.bytes(count: 2000, seed: 2))
        try await agent.start()
        #expect(try agent.status().jobs.isEmpty)

        func manifest(_ entries: [(String, String)]) -> String {
            "version: 1\ndownload:\n" + entries.map { "  - url: \($0.0)\n    dest: \(agent.output)/\($0.1)\n" }.joined()
        }
        func within(_ seconds: Double = 1, _ condition: @escaping (StatusReport) -> Bool) async -> Bool {
            await eventually(timeout: seconds) { (try? agent.status()).map(condition) ?? false }
        }
        // Added (written in place, as an editor does).
        try agent.scratch.write("manifests.d/10-a.yaml", manifest([(a, "a.bin")]))
        #expect(await within { $0.jobs.map(\.destination) == [agent.output + "/a.bin"] })
        // Edited: a second entry.
        try agent.scratch.write("manifests.d/10-a.yaml", manifest([(a, "a.bin"), (b, "b.bin")]))
        #expect(await within { $0.jobs.count == 2 })
        #expect(await eventually(timeout: 10) { agent.scratch.read("out/b.bin")?.count == 2000 })
        // An invalid edit: shown as invalid, the last good version keeps its jobs.
        try agent.scratch.write("manifests.d/10-a.yaml", manifest([(a, "a.bin"), (b, "b.bin")]) + "  - url: [\n")
        #expect(await within { $0.manifests.first?.state == "invalid" && $0.jobs.count == 2 })
        let report = try agent.status()
        #expect(report.manifests.first?.runningLastGoodVersion == true)
        #expect(report.manifests.first?.errors.first?.contains("10-a.yaml:") == true)
        // The log says it too, once, with the manifest's name as metadata.
        let logged = agent.log.split(separator: "\n").filter { $0.contains(" error ") && $0.contains("10-a.yaml:") }
        #expect(logged.count == 1 && logged.allSatisfy { $0.hasSuffix("(its last good version runs) manifest=10-a") })
        // Renamed (a tool's write-then-rename): the jobs move to the new name.
        try agent.scratch.write("manifests.d/.tmp", manifest([(a, "a.bin"), (b, "b.bin")]))
        rename(agent.manifests + "/.tmp", agent.manifests + "/20-renamed.yaml")
        unlink(agent.manifests + "/10-a.yaml")
        #expect(
            await within {
                $0.manifests.map(\.id) == ["20-renamed"] && $0.jobs.allSatisfy { $0.manifest == "20-renamed" }
            }
        )
        // Deleted: the jobs go, the finished files stay. It was the last manifest: the emptied directory keeps its
        // jobs for its grace (it may be being replaced) first.
        unlink(agent.manifests + "/20-renamed.yaml")
        #expect(await within(15) { $0.jobs.isEmpty && $0.manifests.isEmpty })
        #expect(agent.scratch.read("out/a.bin")?.count == 1000)
        #expect(agent.stop() == 0)
    }

    /// Under systemd (`$JOURNAL_STREAM` naming its standard error) every line carries its syslog priority for the
    /// journal, and a job's events carry its metadata; `--log-level` sets the least severe level logged.
    @Test func logLinesCarryJournalPrioritiesMetadataAndTheChosenLevel() async throws {
        let nginx = try NginxServer()
        let agent = try AgentUnderTest()
        let good = try nginx.serve("good.bin", bytes: TestContent.bytes(count: 5000, seed: 3))
        let missing = good.replacingOccurrences(of: "good.bin", with: "missing.bin")
        try agent.scratch.write("agent.log", "")
        var status = stat()
        try #require(stat(agent.scratch.path + "/agent.log", &status) == 0)
        agent.environment = ["JOURNAL_STREAM": "\(status.st_dev):\(status.st_ino)"]
        agent.arguments = ["--log-level", "debug"]
        try agent.scratch.write(
            "manifests.d/10-logs.yaml",
            "version: 1\ndownload:\n  - url: \(good)\n    dest: \(agent.output)/good.bin\n"
                + "  - url: \(missing)\n    dest: \(agent.output)/missing.bin\n"
        )
        try await agent.start()
        let ended = await eventually(timeout: 20) {
            let states = ((try? agent.status())?.jobs ?? []).map(\.state).sorted()
            return states == ["error", "up-to-date"]
        }
        try #require(ended, "\(agent.log)")
        #expect(agent.stop() == 0)
        let lines = agent.log.split(separator: "\n").map(String.init)
        let host = "127.0.0.1:\(nginx.port)"
        #expect(lines.allSatisfy { $0.hasPrefix("<") }, "\(lines)")
        #expect(
            lines.contains {
                $0.hasPrefix("<6>downloaded \(agent.output)/good.bin") && $0.contains(" host=\(host) ")
                    && $0.contains(" job=") && $0.contains(" manifest=10-logs")
            },
            "\(lines)"
        )
        #expect(
            lines.contains {
                $0.hasPrefix("<3>\(agent.output)/missing.bin: not found: http://\(host)/… (HTTP 404)")
                    && $0.contains(" manifest=10-logs") && !$0.contains("missing.bin (HTTP")
            },
            "\(lines)"
        )
        #expect(lines.contains { $0.hasPrefix("<7>") }, "debug lines at --log-level debug: \(lines)")

        // At `warning`, and without the journal: a time stamp leads, a transient failure is written, and no info or
        // debug line is.
        let before = agent.log.utf8.count
        agent.environment = [:]
        agent.arguments = ["--log-level", "warning"]
        try agent.scratch.write(
            "manifests.d/20-refused.yaml",
            "version: 1\ndownload:\n  - url: http://127.0.0.1:1/refused.bin\n    dest: \(agent.output)/refused.bin\n"
        )
        try await agent.start()
        let warned = await eventually {
            (String(agent.log.utf8.dropFirst(before)) ?? "").contains("/refused.bin: retry in")
        }
        #expect(agent.stop() == 0)
        let later = (String(agent.log.utf8.dropFirst(before)) ?? "").split(separator: "\n")
        #expect(warned, "\(later)")
        #expect(
            later.contains {
                $0.contains(" warning \(agent.output)/refused.bin: retry in") && $0.contains("Z warning ")
            },
            "\(later)"
        )
        #expect(!later.contains { $0.contains(" info ") || $0.contains(" debug ") || $0.hasPrefix("<") }, "\(later)")
        #expect(try agent.barge(["agent", "--log-level", "loud"]).status != 0)
    }

    /// The service group: SIGHUP reaches the supervisor (which reloads) and leaves every part running; SIGTERM shuts
    /// the parts down in order, the supervisor last, and the agent exits 0.
    @Test func sighupReloadsAndSigtermStopsThePartsInOrder() async throws {
        let agent = try AgentUnderTest()
        agent.arguments = ["--log-level", "debug"]
        try await agent.start()
        let pid = try #require(agent.process?.processIdentifier)
        kill(pid, SIGHUP)
        let reloaded = await eventually { agent.log.contains("SIGHUP: reloading the manifests") }
        #expect(reloaded, "\(agent.log)")
        #expect((try? agent.status()) != nil, "the agent answers after SIGHUP")
        #expect(agent.stop(SIGTERM) == 0)
        let finished = agent.log.split(separator: "\n").compactMap { line -> String? in
            guard line.contains("Service finished") else { return nil }
            return line.components(separatedBy: "sl-service=").last.map { $0.trimmingCharacters(in: ["\""]) }
        }
        #expect(finished == ["control socket", "drop-in watcher", "network monitor", "supervisor"], "\(agent.log)")
    }

    @Test func commandsSuspendResumeRetryAndCancel() async throws {
        let nginx = try NginxServer(rateLimit: "200k")
        let agent = try AgentUnderTest()
        let url = try nginx.serve("slow.bin", bytes: TestContent.bytes(count: 4 << 20, seed: 5))
        try agent.scratch.write(
            "manifests.d/10-slow.yaml",
            "version: 1\ndownload:\n  - url: \(url)\n    dest: \(agent.output)/slow.bin\n"
        )
        try await agent.start()
        #expect(await eventually { (try? agent.status())?.jobs.first?.state == "transferring" })
        let id = try #require(try agent.status().jobs.first?.id)
        #expect(try agent.barge(["suspend", String(id)]).status == 0)
        var job = try #require(try agent.status().jobs.first)
        #expect(job.state == "suspended" && job.reason == "suspended by user")
        // The bytes stopped: nginx logs the request once its connection is gone, short of the whole file.
        let cut = nginx.served("/slow.bin", count: 1)
        #expect(cut.count == 1 && cut[0].bytes < 4 << 20, "\(cut)")
        #expect(try agent.barge(["resume", "--manifest", "10-slow"]).status == 0)
        #expect(await eventually { (try? agent.status())?.jobs.first?.state == "transferring" })
        #expect(try agent.barge(["cancel", String(id)]).status == 0)
        job = try #require(try agent.status().jobs.first)
        #expect(job.state == "cancelled" && job.reason == "cancelled by user")
        #expect(
            await eventually { (try? FileManager.default.contentsOfDirectory(atPath: agent.output))?.isEmpty == true }
        )
        #expect(try agent.barge(["retry", String(id)]).status == 0)
        #expect(await eventually { (try? agent.status())?.jobs.first?.state == "transferring" })
        let unknown = try agent.barge(["suspend", "999"])
        #expect(unknown.status == 1 && unknown.standardError.contains("no such job"))
        #expect(agent.stop() == 0)
        // A stopped agent is reported with how to start one.
        let missing = try agent.barge(["status"])
        #expect(missing.status == 1)
        #expect(missing.standardError.contains("Is the agent running? Start it with `barge agent --config"))
    }

    /// A status of more jobs than one page is streamed in pages and still one JSON document, every job once.
    @Test func aLargeStatusComesInPages() async throws {
        let agent = try AgentUnderTest(extraConfig: "allowed-schemes: [file]")
        let count = 2_500
        var manifest = "version: 1\ndownload:\n"
        for index in 0..<count {
            manifest += "  - url: file://\(agent.scratch.path)/missing/\(index)\n    dest: \(agent.output)/\(index)\n"
        }
        try agent.scratch.write("manifests.d/10-many.yaml", manifest)
        try await agent.start()
        // Asked once the startup burst (2,500 attempts, each failing) is over, so that no request waits behind it.
        let settled = await eventually(timeout: 60) {
            (try? agent.status())?.jobs.allSatisfy { ["error", "transient-error"].contains($0.state) } == true
        }
        #expect(settled, "\(agent.log.suffix(2000))")
        let status = try agent.status()
        #expect(status.jobs.count == count)
        #expect(Set(status.jobs.map(\.id)).count == count)
        #expect(status.jobs.map(\.id) == status.jobs.map(\.id).sorted())
        #expect(status.manifests.map(\.jobs) == [count])
        // An HTTP/1.0 client (no chunked framing) gets the same document, ended by the connection's close.
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        curl.arguments = [
            "-s", "--http1.0", "--max-time", "30", "--unix-socket", agent.socket, "http://barge/v1/status",
        ]
        let output = Pipe()
        curl.standardOutput = output
        try curl.run()
        let body = output.fileHandleForReading.readDataToEndOfFile()
        curl.waitUntilExit()
        #expect(curl.terminationStatus == 0)
        #expect(try JSONDecoder().decode(StatusReport.self, from: body).jobs.count == count)
        let one = try agent.barge(["status", "--json", String(status.jobs[1_234].id)])
        try #require(one.status == 0, "\(one.standardError)")
        let single = try JSONDecoder().decode(StatusReport.self, from: Data(one.standardOutput.utf8))
        #expect(single.jobs.map(\.destination) == [status.jobs[1_234].destination])
        #expect(agent.stop() == 0)
    }

    @Test func stateSurvivesARestart() async throws {
        let nginx = try NginxServer(rateLimit: "200k")
        let agent = try AgentUnderTest()
        let slow = try nginx.serve("s.bin", bytes: TestContent.bytes(count: 4 << 20, seed: 21))
        let quick = try nginx.serve("q.bin", bytes: TestContent.bytes(count: 1000, seed: 22))
        try agent.scratch.write(
            "manifests.d/10-r.yaml",
            "version: 1\ndownload:\n  - url: \(slow)\n    dest: \(agent.output)/s.bin\n"
                + "  - url: \(quick)\n    dest: \(agent.output)/q.bin\n"
        )
        try await agent.start()
        #expect(await eventually { (try? agent.status())?.jobs.contains { $0.state == "up-to-date" } == true })
        let jobs = try agent.status().jobs
        let slowJob = try #require(jobs.first { $0.destination.hasSuffix("/s.bin") })
        #expect(try agent.barge(["cancel", String(slowJob.id)]).status == 0)
        #expect(agent.stop() == 0)
        try await agent.start()
        let after = try agent.status().jobs
        // A cancelled job stays cancelled, a mirrored one stays mirrored (and is not fetched again), ids are kept.
        #expect(after.first { $0.id == slowJob.id }?.state == "cancelled")
        let quickJob = try #require(after.first { $0.destination.hasSuffix("/q.bin") })
        #expect(quickJob.state == "up-to-date")
        #expect(nginx.served("/q.bin").count == 1)
        // Its validators survived too (it has no sha256: they are all the store has of it): a check now is a
        // conditional request, answered 304 with no body.
        #expect(try agent.barge(["retry", String(quickJob.id)]).status == 0)
        let checks = nginx.served("/q.bin", count: 2)
        #expect(checks.count == 2 && checks.last?.status == 304, "\(checks)")
        #expect(agent.stop() == 0)
    }

    @Test func pruneRemovesMirroredFilesAndAnUnknownOwnerIsInvalid() async throws {
        let nginx = try NginxServer()
        let agent = try AgentUnderTest()
        let a = try nginx.serve("p1.bin", bytes: TestContent.bytes(count: 1000, seed: 31))
        let b = try nginx.serve("p2.bin", bytes: TestContent.bytes(count: 1000, seed: 32))
        try agent.scratch.write(
            "manifests.d/10-kept.yaml",
            "version: 1\ndownload:\n  - url: \(a)\n    dest: \(agent.output)/kept.bin\n"
        )
        try agent.scratch.write(
            "manifests.d/20-pruned.yaml",
            "version: 1\nprune: true\ndownload:\n  - url: \(b)\n    dest: \(agent.output)/pruned.bin\n"
                + "  - url: \(b)\n    dest: \(agent.output)/owned.bin\n    owner: no-such-user-here\n"
        )
        try await agent.start()
        #expect(await eventually { (try? agent.status())?.jobs.filter { $0.state == "up-to-date" }.count == 2 })
        let owned = try #require(try agent.status().jobs.first { $0.destination.hasSuffix("/owned.bin") })
        #expect(owned.state == "invalid")
        #expect(owned.reason == "owner 'no-such-user-here' does not exist on this machine")
        #expect(!FileManager.default.fileExists(atPath: agent.output + "/owned.bin"))
        unlink(agent.manifests + "/10-kept.yaml")
        unlink(agent.manifests + "/20-pruned.yaml")
        // An emptied directory keeps its manifests' jobs for a while (it may be being replaced), then lets go.
        #expect(
            await eventually {
                (try? agent.status())?.agent.manifestDirectoryProblem?.contains("holds no manifest") == true
            }
        )
        #expect(try agent.status().jobs.count == 3)
        #expect(await eventually(timeout: 20) { (try? agent.status())?.jobs.isEmpty == true })
        #expect(FileManager.default.fileExists(atPath: agent.output + "/kept.bin"))
        #expect(!FileManager.default.fileExists(atPath: agent.output + "/pruned.bin"))
        #expect(agent.stop() == 0)
    }

    @Test func getBecomesAnAgentJobAndWaitFollowsIt() async throws {
        let nginx = try NginxServer()
        let agent = try AgentUnderTest()
        let content = TestContent.bytes(count: 50_000, seed: 11)
        let url = try nginx.serve("g.bin", bytes: content)
        try await agent.start()
        let result = try agent.barge([
            "get", "--wait", "--sha256", TestContent.sha256(content), url, agent.output + "/g.bin",
        ])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(agent.scratch.read("out/g.bin") == content)
        let job = try #require(try agent.status().jobs.first)
        #expect(job.manifest == nil && job.state == "complete" && job.priority == "foreground")
        let refused = try agent.barge(["get", url, "/var/tmp/elsewhere.bin"])
        #expect(refused.status == 1)
        #expect(refused.standardError.contains("outside the allowed roots"), "\(refused.standardError)")
        #expect(agent.stop() == 0)
    }

    /// The agent raises its soft limit on open files to the hard one (systemd starts services with 1,024): files
    /// gathering for a group commit stay open. Its hooks get the limit it started with.
    @Test(
        .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/prlimit"), "prlimit is not installed"),
        .enabled(
            if: (512...1 << 30).contains(Self.hardDescriptorLimit),
            "the hard limit on open files is too low or unlimited"
        )
    )
    func theAgentRaisesItsLimitOnOpenFilesButNotItsHooks() async throws {
        let hard = Self.hardDescriptorLimit
        let nginx = try NginxServer()
        let url = try nginx.serve("l.bin", bytes: TestContent.bytes(count: 3000, seed: 10))
        let (hooks, hook, record) = try Self.recordingHook("ulimit -Sn")
        let agent = try AgentUnderTest()
        try Self.writeManifest("10-l", of: agent, url: url, destination: "l.bin", hook: hook)
        try await agent.start(launcher: ["/usr/bin/prlimit", "--nofile=256:\(hard)", "--"])
        let pid = try #require(agent.process?.processIdentifier)
        let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
        let line = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") }
        let numbers = line?.split(separator: " ").compactMap { Int($0) }
        #expect(numbers == [hard, hard], "\(String(describing: line))")
        #expect(await eventually { FileManager.default.fileExists(atPath: record) })
        let hookLimit = (try? String(contentsOfFile: record, encoding: .utf8)) ?? ""
        #expect(hookLimit.trimmingCharacters(in: .whitespacesAndNewlines) == "256")
        #expect(agent.stop() == 0)
        withExtendedLifetime(hooks) {}
    }

    /// This process's hard limit on open files (`Int.max` when unlimited).
    static var hardDescriptorLimit: Int {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        return Int(clamping: limit.rlim_max)
    }

    /// A hook script, in a scratch directory of its own, that writes what `command` prints to a record file (whole,
    /// once done): the directory, the script's path and the record's.
    private static func recordingHook(_ command: String) throws -> (ScratchDirectory, hook: String, record: String) {
        let scratch = try ScratchDirectory()
        let record = scratch.path + "/record"
        let hook = try scratch.write(
            "hook.sh",
            "#!/bin/sh\n\(command) > \(record).tmp && mv \(record).tmp \(record)\n",
            mode: 0o755
        )
        return (scratch, hook, record)
    }

    /// A manifest `name` of the agent's with one download into its output directory and an on-complete hook.
    private static func writeManifest(
        _ name: String,
        of agent: AgentUnderTest,
        url: String,
        destination: String,
        hook: String
    ) throws {
        try agent.scratch.write(
            "manifests.d/\(name).yaml",
            "version: 1\nhooks: {on-complete: [\(hook)]}\n"
                + "download:\n  - url: \(url)\n    dest: \(agent.output)/\(destination)\n"
        )
    }

    @Test func hooksGetTheJobsFactsAndAHangingHookDoesNotBlock() async throws {
        let nginx = try NginxServer()
        let url = try nginx.serve("h.bin", bytes: TestContent.bytes(count: 3000, seed: 9))
        let (hooks, hook, record) = try Self.recordingHook("env | grep ^BARGE_ | sort")
        let hang = try hooks.write("hang.sh", "#!/bin/sh\nsleep 600\n", mode: 0o755)
        let agent = try AgentUnderTest(extraConfig: "hooks: {on-complete: [\(hang)]}")
        try Self.writeManifest("10-h", of: agent, url: url, destination: "h.bin", hook: hook)
        try await agent.start()
        #expect(await eventually { FileManager.default.fileExists(atPath: record) })
        let facts = (try? String(contentsOfFile: record, encoding: .utf8)) ?? ""
        #expect(facts.contains("BARGE_DEST=\(agent.output)/h.bin"))
        #expect(facts.contains("BARGE_MANIFEST=10-h"))
        #expect(facts.contains("BARGE_STATE=up-to-date"))
        #expect(facts.contains("BARGE_URL=\(url)"))
        #expect(facts.contains("BARGE_BYTES=3000"))
        #expect(facts.contains("BARGE_JOB=1"))
        // The agent still answers while the other hook hangs.
        #expect(try agent.status().jobs.first?.state == "up-to-date")
        #expect(agent.stop() == 0)
        withExtendedLifetime(hooks) {}
    }
}
