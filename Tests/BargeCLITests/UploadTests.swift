import BargeCore
import BargeTestSupport
import Foundation
import Glibc
import Testing

/// Uploads by the real agent to real servers on 127.0.0.1: tuspyserver (tus 1.0, from PyPI) and nginx's WebDAV
/// module (PUT).
@Suite(
    "uploads",
    .serialized,
    .enabled(if: TusServer.isAvailable, "the tus server's venv is missing: run scripts/install-deps.sh"),
    .enabled(if: NginxServer.isAvailable, "nginx is not installed")
)
struct UploadTests {
    static let scripts = BargeCommand.packageRoot + "/scripts/servers"

    /// The job of `path`, once the agent has one.
    func job(_ agent: AgentUnderTest, _ path: String) -> JobStatus? {
        (try? agent.status())?.jobs.first { $0.destination == path }
    }

    @Test func tusResumesFromTheServersOffsetAfterAKillAndADroppedConnection() async throws {
        let tus = try TusServer(scripts: Self.scripts)
        let agent = try AgentUnderTest(extraConfig: "allowed-schemes: [http]")
        let chunk = 1 << 20
        let content = TestContent.bytes(count: 12 << 20, seed: 17)
        let path = agent.output + "/logs/app.log.gz"
        try FileManager.default.createDirectory(atPath: agent.output + "/logs", withIntermediateDirectories: true)
        try Data(content).write(to: URL(fileURLWithPath: path))
        try agent.scratch.write(
            "manifests.d/40-logs.yaml",
            """
            version: 1
            upload:
              - src: \(agent.output)/logs/*.log.gz
                url: \(tus.creationURL)
                protocol: tus
                chunk-size: 1MiB
                settle: 0s
                max-rate: 1MiB/s
                retry: {min-delay: 5s}
            """
        )
        try await agent.start()
        // Killed mid-upload: the next run asks the server where it stands and goes on from there.
        #expect(await eventually(timeout: 30) { (self.job(agent, path)?.bytes ?? 0) >= 3 << 20 })
        #expect(agent.stop(SIGKILL) == SIGKILL)
        let heldAtKill = tus.uploads().first?.bytes.count ?? 0
        #expect(heldAtKill >= 2 << 20, "the server held \(heldAtKill) bytes when the agent was killed")
        // The kill came mid-upload (a slow status poll could come after the end: the test would then prove nothing).
        try #require(heldAtKill < content.count, "the upload ended before the kill")
        try await agent.start()
        // The connection dropped mid-PATCH: the job retries and resumes from the server's offset again.
        #expect(await eventually(timeout: 30) { (self.job(agent, path)?.bytes ?? 0) >= 7 << 20 })
        tus.cutConnections()
        let heldAtCut = tus.uploads().first?.bytes.count ?? 0
        try #require(heldAtCut < content.count, "the upload ended before the cut")
        let done = await eventually(timeout: 60) { self.job(agent, path)?.state == "up-to-date" }
        #expect(
            done,
            "\(self.job(agent, path).map { "\($0.state): \($0.reason)" } ?? "no job")\n\(agent.log.suffix(3000))"
        )
        let uploads = tus.uploads()
        #expect(uploads.count == 1, "one upload, resumed, not a new one per run")
        let same = uploads.first?.bytes == content
        #expect(same, "the server's copy (\(uploads.first?.bytes.count ?? -1) bytes) is the file, byte for byte")
        // What reached the server beyond the file's size was sent again: at most one chunk in all (the first chunk
        // goes with the creation POST, the server offering creation-with-upload).
        // The server logs a request's body once it has answered: wait for the last one's line.
        _ = await eventually { tus.receivedBodyBytes() >= content.count }
        let sentAgain = tus.receivedBodyBytes() - content.count
        #expect(sentAgain >= 0 && sentAgain <= chunk, "sent again: \(sentAgain) bytes")
        let final = self.job(agent, path)
        #expect(final?.reason.hasPrefix("uploaded") == true, "\(final.map { "\($0.state): \($0.reason)" } ?? "no job")")
        #expect(agent.stop() == 0)
    }

    /// A PUT to a server of the IETF resumable-uploads draft (SwiftNIO's, interop version 6) becomes resumable:
    /// the server announces the upload's URL (104), and after a kill and after a dropped connection the next
    /// attempt asks it where it stands (HEAD) and sends only the rest (PATCH).
    @Test func aPutResumesAtAServerOfTheResumableUploadsDraft() async throws {
        let server = try ResumableUploadServer(scripts: Self.scripts)
        let agent = try AgentUnderTest(extraConfig: "allowed-schemes: [http]")
        let content = TestContent.bytes(count: 12 << 20, seed: 41)
        let path = agent.output + "/capture.pcap"
        try Data(content).write(to: URL(fileURLWithPath: path))
        try agent.scratch.write(
            "manifests.d/45-draft.yaml",
            """
            version: 1
            upload:
              - src: \(path)
                url: \(server.baseURL)/up/{name}
                protocol: put
                settle: 0s
                max-rate: 1MiB/s
                retry: {min-delay: 5s}
            """
        )
        try await agent.start()
        #expect(await eventually(timeout: 30) { (self.job(agent, path)?.bytes ?? 0) >= 3 << 20 })
        #expect(agent.stop(SIGKILL) == SIGKILL)
        try #require((server.stored("up/capture.pcap")?.count ?? 0) < content.count, "the upload ended before the kill")
        try await agent.start()
        // It goes on from the server's offset, not from the start.
        #expect(await eventually(timeout: 30) { self.job(agent, path)?.state == "transferring" })
        let resumedAt = self.job(agent, path)?.bytes ?? 0
        #expect(resumedAt >= 2 << 20, "resumed at \(resumedAt)")
        #expect(await eventually(timeout: 30) { (self.job(agent, path)?.bytes ?? 0) >= 7 << 20 })
        server.cutConnections()
        try #require((server.stored("up/capture.pcap")?.count ?? 0) < content.count, "the upload ended before the cut")
        let done = await eventually(timeout: 60) { self.job(agent, path)?.state == "up-to-date" }
        let final = self.job(agent, path)
        #expect(done, "\(final.map { "\($0.state): \($0.reason)" } ?? "no job")\n\(agent.log.suffix(3000))")
        let stored = server.stored("up/capture.pcap")
        let same = stored == content
        #expect(same, "the server's copy (\(stored?.count ?? -1) bytes) is the file")
        #expect(final?.reason.contains("(it had") == true, "the last run resumed: \(final?.reason ?? "")")
        #expect(agent.stop() == 0)
    }

    @Test func putUploadsThenDeletesTheSourceOnlyOnceTheServerHasIt() async throws {
        let nginx = try NginxServer.webDAV()
        let agent = try AgentUnderTest(extraConfig: "allowed-schemes: [http]")
        let content = TestContent.bytes(count: 3 << 20, seed: 23)
        let path = agent.output + "/capture one.pcap"
        try Data(content).write(to: URL(fileURLWithPath: path))
        try Data("moved\n".utf8).write(to: URL(fileURLWithPath: agent.output + "/moved.bin"))
        let kept = agent.output + "/kept.txt"
        try Data("first\n".utf8).write(to: URL(fileURLWithPath: kept))
        try agent.scratch.write(
            "manifests.d/50-put.yaml",
            """
            version: 1
            upload:
              - src: \(agent.output)/*.pcap
                url: \(nginx.baseURL)/dav/{hostname}/{name}
                after: delete
                settle: 0s
                max-rate: 512KiB/s
              - src: \(kept)
                url: \(nginx.baseURL)/dav/kept/{name}
                settle: 0s
              - src: \(agent.output)/moved.bin
                url: \(nginx.baseURL)/dav/moved/{name}
                settle: 0s
                after: {move-to: \(agent.output)/shipped}
            """
        )
        try await agent.start()
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, 255)
        let hostname = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let served = nginx.root + "/dav/" + hostname + "/capture one.pcap"
        // While the PUT runs the source is there; it goes only after the server answered.
        #expect(await eventually(timeout: 20) { (self.job(agent, path)?.bytes ?? 0) > 0 })
        #expect(FileManager.default.fileExists(atPath: path))
        #expect(await eventually(timeout: 60) { !FileManager.default.fileExists(atPath: path) }, "\(agent.log)")
        let onServer = FileManager.default.contents(atPath: served).map { [UInt8]($0) }
        let same = onServer == content
        #expect(same, "the server's copy (\(onServer?.count ?? -1) bytes) is the file")
        // A moved one goes aside once the server has it.
        #expect(
            await eventually(timeout: 20) {
                FileManager.default.fileExists(atPath: agent.output + "/shipped/moved.bin")
            }
        )
        #expect(!FileManager.default.fileExists(atPath: agent.output + "/moved.bin"))
        #expect(FileManager.default.contents(atPath: nginx.root + "/dav/moved/moved.bin") == Data("moved\n".utf8))
        // A kept file that changes is sent again.
        let keptOnServer = nginx.root + "/dav/kept/kept.txt"
        #expect(
            await eventually(timeout: 20) { FileManager.default.contents(atPath: keptOnServer) == Data("first\n".utf8) }
        )
        // Touched, not changed: compared by content, not sent again.
        #expect(await eventually(timeout: 20) { self.job(agent, kept)?.state == "up-to-date" })
        let touched = Date(timeIntervalSinceNow: -30)
        try FileManager.default.setAttributes([.modificationDate: touched], ofItemAtPath: kept)
        let compared = await eventually(timeout: 20) {
            self.job(agent, kept)?.reason.hasPrefix("unchanged since it was sent") == true
        }
        #expect(compared, "\(self.job(agent, kept).map(\.reason) ?? "no job")")
        #expect(nginx.served("/dav/kept/kept.txt").count == 1, "\(nginx.served("/dav/kept/kept.txt"))")
        try Data("second, longer\n".utf8).write(to: URL(fileURLWithPath: kept))
        #expect(
            await eventually(timeout: 20) {
                FileManager.default.contents(atPath: keptOnServer) == Data("second, longer\n".utf8)
            },
            "\(agent.log)"
        )
        #expect(agent.stop() == 0)
    }

    /// A background upload's connections use the congestion control the config names (TCP-LP, `lp`, by default; one
    /// the kernel lacks is skipped without a word). Checked with another algorithm than the system's default,
    /// read from the live socket with `ss`.
    @Test func backgroundUploadsUseTheLowPriorityCongestionControl() async throws {
        let available = try String(
            contentsOfFile: "/proc/sys/net/ipv4/tcp_available_congestion_control",
            encoding: .utf8
        )
        .split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        let system = try String(contentsOfFile: "/proc/sys/net/ipv4/tcp_congestion_control", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let chosen = try #require(available.first { $0 != system && !$0.isEmpty }, "one algorithm only: \(available)")
        let nginx = try NginxServer.webDAV()
        let agent = try AgentUnderTest(extraConfig: "allowed-schemes: [http]\nyield: {upload-congestion: \(chosen)}")
        let path = agent.output + "/big.bin"
        try Data(TestContent.bytes(count: 8 << 20, seed: 31)).write(to: URL(fileURLWithPath: path))
        try agent.scratch.write(
            "manifests.d/70-lp.yaml",
            """
            version: 1
            upload:
              - src: \(path)
                url: \(nginx.baseURL)/dav/big.bin
                priority: low
                settle: 0s
                max-rate: 1MiB/s
            """
        )
        try await agent.start()
        #expect(await eventually(timeout: 20) { self.job(agent, path)?.state == "transferring" })
        let sockets = try BargeCommand.run(executable: "/usr/bin/ss", ["-tin", "dst", "127.0.0.1:\(nginx.port)"])
            .standardOutput
        #expect(sockets.contains(" \(chosen) "), "\(chosen) expected on the upload's connection: \(sockets)")
        #expect(await eventually(timeout: 30) { self.job(agent, path)?.state == "up-to-date" })
        #expect(agent.stop() == 0)
    }

    /// A file cut short while it is sent is an error that says so, and the server is left without a copy (an
    /// upload is never completed short).
    @Test func aFileThatShrinksMidUploadIsAnErrorNotAShortUpload() async throws {
        let nginx = try NginxServer.webDAV()
        let agent = try AgentUnderTest(extraConfig: "allowed-schemes: [http]")
        let path = agent.output + "/capture.bin"
        try Data(TestContent.bytes(count: 4 << 20, seed: 51)).write(to: URL(fileURLWithPath: path))
        try agent.scratch.write(
            "manifests.d/80-shrink.yaml",
            """
            version: 1
            upload:
              - src: \(path)
                url: \(nginx.baseURL)/dav/capture.bin
                settle: 0s
                max-rate: 512KiB/s
            """
        )
        try await agent.start()
        #expect(await eventually(timeout: 20) { (self.job(agent, path)?.bytes ?? 0) >= 1 << 20 })
        #expect(truncate(path, 100_000) == 0)
        let failed = await eventually(timeout: 20) { self.job(agent, path)?.reason.contains("shrank") == true }
        #expect(failed, "\(self.job(agent, path).map { "\($0.state): \($0.reason)" } ?? "no job")")
        #expect(self.job(agent, path)?.state != "up-to-date")
        #expect(!FileManager.default.fileExists(atPath: nginx.root + "/dav/capture.bin"), "no short copy at the server")
        #expect(agent.stop() == 0)
    }

    @Test func aSymbolicLinkIsNeverFollowed() async throws {
        let nginx = try NginxServer.webDAV()
        let agent = try AgentUnderTest(extraConfig: "allowed-schemes: [http]")
        let secret = agent.scratch.path + "/secret.txt"  // outside the allowed root
        try Data("not for upload\n".utf8).write(to: URL(fileURLWithPath: secret))
        symlink(secret, agent.output + "/b.log")
        try Data("a\n".utf8).write(to: URL(fileURLWithPath: agent.output + "/a.log"))
        try agent.scratch.write(
            "manifests.d/60-links.yaml",
            """
            version: 1
            upload:
              - src: \(agent.output)/*.log
                url: \(nginx.baseURL)/dav/{name}
                settle: 0s
            """
        )
        try await agent.start()
        #expect(await eventually(timeout: 20) { self.job(agent, agent.output + "/a.log")?.state == "up-to-date" })
        #expect(self.job(agent, agent.output + "/b.log") == nil, "a link is not a file to upload")
        #expect(!FileManager.default.fileExists(atPath: nginx.root + "/dav/b.log"))
        #expect(agent.stop() == 0)
    }
}
