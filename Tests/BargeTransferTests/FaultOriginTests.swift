import BargeCore
import BargeTestSupport
import Foundation
import Testing

@testable import BargeTransfer

/// The engine against a hostile origin: every fault is provoked, and what the origin served is checked.
@Suite("Engine against a faulty origin", .serialized)
struct FaultOriginTests {
    let origin: FaultOrigin
    let scratch: ScratchDirectory

    init() throws {
        self.origin = try FaultOrigin()
        self.scratch = try ScratchDirectory()
    }

    func request(_ url: String, _ name: String) -> TransferRequest {
        TransferRequest(sources: [url], destination: self.scratch.path + "/" + name)
    }

    @Test func aDroppedConnectionResumesWithOnlyTheMissingBytes() async throws {
        let content = TestContent.bytes(count: 1_000_000, seed: 30)
        var behaviour = FaultOrigin.Behaviour()
        behaviour.dropAfter = 300_000
        let url = self.origin.serve("/drop", content: content, behaviour: behaviour)
        let first = await fetch(self.request(url, "drop.bin"))
        let failure = try #require(first.outcome.failure)
        #expect(failure.kind == .transient)
        #expect(failure.reason.contains("closed before the end of the file"), "\(failure)")
        #expect(self.scratch.read(".drop.bin.barge-partial")?.count == 300_000)
        // The blocks of the whole file were reserved when it was created (the size stays what arrived).
        var info = stat()
        #expect(stat(self.scratch.path + "/.drop.bin.barge-partial", &info) == 0)
        #expect(info.st_size == 300_000 && Int(info.st_blocks) * 512 >= 1_000_000, "\(info.st_blocks) blocks")
        let second = await fetch(self.request(url, "drop.bin"))
        #expect(second.outcome.completed?.transferred == 700_000, "\(second.outcome)")
        #expect(self.scratch.read("drop.bin") == content)
        let served = self.origin.served("/drop")
        #expect(served.map(\.bodyBytes) == [300_000, 700_000])
        #expect(served[1].range == "bytes=300000-")
        #expect(served[1].ifRange == "\"v1\"")
    }

