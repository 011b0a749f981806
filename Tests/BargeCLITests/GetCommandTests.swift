import BargeTestSupport
import Foundation
import Glibc
import Testing

/// `barge get` as a user runs it: progress, Ctrl-C keeping a resumable partial, a second run resuming.
@Suite("barge get", .serialized, .enabled(if: NginxServer.isAvailable, "nginx is not installed"))
struct GetCommandTests {
    let nginx: NginxServer
    let scratch: ScratchDirectory

    init() throws {
        self.nginx = try NginxServer()
        self.scratch = try ScratchDirectory()
    }

    @Test func ctrlCKeepsAPartialAndTheNextRunResumes() async throws {
        // 8 s at the cap: the partial passes 300 kB after about 1 s, leaving a wide window to interrupt it in.
        let content = TestContent.bytes(count: 8_000_000, seed: 60)
        let url = try self.nginx.serve("big.bin", bytes: content)
        let destination = self.scratch.path + "/big.bin"
        let partialPath = self.scratch.path + "/.big.bin.barge-partial"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BargeCommand.executable)
        process.arguments = ["get", "--max-rate", "1MiB/s", url, destination]
        process.standardError = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let started = await eventually(timeout: 15) {
            ((try? FileManager.default.attributesOfItem(atPath: partialPath))?[.size] as? Int ?? 0) > 300_000
        }
        #expect(started)
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        #expect(process.terminationStatus == 130)
        let kept = (try? FileManager.default.attributesOfItem(atPath: partialPath))?[.size] as? Int ?? 0
        #expect(kept > 300_000 && kept < content.count)
        #expect(!FileManager.default.fileExists(atPath: destination))

        let result = try BargeCommand.run(["get", url, destination])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.standardOutput.contains("sha256 \(TestContent.sha256(content))"))
        #expect(self.scratch.read("big.bin") == content)
        let last = try #require(self.nginx.served("/big.bin", count: 2).last)
        #expect(last.status == 206)
        #expect(last.range == "bytes=\(kept)-")
        #expect(last.bytes == content.count - kept)
    }

    /// Retries count attempts without progress: every connection dropped after 1 MiB, 3 retries allowed, and the
    /// 8 MiB file still arrives, each byte served once.
    @Test func aServerDroppingEveryConnectionStillDeliversTheFile() throws {
        let (origin, content, url) = try FaultOrigin.droppingEveryMiB(seed: 64)
        let result = try BargeCommand.run([
            "get", "--foreground", "--retries", "3", url, self.scratch.path + "/dropping.bin",
        ])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(self.scratch.read("dropping.bin") == content)
        let served = origin.served("/dropping")
        #expect(served.count == 8)
        #expect(served.map(\.bodyBytes).reduce(0, +) == content.count)
    }

    @Test func aWrongHashFailsWithTheReason() throws {
        let url = try self.nginx.serve("small.bin", bytes: TestContent.bytes(count: 10_000, seed: 61))
        let result = try BargeCommand.run([
            "get", "--sha256", String(repeating: "0", count: 64), url, self.scratch.path + "/small.bin",
        ])
        #expect(result.status == 1)
        #expect(result.standardError.contains("barge: hash mismatch: expected 00000000…"))
        #expect(!FileManager.default.fileExists(atPath: self.scratch.path + "/small.bin"))
    }

    @Test func aMissingFileFailsAtOnce() throws {
        let result = try BargeCommand.run(["get", self.nginx.baseURL + "/nothing.bin", self.scratch.path + "/n.bin"])
        #expect(result.status == 1)
        #expect(result.standardError.contains("not found: \(self.nginx.baseURL)/nothing.bin (HTTP 404)"))
    }

    @Test func aDirectoryDestinationTakesTheURLsFileName() throws {
        let content = TestContent.bytes(count: 1000, seed: 62)
        let url = try self.nginx.serve("named.bin", bytes: content)
        let result = try BargeCommand.run(["get", url, self.scratch.path])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(self.scratch.read("named.bin") == content)
    }

    @Test func aSchemeTheConfigDoesNotAllowIsAUsageError() throws {
        let result = try BargeCommand.run(["get", "ftp://127.0.0.1/x", self.scratch.path + "/x"])
        #expect(result.status == 2)
        #expect(result.standardError.contains("scheme 'ftp' is not allowed"))
    }
}

extension FaultOrigin {
    /// An origin serving 8 MiB at `/dropping` that drops every connection after 1 MiB of it.
    static func droppingEveryMiB(seed: UInt64) throws -> (FaultOrigin, [UInt8], String) {
        let origin = try FaultOrigin()
        let content = TestContent.bytes(count: 8 << 20, seed: seed)
        var behaviour = FaultOrigin.Behaviour()
        behaviour.dropAfter = 1 << 20
        behaviour.faultyRequests = 1000
        return (origin, content, origin.serve("/dropping", content: content, behaviour: behaviour))
    }
}
