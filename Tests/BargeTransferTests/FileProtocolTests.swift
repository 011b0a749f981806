import BargeCore
import BargeTestSupport
import BargeTransfer
import Foundation
import Testing

/// sftp://, ftp(s):// and smb:// through libcurl, against a private sshd, vsftpd and smbd: verified downloads,
/// resume, host keys, TLS.
@Suite("Engine over sftp, ftp(s) and smb", .serialized)
struct FileProtocolTests {
    let scratch: ScratchDirectory

    init() throws { self.scratch = try ScratchDirectory() }

    /// Runs a rate-capped first transfer and cancels it after `bytes`, leaving a partial; returns its size. The
    /// cap (half of `bytes` a second) leaves ten seconds and more between the cancel and the end of the file:
    /// under the full suite on two cores this task once waited five for a thread.
    func leavePartial(_ request: TransferRequest, after bytes: UInt64) async -> Int {
        var slow = request
        slow.maxRate = .limited(ByteRate(bytesPerSecond: bytes / 2))
        let engine = TransferEngine()
        let handle = engine.start(slow)
        for await event in handle.events {
            if case .progress(let progress) = event, progress.received > bytes { engine.cancel(handle.id) }
            if case .finished(let outcome) = event, case .cancelled = outcome {
            } else if case .finished(let outcome) = event {
                Issue.record("the first run ended before it was cancelled: \(outcome)")
            }
        }
        let name = PathRules.fileName(of: request.destination)
        return self.scratch.read(".\(name).barge-partial")?.count ?? 0
    }

    /// Interrupts a first run of `request` part-way (leaving a partial), then runs it to its end, which must leave
    /// `content` at the destination; returns the partial's size, the finished transfer and its events.
    func interruptThenFinish(
        _ request: TransferRequest,
        content: [UInt8]
    ) async throws -> (kept: Int, done: CompletedTransfer, events: [TransferEvent]) {
        let kept = await self.leavePartial(request, after: 500_000)
        #expect(kept > 500_000 && kept < content.count)
        let (outcome, events) = await fetch(request)
        let done = try #require(outcome.completed, "\(outcome)")
        #expect(self.scratch.read(PathRules.fileName(of: request.destination)) == content)
        return (kept, done, events)
    }

    @Test(.enabled(if: SSHServer.isAvailable, "openssh-server is not installed"))
    func sftpDownloadsVerifiesAndResumesWithAKnownHostKey() async throws {
        let server = try SSHServer()
        let content = TestContent.bytes(count: 3_000_000, seed: 90)
        let url = try server.serve("model.bin", bytes: content)
        var request = TransferRequest(sources: [url], destination: self.scratch.path + "/model.bin")
        request.allowedSchemes = ["sftp"]
        request.sshKnownHosts = server.knownHosts
        request.credentials = .sshKeyFile(server.clientKey)
        request.sha256 = sha256Hex(content)
        let (kept, done, events) = try await self.interruptThenFinish(request, content: content)
        // It resumed where the partial ended: only the missing bytes came over the wire.
        #expect(events.contains { if case .started(_, let offset) = $0 { offset == UInt64(kept) } else { false } })
        #expect(done.transferred == UInt64(content.count - kept))
    }

    @Test(.enabled(if: SSHServer.isAvailable, "openssh-server is not installed"))
    func anSFTPServerWhoseHostKeyIsUnknownIsRefused() async throws {
        let server = try SSHServer()
        let url = try server.serve("x.bin", bytes: TestContent.bytes(count: 1000, seed: 91))
        let strangers = try self.scratch.write(
            "known_hosts",
            "[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOnlyAKeyOfSomeOtherHostxxxxxxxxxxxxxxxxxxx\n"
        )
        var request = TransferRequest(sources: [url], destination: self.scratch.path + "/x.bin")
        request.allowedSchemes = ["sftp"]
        request.sshKnownHosts = strangers
        request.credentials = .sshKeyFile(server.clientKey)
        let failure = try #require(await fetch(request).outcome.failure)
        #expect(failure.kind == .permanent, "\(failure)")
        #expect(!FileManager.default.fileExists(atPath: self.scratch.path + "/x.bin"))
        // Without any known-hosts file sftp is not attempted at all.
        request.sshKnownHosts = nil
        let refused = try #require(await fetch(request).outcome.failure)
        #expect(refused.reason.contains("needs a known-hosts file"), "\(refused)")
    }