    @Test func aStalledConnectionIsDetected() async throws {
        var behaviour = FaultOrigin.Behaviour()
        behaviour.stallAfter = 10_000
        let url = self.origin.serve(
            "/stall",
            content: TestContent.bytes(count: 100_000, seed: 31),
            behaviour: behaviour
        )
        var request = self.request(url, "stall.bin")
        request.stallTimeout = 1
        let (outcome, _) = await fetch(request)
        #expect(
            outcome.failure == TransferFailure(.transient, "stalled: no data from 127.0.0.1:\(self.origin.port) for 1s")
        )
        #expect(self.scratch.read(".stall.bin.barge-partial")?.count == 10_000)
    }

    @Test func aServerThatIgnoresRangesRestartsCleanly() async throws {
        let content = TestContent.bytes(count: 400_000, seed: 32)
        var behaviour = FaultOrigin.Behaviour()
        behaviour.ignoreRange = true
        let url = self.origin.serve("/norange", content: content, behaviour: behaviour)
        try self.scratch.write(".norange.bin.barge-partial", bytes: Array(content[0..<100_000]), mode: 0o600)
        var request = self.request(url, "norange.bin")
        request.partialValidators = Validators(etag: "\"v1\"")
        request.sha256 = sha256Hex(content)
        let (outcome, _) = await fetch(request)
        #expect(outcome.completed?.transferred == 400_000, "\(outcome)")
        #expect(self.scratch.read("norange.bin") == content)
        #expect(self.origin.served("/norange").map(\.status) == [200])
    }

    @Test func aChangedETagMidDownloadRestartsWithTheNewVersion() async throws {
        let old = TestContent.bytes(count: 500_000, seed: 33)
        let new = TestContent.bytes(count: 600_000, seed: 34)
        var behaviour = FaultOrigin.Behaviour()
        behaviour.dropAfter = 200_000
        behaviour.changesAfterFirstRequest = (new, "\"v2\"")
        let url = self.origin.serve("/changes", content: old, etag: "\"v1\"", behaviour: behaviour)
        let first = await fetch(self.request(url, "changes.bin"))
        #expect(first.outcome.failure?.kind == .transient)
        let (outcome, _) = await fetch(self.request(url, "changes.bin"))
        #expect(outcome.completed?.validators.etag == "\"v2\"", "\(outcome)")
        #expect(self.scratch.read("changes.bin") == new)
        let served = self.origin.served("/changes")
        #expect(served.last?.ifRange == "\"v1\"")
        #expect(served.last?.status == 200)
    }

    @Test func aWrongContentLengthIsATransientFailure() async throws {
        var behaviour = FaultOrigin.Behaviour()
        behaviour.declaredLength = 150_000
        let url = self.origin.serve(
            "/short",
            content: TestContent.bytes(count: 100_000, seed: 35),
            behaviour: behaviour
        )
        let (outcome, _) = await fetch(self.request(url, "short.bin"))
        #expect(outcome.failure?.kind == .transient, "\(outcome)")
        #expect(self.scratch.read("short.bin") == nil)
    }

    @Test(arguments: [
        (503, "7", "is unavailable (HTTP 503)"), (429, "3", "is rate-limiting us (HTTP 429 Too Many Requests)"),
    ])
    func busyServersAreTransientWithRetryAfter(status: Int, retryAfter: String, reason: String) async throws {
        var behaviour = FaultOrigin.Behaviour()
        behaviour.status = status
        behaviour.retryAfter = retryAfter
        let path = "/busy\(status)"
        let url = self.origin.serve(path, content: TestContent.bytes(count: 1000, seed: 36), behaviour: behaviour)
        let (outcome, _) = await fetch(self.request(url, "busy\(status).bin"))
        let failure = try #require(outcome.failure)
        #expect(
            failure
                == TransferFailure(
                    .transient,
                    "127.0.0.1:\(self.origin.port) \(reason)",
                    retryAfter: Double(retryAfter)
                )
        )
        #expect(listing(self.scratch.path).isEmpty, "an error page never becomes a partial")
        #expect(await fetch(self.request(url, "busy\(status).bin")).outcome.completed != nil)
    }

    @Test func aRetryAfterDateIsUnderstood() async throws {
        var behaviour = FaultOrigin.Behaviour()
        behaviour.status = 503
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        behaviour.retryAfter = formatter.string(from: Date().addingTimeInterval(120))
        let url = self.origin.serve("/busydate", content: [1], behaviour: behaviour)
        let retryAfter = try #require(await fetch(self.request(url, "busydate.bin")).outcome.failure?.retryAfter)
        #expect(retryAfter > 100 && retryAfter <= 120)
    }

    @Test func aRedirectLoopIsPermanent() async throws {
        var behaviour = FaultOrigin.Behaviour()
        behaviour.redirectTo = "/loop"
        behaviour.faultyRequests = 1000
        let url = self.origin.serve("/loop", content: [1, 2, 3], behaviour: behaviour)
        let (outcome, _) = await fetch(self.request(url, "loop.bin"))
        #expect(outcome.failure?.kind == .permanent)
        #expect(outcome.failure?.reason.hasPrefix("too many redirects from \(url)") == true, "\(outcome)")
    }

    @Test func aRedirectIsFollowed() async throws {
        let content = TestContent.bytes(count: 5000, seed: 37)
        let target = self.origin.serve("/target", content: content)
        var behaviour = FaultOrigin.Behaviour()
        behaviour.redirectTo = target
        let url = self.origin.serve("/moved", content: [], behaviour: behaviour)
        let (outcome, _) = await fetch(self.request(url, "moved.bin"))
        #expect(outcome.completed?.url == target)
        #expect(self.scratch.read("moved.bin") == content)
    }

    /// A hostile origin cannot turn a download into a read of a local file, whatever the entry's schemes allow.
    @Test func aRedirectToAFileURLIsRefusedEvenWithFileAllowed() async throws {
        for target in ["file:///etc/passwd", "ftp://127.0.0.1/x", "sftp://127.0.0.1/x", "smb://127.0.0.1/x/y"] {
            var behaviour = FaultOrigin.Behaviour()
            behaviour.redirectTo = target
            let path = "/to-\(RedirectPolicy.scheme(of: target))"
            let url = self.origin.serve(path, content: [1, 2, 3], behaviour: behaviour)
            var request = self.request(url, "passwd-\(RedirectPolicy.scheme(of: target))")
            request.allowedSchemes = AgentConfig.knownSchemes
            let (outcome, _) = await fetch(request)
            let failure = try #require(outcome.failure, "\(target): \(outcome)")
            #expect(failure.kind == .permanent)
            let scheme = RedirectPolicy.scheme(of: target)
            #expect(failure.reason.hasPrefix("refused a redirect to \(scheme)://"), "\(failure)")
            #expect(!FileManager.default.fileExists(atPath: request.destination))
        }
    }

    /// The entry's headers go to its own origin, through a redirect there too, and never to another origin.
    @Test func headersStayWithTheirOrigin() async throws {
        let other = try FaultOrigin()
        let content = TestContent.bytes(count: 3000, seed: 39)
        let elsewhere = other.serve("/elsewhere", content: content)
        let home = self.origin.serve("/home-target", content: content)
        var away = FaultOrigin.Behaviour()
        away.redirectTo = elsewhere
        var near = FaultOrigin.Behaviour()
        near.redirectTo = home
        for (path, behaviour) in [("/to-elsewhere", away), ("/to-home", near)] {
            var request = self.request(self.origin.serve(path, content: [], behaviour: behaviour), "h\(path.count).bin")
            request.headers = [HTTPHeader(name: "X-Token", value: "secret-value")]
            let (outcome, _) = await fetch(request)
            #expect(outcome.completed != nil, "\(outcome)")
            #expect(self.origin.served(path).first?.headers["x-token"] == "secret-value")
        }
        #expect(other.served("/elsewhere").count == 1)
        #expect(other.served("/elsewhere").first?.headers["x-token"] == nil)
        #expect(self.origin.served("/home-target").first?.headers["x-token"] == "secret-value")
    }

    @Test func aSlowDripCompletes() async throws {
        let content = TestContent.bytes(count: 20_000, seed: 38)
        var behaviour = FaultOrigin.Behaviour()
        behaviour.dripBytesPerTick = 2_000
        let url = self.origin.serve("/drip", content: content, behaviour: behaviour)
        var request = self.request(url, "drip.bin")
        request.stallTimeout = 2
        let (outcome, events) = await fetch(request)
        #expect(outcome.completed != nil, "\(outcome)")
        #expect(self.scratch.read("drip.bin") == content)
        #expect(events.contains { if case .progress = $0 { true } else { false } })
    }

    /// Group commit waits for a batch only while it is worth it: a file that finishes while another transfer of
    /// the same engine thread is still receiving is put in place after a short wait, not held until the other ends.
    @Test func aFileIsNotHeldForASlowNeighbour() async throws {
        var behaviour = FaultOrigin.Behaviour()
        behaviour.dripBytesPerTick = 200  // 40 KB in 10 s: still receiving when the test cancels it
        let slowContent = TestContent.bytes(count: 40_000, seed: 60)
        let slowURL = self.origin.serve("/neighbour-slow", content: slowContent, behaviour: behaviour)
        let quickContent = TestContent.bytes(count: 10_000, seed: 61)
        let quickURL = self.origin.serve("/neighbour-quick", content: quickContent)
        let engine = TransferEngine(threads: 1)
        let slow = engine.start(self.request(slowURL, "neighbour-slow.bin"))
        var slowEvents = slow.events.makeAsyncIterator()
        while let event = await slowEvents.next() {
            if case .response = event { break }  // receiving
        }
        let started = monotonicNow()
        let (quick, _) = await fetch(self.request(quickURL, "neighbour-quick.bin"), engine: engine)
        let elapsed = monotonicNow() - started
        #expect(quick.completed != nil, "\(quick)")
        #expect(elapsed < 5, "\(elapsed) s for 10 KB (the batch waits 25 ms; the neighbour has about 10 s to go)")
        #expect(self.scratch.read("neighbour-quick.bin") == quickContent)
        #expect(!FileManager.default.fileExists(atPath: self.scratch.path + "/neighbour-slow.bin"), "not still running")
        engine.cancel(slow.id)
        var slowOutcome: TransferOutcome?
        while let event = await slowEvents.next() {
            if case .finished(let outcome) = event { slowOutcome = outcome }
        }
        if case .cancelled = slowOutcome {
        } else {
            Issue.record("the neighbour ended before the quick file was in place: \(String(describing: slowOutcome))")
        }
        #expect(self.scratch.read("neighbour-slow.bin") == nil)
    }

    /// While another transfer of the engine thread is still receiving, received files wait for their batch to
    /// fill (here 3 files, with no time limit) and then go into place together: one commit job places them, one
    /// more makes their links durable (with nothing else to share its sync).
    @Test func filesWaitForTheirBatchWhileANeighbourReceives() async throws {
        var behaviour = FaultOrigin.Behaviour()
        behaviour.dripBytesPerTick = 100  // 40 KB in 20 s: still receiving when the test cancels it
        let slowURL = self.origin.serve(
            "/batch-slow",
            content: TestContent.bytes(count: 40_000, seed: 62),
            behaviour: behaviour
        )
        let engine = TransferEngine(
            limits: Concurrency(),
            threads: 1,
            commitPacing: CommitPacing(batchSize: 3, longestWait: 60)
        )
        let slow = engine.start(self.request(slowURL, "batch-slow.bin"))
        var slowEvents = slow.events.makeAsyncIterator()
        while let event = await slowEvents.next() {
            if case .response = event { break }  // receiving
        }
        var handles: [TransferHandle] = []
        var contents: [[UInt8]] = []
        for index in 0..<3 {
            contents.append(TestContent.bytes(count: 10_000, seed: 63 + UInt64(index)))
            let url = self.origin.serve("/batch-\(index)", content: contents[index])
            handles.append(engine.start(self.request(url, "batch-\(index).bin")))
            if index < 2 {
                // Received in a few milliseconds; in place only once the third has come.
                try await Task.sleep(for: .milliseconds(300))
                #expect(!FileManager.default.fileExists(atPath: self.scratch.path + "/batch-\(index).bin"))
            }
        }
        for (index, handle) in handles.enumerated() {
            var outcome: TransferOutcome?
            for await event in handle.events { if case .finished(let finished) = event { outcome = finished } }
            #expect(outcome?.completed != nil, "\(String(describing: outcome))")
            #expect(self.scratch.read("batch-\(index).bin") == contents[index])
        }
        #expect(engine.commitJobs == 2)
        #expect(!FileManager.default.fileExists(atPath: self.scratch.path + "/batch-slow.bin"), "not still running")
        engine.cancel(slow.id)
        while await slowEvents.next() != nil {}
    }

    @Test func aCompressedRangeNeverCorruptsTheFile() async throws {
        let content = TestContent.bytes(count: 300_000, seed: 39)
        var behaviour = FaultOrigin.Behaviour()
        behaviour.gzipRanges = true
        let url = self.origin.serve("/gzip", content: content, behaviour: behaviour)
        try self.scratch.write(".gzip.bin.barge-partial", bytes: Array(content[0..<100_000]), mode: 0o600)
        var request = self.request(url, "gzip.bin")
        request.partialValidators = Validators(etag: "\"v1\"")
        request.sha256 = sha256Hex(content)
        let (outcome, _) = await fetch(request)
        #expect(outcome.completed != nil, "\(outcome)")
        #expect(self.scratch.read("gzip.bin") == content)
        let served = self.origin.served("/gzip")
        #expect(served.first?.acceptEncoding == "identity")
        #expect(served.first?.range == "bytes=100000-")
        #expect(served.last?.range == nil)
    }

    @Test func bearerCredentialsComeFromTheSecretFile() async throws {
        var behaviour = FaultOrigin.Behaviour()
        behaviour.bearerToken = "s3cret-token"
        let content = TestContent.bytes(count: 1000, seed: 40)
        let url = self.origin.serve("/private", content: content, behaviour: behaviour)
        let denied = await fetch(self.request(url, "private.bin"))
        #expect(
            denied.outcome.failure
                == TransferFailure(
                    .permanent,
                    "127.0.0.1:\(self.origin.port) refused the credentials (HTTP 401 Unauthorized)"
                )
        )
        let secret = try self.scratch.write("token", "s3cret-token\n", mode: 0o600)
        var request = self.request(url, "private.bin")
        request.credentials = .bearerFile(secret)
        request.stallTimeout = 3
        let granted = await fetch(request)
        #expect(granted.outcome.completed != nil, "\(granted.events) \(self.origin.served("/private"))")
        #expect(self.scratch.read("private.bin") == content)
    }

    @Test func anUnreachableHostIsTransient() async throws {
        let port = try freeLoopbackPort()
        let (outcome, _) = await fetch(self.request("http://127.0.0.1:\(port)/x", "x.bin"))
        #expect(outcome.failure?.kind == .transient)
        #expect(outcome.failure?.reason.hasPrefix("cannot connect to 127.0.0.1:\(port)") == true, "\(outcome)")
    }

    @Test func basicCredentialsAndCustomHeadersAreSent() async throws {
        var behaviour = FaultOrigin.Behaviour()
        behaviour.basicCredentials = "fleet:pa55word"
        let url = self.origin.serve("/basic", content: [7, 7, 7], behaviour: behaviour)
        let secret = try self.scratch.write("basic", "fleet:pa55word\n", mode: 0o600)
        var request = self.request(url, "basic.bin")
        request.credentials = .basicFile(secret)
        request.headers = [HTTPHeader(name: "X-Fleet", value: "edge-7")]
        let (outcome, _) = await fetch(request)
        #expect(outcome.completed != nil, "\(outcome)")
        let served = try #require(self.origin.served("/basic").last)
        #expect(served.headers["x-fleet"] == "edge-7")
        #expect(served.status == 200)
    }

    /// On one engine thread and on two (the transfers alternate between them: each thread's share).
    @Test(arguments: [1, 2]) func theGlobalBudgetIsSharedByAllTransfers(threads: Int) async throws {
        let content = TestContent.bytes(count: 600_000, seed: 41)
        let first = self.origin.serve("/shared1", content: content)
        let second = self.origin.serve("/shared2", content: content)
        let engine = TransferEngine(threads: threads)
        #expect(engine.threadCount == threads)
        engine.setGlobalRate(.limited(ByteRate(bytesPerSecond: 600_000)))
        let start = Date()
        async let one = fetch(self.request(first, "shared1.bin"), engine: engine)
        async let two = fetch(self.request(second, "shared2.bin"), engine: engine)
        let results = await [one.outcome, two.outcome]
        let elapsed = Date().timeIntervalSince(start)
        #expect(results.allSatisfy { $0.completed != nil })
        // 1.2 MB through a shared 600 KB/s budget cannot take less than about 2 s (less the first burst).
        #expect(elapsed >= 1.7, "took \(elapsed)s")
    }

    /// Transfers alternating between two hosts on two engine threads: each host's transfers take the threads in
    /// turn, so each host gets its whole per-host limit (routed by id alone, one host's transfers would all run
    /// on one thread, on its half of the limit).
    @Test func eachHostGetsItsWholeLimitOnTwoThreads() async throws {
        let other = try FaultOrigin()
        let completed = await self.fetchSlowly(from: [self.origin, other], count: 8, threads: 2)
        #expect(completed == 8)
        #expect(self.origin.peakConnections == 2)
        #expect(other.peakConnections == 2)
    }

    /// On one engine thread, and on two, each with its share of the limits (one connection to the host each).
    @Test(arguments: [1, 2]) func theConnectionLimitsHold(threads: Int) async throws {
        let completed = await self.fetchSlowly(from: [self.origin], count: 6, threads: threads)
        #expect(completed == 6)
        #expect(self.origin.peakConnections == 2)
    }

    /// Fetches `count` dripped files, taking the origins in turn, on an engine of 8 connections, 2 per host;
    /// returns how many completed.
    private func fetchSlowly(from origins: [FaultOrigin], count: Int, threads: Int) async -> Int {
        var behaviour = FaultOrigin.Behaviour()
        behaviour.dripBytesPerTick = 5_000
        behaviour.faultyRequests = 100
        let content = TestContent.bytes(count: 20_000, seed: 42)
        var limits = Concurrency()
        limits.total = 8
        limits.perHost = 2
        let engine = TransferEngine(limits: limits, threads: threads)
        #expect(engine.threadCount == threads)
        return await withTaskGroup(of: Bool.self) { group in
            for index in 0..<count {
                let url = origins[index % origins.count].serve("/slow\(index)", content: content, behaviour: behaviour)
                let request = self.request(url, "slow\(index).bin")
                group.addTask { await fetch(request, engine: engine).outcome.completed != nil }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
    }
}