    @Test(.enabled(if: FTPServer.isAvailable, "vsftpd is not installed"))
    func ftpDownloadsAndResumesWithOnlyTheMissingBytes() async throws {
        let server = try FTPServer()
        let content = TestContent.bytes(count: 3_000_000, seed: 92)
        let url = try server.serve("data.bin", bytes: content)
        var request = TransferRequest(sources: [url], destination: self.scratch.path + "/data.bin")
        request.allowedSchemes = ["ftp"]
        request.sha256 = sha256Hex(content)
        let (kept, done, _) = try await self.interruptThenFinish(request, content: content)
        #expect(done.transferred == UInt64(content.count - kept))
        // The server's own log: the second download sent exactly the missing bytes.
        let sent = server.downloads(of: "data.bin", count: 2)
        // The cancelled run's line and the resumed run's, in whichever order the two sessions logged them.
        #expect(sent.count == 2 && sent.contains(content.count - kept), "\(sent)")
    }

    @Test(.enabled(if: FTPServer.isAvailable, "vsftpd is not installed"))
    func ftpsVerifiesTheServerAndResumes() async throws {
        let server = try FTPServer(tls: true)
        let content = TestContent.bytes(count: 3_000_000, seed: 94)
        let url = try server.serve("secure.bin", bytes: content)
        #expect(url.hasPrefix("ftps://"))
        var request = TransferRequest(sources: [url], destination: self.scratch.path + "/secure.bin")
        request.allowedSchemes = ["ftps"]
        request.sha256 = sha256Hex(content)
        // Its certificate is not trusted without the CA file: refused for good, nothing written.
        let refused = try #require(await fetch(request).outcome.failure)
        #expect(refused.kind == .permanent, "\(refused)")
        #expect(refused.reason.hasPrefix("TLS verification of 127.0.0.1:\(server.port) failed"), "\(refused)")
        #expect(self.scratch.read("secure.bin") == nil)
        request.tls.caFile = server.certificateFile
        let (kept, done, _) = try await self.interruptThenFinish(request, content: content)
        #expect(done.transferred == UInt64(content.count - kept))
        let sent = server.downloads(of: "secure.bin", count: 2)
        // The cancelled run's line and the resumed run's, in whichever order the two sessions logged them.
        #expect(sent.count == 2 && sent.contains(content.count - kept), "\(sent)")
    }

    /// libcurl's SMB sends a file from its start whatever offset is asked: an interrupted smb:// download
    /// starts over instead of splicing, and the result is whole.
    @Test(.enabled(if: SMBServer.isAvailable, "smbd is not installed, or not root"))
    func smbDownloadsVerifiesAndStartsOverAfterAnInterruption() async throws {
        let server = try SMBServer()
        let content = TestContent.bytes(count: 3_000_000, seed: 95)
        let url = try server.serve("share.bin", bytes: content)
        var request = TransferRequest(sources: [url], destination: self.scratch.path + "/share.bin")
        #expect(await fetch(request).outcome.failure?.kind == .permanent)  // smb is not allowed by default
        request.allowedSchemes = ["smb"]
        request.sha256 = sha256Hex(content)
        let (_, done, events) = try await self.interruptThenFinish(request, content: content)
        #expect(done.transferred == UInt64(content.count))
        #expect(events.contains { if case .started(_, let offset) = $0 { offset == 0 } else { false } })
        // A missing file is permanent, and nothing is left behind.
        var missing = request
        missing.sources = [url + ".missing"]
        missing.destination = self.scratch.path + "/missing.bin"
        missing.sha256 = nil
        #expect(await fetch(missing).outcome.failure?.kind == .permanent)
        #expect(self.scratch.read("missing.bin") == nil && self.scratch.read(".missing.bin.barge-partial") == nil)
    }

    @Test(.enabled(if: FTPServer.isAvailable, "vsftpd is not installed"))
    func aSchemeOutsideTheAllowedOnesIsRefused() async throws {
        let server = try FTPServer()
        let url = try server.serve("y.bin", bytes: TestContent.bytes(count: 1000, seed: 93))
        let request = TransferRequest(sources: [url], destination: self.scratch.path + "/y.bin")  // https, http only
        let failure = try #require(await fetch(request).outcome.failure)
        #expect(failure.kind == .permanent, "\(failure)")
        #expect(server.downloads(of: "y.bin", count: 0).isEmpty)
    }
}
