import BargeCore
import BargeTestSupport
import BargeTransfer
import Foundation
import Glibc
import Synchronization
import Testing

/// The engine against a real nginx: Range, If-Range, ETag, 304 and 416 exactly as production servers do them.
@Suite("Engine against nginx", .serialized, .enabled(if: NginxServer.isAvailable, "nginx is not installed"))
struct NginxInteropTests {
    let nginx: NginxServer
    let scratch: ScratchDirectory

    init() throws {
        // `/slow/`: 4 KB a second on each connection (a 16 KiB file takes about 4 s), for a burst's tail that
        // cannot be over before the test acts on it.
        self.nginx = try NginxServer(extraLocations: "location /slow/ { limit_rate 4k; }")
        self.scratch = try ScratchDirectory()
    }

    /// One destination has at most one transfer: a second one (another engine, as a `barge get --foreground`
    /// beside the agent would be) finds the first one's partial locked, and neither writes nor removes it.
    @Test func aSecondTransferToOneDestinationNeverWritesTheFirstOnesPartial() async throws {
        let slow = try NginxServer(rateLimit: "200k")
        let content = TestContent.bytes(count: 1_500_000, seed: 17)
        let url = try slow.serve("one.bin", bytes: content)
        let destination = self.scratch.path + "/one.bin"
        let partial = self.scratch.path + "/.one.bin.barge-partial"
        var request = TransferRequest(sources: [url], destination: destination)
        request.checkpointInterval = 128 << 10
        let engine = TransferEngine()
        let first = engine.start(request)
        // Named at its first checkpoint; then held where it is (its lock kept) while the others try, so that it
        // cannot finish first however slow the machine: paused by the polling thread the moment it sees the name,
        // not when this task is next scheduled (seconds later, once, on a loaded machine: it had finished by then).
        #expect(
            await eventually {
                guard FileManager.default.fileExists(atPath: partial) else { return false }
                engine.pause(first.id)
                return true
            }
        )
        for resumable in [true, false] {
            var second = TransferRequest(sources: [url], destination: destination)
            second.mayHaveEarlierPartial = resumable
            second.expectedSize = UInt64(content.count)  // large: it would name its partial too
            let (outcome, _) = await fetch(second, engine: TransferEngine())
            let failure = try #require(outcome.failure, "\(outcome)")
            #expect(failure.kind == .transient)
            #expect(failure.reason.contains("another transfer is writing it"), "\(failure)")
            #expect(FileManager.default.fileExists(atPath: partial))
        }
        PartialFiles.remove(for: destination)  // the agent removing a job's partial: not while it is written
        #expect(FileManager.default.fileExists(atPath: partial))
        engine.resume(first.id)
        var outcome: TransferOutcome = .cancelled
        for await event in first.events { if case .finished(let result) = event { outcome = result } }
        #expect(outcome.completed != nil, "\(outcome)")
        #expect(self.scratch.read("one.bin") == content)
        // The first transfer got the whole file in one response; the second, not resumable, had started on its
        // own unnamed file and stopped when it came to name it.
        let served = slow.served("/one.bin").map(\.bytes)
        #expect(served.filter { $0 == content.count }.count == 1 && served.count <= 2, "\(served)")
    }

    @Test func downloadsVerifiesAndCommits() async throws {
        let content = TestContent.bytes(count: 3_000_000, seed: 7)
        let url = try self.nginx.serve("a.bin", bytes: content)
        var request = TransferRequest(sources: [url], destination: self.scratch.path + "/out/a.bin")
        request.sha256 = sha256Hex(content)
        request.expectedSize = UInt64(content.count)
        request.mode = 0o640
        let (outcome, events) = await fetch(request)
        let done = try #require(outcome.completed, "\(outcome)")
        #expect(done.size == 3_000_000)
        #expect(done.sha256 == sha256Hex(content))
        #expect(done.validators.etag != nil && done.validators.lastModified != nil)
        #expect(self.scratch.read("out/a.bin") == content)
        #expect(listing(self.scratch.path + "/out") == ["a.bin"])
        var info = stat()
        stat(self.scratch.path + "/out/a.bin", &info)
        #expect(info.st_mode & 0o777 == 0o640)
        #expect(events.contains { if case .response(let response) = $0 { response.status == 200 } else { false } })
    }

    /// The second case leaves a partial large enough to be re-hashed on the prepare queue, off the engine thread.
    @Test(arguments: [(4_000_000, 500_000), (12_000_000, 6_000_000)])
    func resumesFetchingOnlyTheMissingBytes(size: Int, cancelAfter: UInt64) async throws {
        let content = TestContent.bytes(count: size, seed: 8)
        let url = try self.nginx.serve("b.bin", bytes: content)
        let destination = self.scratch.path + "/b.bin"
        // A first run that is cancelled part-way leaves a partial with the response's validator. Its cap leaves five
        // seconds and more between the cancel and the end of the file: under the full suite on two cores this task
        // once waited longer than one for a thread, and the first run finished.
        var slow = TransferRequest(sources: [url], destination: destination)
        let margin = (UInt64(size) - cancelAfter) / 5
        slow.maxRate = .limited(ByteRate(bytesPerSecond: min(cancelAfter, margin)))
        let engine = TransferEngine()
        let handle = engine.start(slow)
        var received: UInt64 = 0
        for await event in handle.events {
            if case .progress(let progress) = event, progress.received > cancelAfter {
                received = progress.received
                engine.cancel(handle.id)
            }
        }
        let partial = self.scratch.read(".b.bin.barge-partial") ?? []
        #expect(received > 0 && partial.count >= Int(received))
        #expect(partial.count < content.count)
        #expect(Array(content[0..<partial.count]) == partial)
        // The second run asks for the rest only.
        var request = TransferRequest(sources: [url], destination: destination)
        request.sha256 = sha256Hex(content)
        let (outcome, _) = await fetch(request, engine: engine)
        let done = try #require(outcome.completed, "\(outcome)")
        #expect(done.transferred == UInt64(content.count - partial.count))
        #expect(self.scratch.read("b.bin") == content)
        let last = try #require(self.nginx.served("/b.bin", count: 2).last)
        #expect(last.status == 206)
        #expect(last.range == "bytes=\(partial.count)-")
        #expect(last.bytes == content.count - partial.count)
        #expect(!last.ifRange.isEmpty)
    }

    @Test func aChangedFileRestartsFromZero() async throws {
        let old = TestContent.bytes(count: 1_000_000, seed: 9)
        let url = try self.nginx.serve("c.bin", bytes: old)
        let destination = self.scratch.path + "/c.bin"
        // A partial of the old version, with the old version's validator.
        try self.scratch.write(".c.bin.barge-partial", bytes: Array(old[0..<400_000]), mode: 0o600)
        var request = TransferRequest(sources: [url], destination: destination)
        request.partialValidators = Validators(etag: "\"0000-old\"")
        let new = TestContent.bytes(count: 1_200_000, seed: 10)
        try self.nginx.serve("c.bin", bytes: new)
        let (outcome, _) = await fetch(request)
        #expect(outcome.completed != nil, "\(outcome)")
        #expect(self.scratch.read("c.bin") == new)
        let last = try #require(self.nginx.served("/c.bin", count: 1).last)
        #expect(last.range == "bytes=400000-")
        #expect(last.status == 200)
        #expect(last.bytes == new.count)
    }

    @Test func aCompletePartialIsCommittedOn416() async throws {
        let content = TestContent.bytes(count: 500_000, seed: 11)
        let url = try self.nginx.serve("d.bin", bytes: content)
        let first = await fetch(TransferRequest(sources: [url], destination: self.scratch.path + "/first.bin"))
        let validators = try #require(first.outcome.completed?.validators)
        try self.scratch.write(".d.bin.barge-partial", bytes: content, mode: 0o600)
        var request = TransferRequest(sources: [url], destination: self.scratch.path + "/d.bin")
        request.partialValidators = validators
        request.sha256 = sha256Hex(content)
        let (outcome, _) = await fetch(request)
        #expect(outcome.completed?.transferred == 0, "\(outcome)")
        #expect(self.scratch.read("d.bin") == content)
        #expect(self.nginx.served("/d.bin", count: 2).last?.status == 416)
    }

    @Test func aConditionalRefreshOfAnUnchangedFileTransfersNothing() async throws {
        let content = TestContent.bytes(count: 200_000, seed: 12)
        let url = try self.nginx.serve("e.bin", bytes: content)
        let destination = self.scratch.path + "/e.bin"
        let first = await fetch(TransferRequest(sources: [url], destination: destination))
        let validators = try #require(first.outcome.completed?.validators)
        var before = stat()
        stat(destination, &before)
        var refresh = TransferRequest(sources: [url], destination: destination)
        refresh.currentValidators = validators
        let (outcome, _) = await fetch(refresh)
        guard case .notModified = outcome else {
            Issue.record("expected notModified, got \(outcome)")
            return
        }
        var after = stat()
        stat(destination, &after)
        #expect(before.st_ino == after.st_ino && before.st_mtim.tv_nsec == after.st_mtim.tv_nsec)
        let last = try #require(self.nginx.served("/e.bin", count: 2).last)
        #expect(last.status == 304 && last.bytes == 0, "\(self.nginx.served("/e.bin"))")
        #expect(listing(self.scratch.path) == ["e.bin"])
    }

    @Test func aHashMismatchIsPermanentAndLeavesTheOldFile() async throws {
        let content = TestContent.bytes(count: 300_000, seed: 13)
        let url = try self.nginx.serve("f.bin", bytes: content)
        try self.scratch.write("f.bin", "old version")
        var request = TransferRequest(sources: [url], destination: self.scratch.path + "/f.bin")
        request.sha256 = String(repeating: "ab", count: 32)
        let (outcome, events) = await fetch(request)
        let failure = try #require(outcome.failure)
        #expect(failure.kind == .permanent)
        #expect(failure.reason.hasPrefix("hash mismatch: expected abababab…, got \(sha256Hex(content).prefix(8))…"))
        #expect(self.scratch.read("f.bin") == Array("old version".utf8))
        #expect(listing(self.scratch.path) == ["f.bin"])
        // The partial is gone: a checkpoint the caller stored is void, and it is told so before the end.
        guard events.count >= 2, case .checkpoint(let offset) = events[events.count - 2] else {
            Issue.record("no checkpoint at 0 before the end: \(events.suffix(2))")
            return
        }
        #expect(offset == 0)
    }

    @Test func aSizeMismatchIsCaughtBeforeTheBody() async throws {
        let url = try self.nginx.serve("g.bin", bytes: TestContent.bytes(count: 100_000, seed: 14))
        var request = TransferRequest(sources: [url], destination: self.scratch.path + "/g.bin")
        request.expectedSize = 99_999
        let (outcome, _) = await fetch(request)
        #expect(outcome.failure?.kind == .permanent)
        #expect(outcome.failure?.reason.contains("size mismatch: expected 99999 bytes") == true)
        #expect(listing(self.scratch.path).isEmpty)
    }

    @Test func notFoundIsPermanentAndMirrorsFailOver() async throws {
        let content = TestContent.bytes(count: 50_000, seed: 15)
        let good = try self.nginx.serve("h.bin", bytes: content)
        let missing = self.nginx.baseURL + "/missing/h.bin"
        let alone = await fetch(TransferRequest(sources: [missing], destination: self.scratch.path + "/x.bin"))
        #expect(alone.outcome.failure == TransferFailure(.permanent, "not found: \(missing) (HTTP 404)"))
        let (outcome, events) = await fetch(
            TransferRequest(sources: [missing, good], destination: self.scratch.path + "/h.bin")
        )
        #expect(outcome.completed?.url == good)
        #expect(self.scratch.read("h.bin") == content)
        let starts = events.compactMap { if case .started(let url, _) = $0 { url } else { nil } }
        #expect(starts == [missing, good])
    }

    @Test func aRateCapHoldsTheTransferBack() async throws {
        let content = TestContent.bytes(count: 1_500_000, seed: 16)
        let url = try self.nginx.serve("i.bin", bytes: content)
        var request = TransferRequest(sources: [url], destination: self.scratch.path + "/i.bin")
        request.maxRate = .limited(ByteRate(bytesPerSecond: 1_000_000))
        let start = Date()
        let (outcome, _) = await fetch(request)
        let elapsed = Date().timeIntervalSince(start)
        #expect(outcome.completed != nil)
        // Never faster than the cap (the first burst aside); how close it gets is measured by the benchmark.
        #expect(elapsed >= 1.3, "1.5 MB at 1 MB/s took \(elapsed)s")
    }

    /// A paused transfer receives nothing (beyond what was already on its way, a buffer at most) until resumed,
    /// then finishes whole. Progress is reported only when bytes arrive, so every report before the resume
    /// shows what arrived while paused. The pause lasts 3 s at 256 KiB/s: 768 KiB would arrive without it, while
    /// the allowance (256 KiB) leaves the test a second to act on the report it pauses at.
    @Test func pauseStopsTheBytesAndResumeFinishes() async throws {
        let content = TestContent.bytes(count: 1_000_000, seed: 17)
        let url = try self.nginx.serve("j.bin", bytes: content)
        var request = TransferRequest(sources: [url], destination: self.scratch.path + "/j.bin")
        request.maxRate = .limited(ByteRate(bytesPerSecond: 256 << 10))
        let engine = TransferEngine()
        let handle = engine.start(request)
        let resumed = ResumedFlag()
        var pausedAt: UInt64?
        var whilePaused: [UInt64] = []
        var afterResume: [UInt64] = []
        for await event in handle.events {
            switch event {
            case .progress(let progress):
                if pausedAt == nil, progress.received > 64_000 {
                    pausedAt = progress.received
                    engine.pause(handle.id)
                    Task {
                        // The window in which nothing may arrive.
                        try await Task.sleep(for: .seconds(3))
                        resumed.value.withLock { $0 = true }
                        engine.resume(handle.id)
                    }
                } else if pausedAt != nil {
                    if resumed.value.withLock({ $0 }) {
                        afterResume.append(progress.received)
                    } else {
                        whilePaused.append(progress.received)
                    }
                }
            case .finished(let outcome):
                #expect(outcome.completed != nil)
            default: break
            }
        }
        let paused = try #require(pausedAt)
        #expect((whilePaused.max() ?? paused) <= paused + 256 * 1024, "\(paused): \(whilePaused)")
        #expect(!afterResume.isEmpty)
        #expect(self.scratch.read("j.bin") == content)
    }

    /// Set by the task that resumes the paused transfer, just before it does.
    final class ResumedFlag: Sendable {
        let value = Mutex(false)
    }

    @Test func cancelKeepsOrDiscardsThePartial() async throws {
        let url = try self.nginx.serve("k.bin", bytes: TestContent.bytes(count: 3_000_000, seed: 18))
        for discard in [false, true] {
            let destination = self.scratch.path + "/k\(discard).bin"
            var request = TransferRequest(sources: [url], destination: destination)
            // 12 s at this rate: cancelled long before the end, however late the report is read.
            request.maxRate = .limited(ByteRate(bytesPerSecond: 250_000))
            let engine = TransferEngine()
            let handle = engine.start(request)
            for await event in handle.events {
                if case .progress(let progress) = event, progress.received > 100_000 {
                    engine.cancel(handle.id, discardPartial: discard)
                }
                if case .finished(let outcome) = event, case .cancelled = outcome {
                } else if case .finished = event {
                    Issue.record("expected cancelled")
                }
            }
            let partial = self.scratch.read(".k\(discard).bin.barge-partial")
            #expect((partial == nil) == discard)
            #expect(self.scratch.read("k\(discard).bin") == nil)
        }
    }

    /// Checkpoints come as the bytes become durable, in the background, each for a named partial that holds at
    /// least that many bytes when it is reported.
    @Test func checkpointsReportDurableNamedBytes() async throws {
        let content = TestContent.bytes(count: 3 << 20, seed: 32)
        let url = try self.nginx.serve("cp.bin", bytes: content)
        var request = TransferRequest(sources: [url], destination: self.scratch.path + "/cp.bin")
        // Five checkpoints due, half a second apart: three of them durable before the end even when every `fsync`
        // waits behind other tests' writes.
        request.checkpointInterval = 512 << 10
        request.maxRate = .limited(ByteRate(bytesPerSecond: 1 << 20))
        let engine = TransferEngine()
        let handle = engine.start(request)
        var offsets: [UInt64] = []
        var outcome: TransferOutcome?
        for await event in handle.events {
            switch event {
            case .checkpoint(let offset):
                offsets.append(offset)
                // Read when the event is taken, which may be after the file was finished and put in place: the bytes
                // are then in the named file.
                let held = self.scratch.read(".cp.bin.barge-partial")?.count ?? self.scratch.read("cp.bin")?.count ?? 0
                #expect(held >= Int(offset), "checkpoint \(offset), partial or file \(held)")
            case .finished(let end):
                outcome = end
            default:
                break
            }
        }
        #expect(outcome?.completed != nil, "\(String(describing: outcome))")
        #expect(offsets.count >= 3, "\(offsets)")
        #expect(zip(offsets, offsets.dropFirst()).allSatisfy { $1 >= $0 + (512 << 10) }, "\(offsets)")
        let whole = self.scratch.read("cp.bin") == content
        #expect(whole)
    }

    /// A caller that knew of a checkpoint but finds no partial (the agent was killed after the file was placed,
    /// before it recorded that) gets the finished file back as completed, without a request. The old copy of a
    /// refresh, a file that no longer holds the expected hash (even at the same size, its attribute intact), and a
    /// file changed since are fetched again.
    @Test func aFileFinishedBeforeAKillIsRecognisedNotFetchedAgain() async throws {
        let content = TestContent.bytes(count: 3 << 20, seed: 33)
        let url = try self.nginx.serve("placed.bin", bytes: content)
        let path = self.scratch.path + "/placed.bin"
        var request = TransferRequest(sources: [url], destination: path)
        request.checkpointInterval = 1 << 20
        request.reportsSHA256 = true
        let first = try #require(await fetch(request).outcome.completed)
        #expect(first.transferred == UInt64(content.count))
        #expect(self.nginx.served("/placed.bin", count: 1).count == 1)

        request.resumeOffset = 2 << 20
        let again = await fetch(request).outcome.completed
        #expect(again?.transferred == 0)
        #expect(again?.size == UInt64(content.count))
        #expect(again?.validators.etag != nil && again?.validators.etag == first.validators.etag)
        usleep(200_000)  // nginx logs a request after its response: give a wrongly made one time to show
        #expect(self.nginx.served("/placed.bin").count == 1)

        // A refresh whose new copy never came: the file there is the copy it replaces, not taken for a new one.
        request.currentValidators = first.validators
        let refresh = await fetch(request).outcome
        guard case .notModified = refresh else {
            Issue.record("expected a conditional request answered 304, got \(refresh)")
            return
        }
        #expect(self.nginx.served("/placed.bin", count: 2).last?.status == 304)
        request.currentValidators = nil

        // Another hash expected: not that file.
        request.sha256 = String(repeating: "0", count: 64)
        #expect(await fetch(request).outcome.failure?.reason.contains("hash mismatch") == true)
        #expect(self.nginx.served("/placed.bin", count: 3).count == 3)

        // Changed in place at the same size, its attribute intact: the expected hash is checked on the content.
        request.sha256 = sha256Hex(content)
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        handle.seek(toFileOffset: 1000)
        handle.write(Data([content[1000] ^ 0xFF]))
        try handle.close()
        #expect(await fetch(request).outcome.completed?.transferred == UInt64(content.count))
        #expect(self.nginx.served("/placed.bin", count: 4).count == 4)

        // Changed since (its size no longer matches the record): fetched again.
        request.sha256 = nil
        let shorter = try #require(FileHandle(forWritingAtPath: path))
        shorter.truncateFile(atOffset: 1000)
        try shorter.close()
        #expect(await fetch(request).outcome.completed?.transferred == UInt64(content.count))
        #expect(self.nginx.served("/placed.bin", count: 5).count == 5)
        let whole = self.scratch.read("placed.bin") == content
        #expect(whole)
    }

    /// A caller that knows no earlier run left a partial (the agent's new job) has it not looked for; one there
    /// anyway is replaced once this transfer names its own, never resumed.
    @Test func aTransferThatExpectsNoPartialReplacesOneLeftThere() async throws {
        let content = TestContent.bytes(count: 300_000, seed: 34)
        let url = try self.nginx.serve("fresh.bin", bytes: content)
        try self.scratch.write(".fresh.bin.barge-partial", bytes: TestContent.bytes(count: 200_000, seed: 35))
        var request = TransferRequest(sources: [url], destination: self.scratch.path + "/fresh.bin")
        request.mayHaveEarlierPartial = false
        let done = await fetch(request).outcome.completed
        #expect(done?.transferred == UInt64(content.count))
        #expect(done?.sha256 == nil)  // none expected, none asked for: not hashed
        let served = self.nginx.served("/fresh.bin", count: 1)
        #expect(served.map(\.range) == [""] && served.first?.bytes == content.count)
        let whole = self.scratch.read("fresh.bin") == content
        #expect(whole)
        #expect(self.scratch.read(".fresh.bin.barge-partial") == nil)
    }

    /// A file that arrives whole within its first buffer never gets a partial name: it is created unnamed, written
    /// and linked to its destination at the commit (or, when something is there, named and renamed over it).
    @Test func aSmallFileIsLinkedStraightIntoPlace() async throws {
        let first = TestContent.bytes(count: 20_000, seed: 30)
        let second = TestContent.bytes(count: 30_000, seed: 31)
        let url1 = try self.nginx.serve("s1.bin", bytes: first)
        let url2 = try self.nginx.serve("s2.bin", bytes: second)
        let directory = self.scratch.path + "/small"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let watch = inotify_init1(Int32(IN_NONBLOCK))
        defer { close(watch) }
        #expect(inotify_add_watch(watch, directory, UInt32(IN_CREATE | IN_MOVED_TO)) >= 0)
        // Nothing is created before bytes arrive: a missing file leaves no trace.
        let missing = TransferRequest(sources: [url1 + ".missing"], destination: directory + "/s.bin")
        #expect(await fetch(missing).outcome.failure?.kind == .permanent)
        #expect(Self.createdNames(watch).isEmpty)
        var request = TransferRequest(sources: [url1], destination: directory + "/s.bin")
        request.mode = 0o640
        #expect(await fetch(request).outcome.completed != nil)
        #expect(Self.createdNames(watch) == ["s.bin"])
        var info = stat()
        stat(directory + "/s.bin", &info)
        #expect(info.st_mode & 0o777 == 0o640)
        // Over an existing file: named, then renamed over it.
        request.sources = [url2]
        #expect(await fetch(request).outcome.completed != nil)
        #expect(self.scratch.read("small/s.bin") == second)
        #expect(Self.createdNames(watch) == [".s.bin.barge-partial", "s.bin"])
        // Over a link: the link is replaced, its target untouched.
        let victim = try self.scratch.write("victim2", "precious")
        #expect(unlink(directory + "/s.bin") == 0 && symlink(victim, directory + "/s.bin") == 0)
        _ = Self.createdNames(watch)
        #expect(await fetch(request).outcome.completed != nil)
        #expect(self.scratch.read("victim2") == Array("precious".utf8))
        lstat(directory + "/s.bin", &info)
        #expect(info.st_mode & S_IFMT == S_IFREG)
        #expect(listing(directory) == ["s.bin"])
    }

    /// A small file is created with its mode when the umask keeps it, and changed to it after when not (0o666
    /// under the usual 022): either way it ends up exactly so.
    @Test(arguments: [0o640, 0o604, 0o666, 0o775] as [UInt32])
    func aSmallFileGetsExactlyItsMode(mode: UInt32) async throws {
        let content = TestContent.bytes(count: 1_000, seed: 23)
        let url = try self.nginx.serve("mode.bin", bytes: content)
        var request = TransferRequest(
            sources: [url],
            destination: self.scratch.path + "/mode-\(String(mode, radix: 8))/m.bin"
        )
        request.mode = mode
        #expect(await fetch(request).outcome.completed != nil)
        var info = stat()
        #expect(stat(request.destination, &info) == 0)
        #expect(UInt32(info.st_mode & 0o7777) == mode)
    }

    /// Destination directories stay open in the engine, but each is checked again in every pass of its loop: a
    /// directory moved away and made anew between two files gets the second file, and a link put in its place
    /// is refused.
    @Test func aReplacedDirectoryIsOpenedAgain() async throws {
        let engine = TransferEngine()
        let url = try self.nginx.serve("r.bin", bytes: TestContent.bytes(count: 2_000, seed: 29))
        let directory = self.scratch.path + "/r"
        #expect(
            await fetch(TransferRequest(sources: [url], destination: directory + "/1.bin"), engine: engine)
                .outcome.completed != nil
        )
        #expect(rename(directory, self.scratch.path + "/r.old") == 0)
        #expect(mkdir(directory, 0o755) == 0)
        #expect(
            await fetch(TransferRequest(sources: [url], destination: directory + "/2.bin"), engine: engine)
                .outcome.completed != nil
        )
        #expect(listing(directory) == ["2.bin"])
        #expect(listing(self.scratch.path + "/r.old") == ["1.bin"])
        #expect(rename(directory, self.scratch.path + "/r.second") == 0)
        #expect(symlink(self.scratch.path + "/r.old", directory) == 0)
        let refused = await fetch(TransferRequest(sources: [url], destination: directory + "/3.bin"), engine: engine)
        #expect(refused.outcome.failure?.reason.contains("is a symbolic link") == true, "\(refused.outcome)")
        #expect(listing(self.scratch.path + "/r.old") == ["1.bin"])
        #expect(listing(self.scratch.path + "/r.second") == ["2.bin"])
    }

    /// The names created in a watched directory since the last call, in order.
    static func createdNames(_ watch: Int32) -> [String] {
        var names: [String] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let count = buffer.withUnsafeMutableBytes { read(watch, $0.baseAddress, $0.count) }
        var offset = 0
        while count > 0, offset < count {
            let length = Int(buffer[offset + 12]) | Int(buffer[offset + 13]) << 8 | Int(buffer[offset + 14]) << 16
            let nameBytes = buffer[(offset + 16)..<(offset + 16 + length)].prefix { $0 != 0 }
            names.append(String(decoding: nameBytes, as: UTF8.self))
            offset += 16 + length
        }
        return names
    }

    @Test func neverWritesThroughPlantedSymbolicLinks() async throws {
        let content = TestContent.bytes(count: 100_000, seed: 19)
        let url = try self.nginx.serve("l.bin", bytes: content)
        let victim = try self.scratch.write("victim", "precious")
        try FileManager.default.createDirectory(atPath: self.scratch.path + "/d", withIntermediateDirectories: true)
        // A link where the partial will be, and a link at the destination itself.
        #expect(symlink(victim, self.scratch.path + "/d/.l.bin.barge-partial") == 0)
        #expect(symlink(victim, self.scratch.path + "/d/l.bin") == 0)
        let (outcome, _) = await fetch(TransferRequest(sources: [url], destination: self.scratch.path + "/d/l.bin"))
        #expect(outcome.completed != nil, "\(outcome)")
        #expect(self.scratch.read("victim") == Array("precious".utf8))
        var info = stat()
        lstat(self.scratch.path + "/d/l.bin", &info)
        #expect(info.st_mode & S_IFMT == S_IFREG)
        #expect(self.scratch.read("d/l.bin") == content)
        // A directory on the way that is a link is refused.
        #expect(symlink(self.scratch.path + "/d", self.scratch.path + "/linked") == 0)
        let refused = await fetch(TransferRequest(sources: [url], destination: self.scratch.path + "/linked/m.bin"))
        #expect(
            refused.outcome.failure?.reason.contains("linked: is a symbolic link; barge does not follow links") == true,
            "\(refused.outcome)"
        )
        #expect(!listing(self.scratch.path + "/d").contains("m.bin"))
    }

    @Test func fileSourcesWork() async throws {
        let content = TestContent.bytes(count: 70_000, seed: 20)
        let source = try self.scratch.write("share/src.bin", bytes: content)
        var request = TransferRequest(sources: ["file://" + source], destination: self.scratch.path + "/copy.bin")
        request.allowedSchemes = ["file"]
        request.reportsSHA256 = true
        let (outcome, _) = await fetch(request)
        #expect(outcome.completed?.sha256 == sha256Hex(content), "\(outcome)")
        request.allowedSchemes = ["https"]
        let refused = await fetch(request)
        #expect(refused.outcome.failure?.kind == .permanent)
    }

    @Test func manySmallFilesAtOnce() async throws {
        let engine = TransferEngine()
        var expected: [String: [UInt8]] = [:]
        for index in 0..<200 {
            let content = TestContent.bytes(count: 16_384, seed: UInt64(100 + index))
            try self.nginx.serve("small/\(index).bin", bytes: content)
            expected["\(index).bin"] = content
        }
        let results = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<200 {
                let request = TransferRequest(
                    sources: [self.nginx.baseURL + "/small/\(index).bin"],
                    destination: self.scratch.path + "/small/\(index).bin"
                )
                group.addTask { await fetch(request, engine: engine).outcome.completed != nil }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(results.allSatisfy { $0 })
        if scratchHasPageCache {
            // Files this small stay in the page cache once durable: dropping them cost as much as writing them
            // (a large file's content leaves it: `aLargeFileIsDroppedFromThePageCacheBehindItsWrites`).
            let resident = expected.keys.reduce(0) { $0 + (residentBytes(self.scratch.path + "/small/\($1)") ?? 0) }
            #expect(resident > 200 * 16_384 / 2, "only \(resident) bytes of the files cached")
        }
        for (name, content) in expected { #expect(self.scratch.read("small/\(name)") == content) }
    }

    /// A file larger than a first buffer (64 KiB) leaves the page cache once it is durable in place; the small
    /// files of `manySmallFilesAtOnce` stay.
    @Test(.enabled(if: scratchHasPageCache, "the scratch file system is not a disk file system"))
    func aMidSizeFileLeavesThePageCacheOncePlaced() async throws {
        let content = TestContent.bytes(count: 100_000, seed: 35)
        let url = try self.nginx.serve("mid.bin", bytes: content)
        let (outcome, _) = await fetch(TransferRequest(sources: [url], destination: self.scratch.path + "/mid.bin"))
        #expect(outcome.completed != nil, "\(outcome)")
        let resident = try #require(residentBytes(self.scratch.path + "/mid.bin"))
        #expect(resident < 16_384, "\(resident) bytes of the placed file cached")
        #expect(self.scratch.read("mid.bin") == content)
    }

    /// Each engine thread carries its own name for the kernel (`top -H`, `ps -L`, perf), not the name of the
    /// thread that made the engine.
    @Test func engineThreadsAreNamed() async throws {
        let engine = Self.twoThreadEngine()
        let named = await eventually(timeout: 5) {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
            let names = tasks.compactMap { try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8) }
            return Set(names.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) })
                .isSuperset(of: ["barge-engine-0", "barge-engine-1"])
        }
        #expect(named)
        withExtendedLifetime(engine) {}
    }

    /// An engine of two threads for 16 connections (8 each).
    private static func twoThreadEngine() -> TransferEngine {
        var limits = Concurrency()
        limits.total = 16
        limits.perHost = 16
        return TransferEngine(limits: limits, threads: 2)
    }

    /// Serves `count` files of 16 KiB under `folder` and starts them all, new files, on an engine of two threads
    /// (16 connections), reporting to one shared stream: the engine, the contents by file name, the names by
    /// transfer and the reports. Files from `slowFrom` on come from `/slow/` (about 4 s each).
    private func startBurst(
        in folder: String,
        count: Int,
        seed: UInt64,
        slowFrom: Int? = nil
    ) throws -> (TransferEngine, [String: [UInt8]], [TransferID: String], AsyncStream<[TransferReport]>) {
        let engine = Self.twoThreadEngine()
        var expected: [String: [UInt8]] = [:]
        var paths: [String] = []
        for index in 0..<count {
            let content = TestContent.bytes(count: 16_384, seed: seed + UInt64(index))
            let slow = slowFrom.map { index >= $0 } ?? false
            paths.append((slow ? "slow/" : "") + "\(folder)/\(index).bin")
            try self.nginx.serve(paths[index], bytes: content)
            expected["\(index).bin"] = content
        }
        let (reports, reporter) = engine.makeReportStream()
        var names: [TransferID: String] = [:]
        for index in 0..<count {
            var request = TransferRequest(
                sources: [self.nginx.baseURL + "/" + paths[index]],
                destination: self.scratch.path + "/\(folder)/\(index).bin"
            )
            request.mayHaveEarlierPartial = false
            names[engine.start(request, reportingTo: reporter)] = "\(index).bin"
        }
        return (engine, expected, names, reports)
    }

    /// A burst on two engine threads (16 connections: one thread per 8) reported through one shared stream:
    /// every file arrives whole, and each transfer's reports come in order, ending with exactly one `finished`.
    @Test func manySmallFilesOnTwoEngineThreadsThroughOneReportStream() async throws {
        let (engine, expected, names, reports) = try self.startBurst(in: "burst", count: 200, seed: 300)
        #expect(engine.threadCount == 2)
        var started: Set<TransferID> = []
        var finished: [TransferID: Bool] = [:]
        var outOfOrder: [TransferID] = []
        reading: for await batch in reports {
            for report in batch {
                if finished[report.id] != nil { outOfOrder.append(report.id) }
                switch report.event {
                case .started: started.insert(report.id)
                case .finished(let outcome):
                    if !started.contains(report.id) { outOfOrder.append(report.id) }
                    finished[report.id] = outcome.completed != nil
                    if finished.count == names.count { break reading }
                default: break
                }
            }
        }
        await engine.shutdown()
        #expect(outOfOrder.isEmpty, "reports out of order for \(outOfOrder)")
        #expect(finished.count == 200 && finished.values.allSatisfy { $0 })
        for (name, content) in expected { #expect(self.scratch.read("burst/\(name)") == content) }
    }

    /// A shutdown in the middle of a burst on two engine threads, with files waiting for their commits on both:
    /// it returns, every transfer finishes exactly once, each file reported done is whole in place, and no other
    /// destination exists (what had not been committed is not there, half-written or otherwise). The last 100
    /// files come slowly, so that the burst is still running when the shutdown comes however late the reports
    /// are read.
    @Test func aShutdownDuringABurstCommitsOrLeavesEachFileWhole() async throws {
        let (engine, expected, names, reports) = try self.startBurst(
            in: "stop",
            count: 400,
            seed: 700,
            slowFrom: 300
        )
        var outcomes: [TransferID: [TransferOutcome]] = [:]
        var responses = 0
        var stopping: Task<Void, Never>?
        reading: for await batch in reports {
            for report in batch {
                if case .response = report.event {
                    // Once a quarter of the files are coming in: some received (committed by the shutdown, or
                    // already), some not yet.
                    responses += 1
                    if responses == 100, stopping == nil { stopping = Task { await engine.shutdown() } }
                }
                guard case .finished(let outcome) = report.event else { continue }
                outcomes[report.id, default: []].append(outcome)
                if outcomes.count == names.count { break reading }
            }
        }
        await stopping?.value
        #expect(outcomes.values.allSatisfy { $0.count == 1 }, "a transfer finished more than once")
        let done = Set(outcomes.compactMap { $0.value.first?.completed != nil ? names[$0.key] : nil })
        #expect(!done.isEmpty && done.count < 400, "\(done.count) of 400 done: the shutdown came too late or too early")
        for (name, content) in expected {
            let placed = self.scratch.read("stop/\(name)")
            if done.contains(name) {
                #expect(placed == content, "\(name) reported done")
            } else {
                #expect(placed == nil, "\(name) is at its destination without having been reported done")
            }
        }
    }

    /// A large download holds only its last `PartialFile.writeBehind` (8 MiB) and the buffers in flight in the page
    /// cache while it runs, and none of the file once it is in place.
    @Test(.enabled(if: scratchHasPageCache, "the scratch file system is not a disk file system"))
    func aLargeFileIsDroppedFromThePageCacheBehindItsWrites() async throws {
        let content = TestContent.bytes(count: 40 << 20, seed: 34)
        let url = try self.nginx.serve("wb.bin", bytes: content)
        var request = TransferRequest(sources: [url], destination: self.scratch.path + "/wb.bin")
        // 8 s at this rate: the first progress report past 24 MiB (one every 0.25 s) is read three seconds before
        // the end, however late.
        request.maxRate = .limited(ByteRate(bytesPerSecond: 5 << 20))
        let engine = TransferEngine()
        let handle = engine.start(request)
        var residentWhileRunning: Int?
        var outcome: TransferOutcome?
        for await event in handle.events {
            switch event {
            case .progress(let progress) where residentWhileRunning == nil && progress.received > 24 << 20:
                residentWhileRunning = residentBytes(self.scratch.path + "/.wb.bin.barge-partial")
            case .finished(let end):
                outcome = end
            default:
                break
            }
        }
        #expect(outcome?.completed != nil, "\(String(describing: outcome))")
        // 24 MiB received: at least 19 MiB written (one buffer filling, four queued), at most 8 + 2 MiB kept.
        let running = try #require(residentWhileRunning)
        #expect(running <= 12 << 20, "\(running) bytes of the partial cached at 24 MiB")
        let placed = try #require(residentBytes(self.scratch.path + "/wb.bin"))
        #expect(placed <= 1 << 20, "\(placed) bytes of the placed file cached")
        #expect(self.scratch.read("wb.bin") == content)
    }

    /// A file that cannot be put in place (a directory is where it goes) fails over to the next mirror, whose
    /// different file is fetched into the same partial (its buffer given back after the first commit, taken again),
    /// and the transfer fails with the reason, the directory untouched.
    @Test func aFileThatCannotBePutInPlaceFailsOverThenFailsWithTheReason() async throws {
        let first = try self.nginx.serve("unplaceable-1.bin", bytes: TestContent.bytes(count: 5000, seed: 35))
        let second = try self.nginx.serve("unplaceable-2.bin", bytes: TestContent.bytes(count: 7000, seed: 36))
        let destination = self.scratch.path + "/taken"
        try FileManager.default.createDirectory(atPath: destination + "/inside", withIntermediateDirectories: true)
        let request = TransferRequest(sources: [first, second], destination: destination)
        let (outcome, _) = await fetch(request)
        let reason = try #require(outcome.failure?.reason, "\(outcome)")
        #expect(reason.hasPrefix("all 2 sources failed: cannot put the file in place"), "\(reason)")
        #expect(self.nginx.served("/unplaceable-2.bin", count: 1).first?.bytes == 7000)
        #expect(FileManager.default.fileExists(atPath: destination + "/inside"))
    }

    @Test func aProxyCarriesTheRequest() async throws {
        let proxy = try NginxServer(extraLocations: "location / { proxy_pass http://$http_host$request_uri; }")
        let content = TestContent.bytes(count: 80_000, seed: 21)
        let url = try self.nginx.serve("via-proxy.bin", bytes: content)
        var request = TransferRequest(sources: [url], destination: self.scratch.path + "/via-proxy.bin")
        request.proxy = proxy.baseURL
        let (outcome, _) = await fetch(request)
        #expect(outcome.completed != nil, "\(outcome)")
        #expect(self.scratch.read("via-proxy.bin") == content)
        #expect(proxy.served("/via-proxy.bin", count: 1).first?.status == 200)
        #expect(self.nginx.served("/via-proxy.bin", count: 1).count == 1)
    }

    @Test(.enabled(if: getuid() == 0, "mounting a tmpfs needs root"))
    func aFullDiskIsTransientAndKeepsWhatItHad() async throws {
        let content = TestContent.bytes(count: 3_000_000, seed: 22)
        let url = try self.nginx.serve("too-big.bin", bytes: content)
        let mountPoint = self.scratch.path + "/small-disk"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mountPoint]
        try mount.run()
        mount.waitUntilExit()
        try #require(mount.terminationStatus == 0, "cannot mount a tmpfs here")
        defer {
            let unmount = Process()
            unmount.executableURL = URL(fileURLWithPath: "/bin/umount")
            unmount.arguments = [mountPoint]
            try? unmount.run()
            unmount.waitUntilExit()
        }
        let (outcome, _) = await fetch(TransferRequest(sources: [url], destination: mountPoint + "/too-big.bin"))
        let failure = try #require(outcome.failure, "\(outcome)")
        #expect(failure.kind == .transient)
        #expect(failure.reason.contains("No space left on device"), "\(failure)")
        #expect(!FileManager.default.fileExists(atPath: mountPoint + "/too-big.bin"))
    }

    @Test func manyTransfersShareOneReportStreamInBatches() async throws {
        let engine = TransferEngine()
        let (reports, reporter) = engine.makeReportStream()
        var expected: [TransferID: [UInt8]] = [:]
        for index in 0..<20 {
            let content = TestContent.bytes(count: 4096 + index, seed: UInt64(300 + index))
            let url = try self.nginx.serve("shared/\(index).bin", bytes: content)
            var request = TransferRequest(sources: [url], destination: self.scratch.path + "/shared/\(index).bin")
            // Half report their hash (asked for), half none (not hashed at all).
            request.reportsSHA256 = index % 2 == 0
            let id = engine.start(request, reportingTo: reporter)
            expected[id] = content
        }
        var finished: [TransferID: CompletedTransfer] = [:]
        var firstEvents: [TransferID: TransferEvent] = [:]
        var batches = 0
        var events = 0
        reading: for await batch in reports {
            batches += 1
            for report in batch {
                events += 1
                if firstEvents[report.id] == nil { firstEvents[report.id] = report.event }
                if case .finished(let outcome) = report.event { finished[report.id] = outcome.completed }
                if finished.count == expected.count { break reading }
            }
        }
        #expect(Set(finished.keys) == Set(expected.keys))
        for (index, (id, content)) in expected.sorted(by: { $0.key.rawValue < $1.key.rawValue }).enumerated() {
            #expect(finished[id]?.sha256 == (index % 2 == 0 ? sha256Hex(content) : nil))
            #expect(finished[id]?.size == UInt64(content.count))
        }
        for (id, event) in firstEvents {
            guard case .started = event else {
                Issue.record("transfer \(id) began with \(event)")
                continue
            }
        }
        // Events of one pass of the engine's loop arrive together: fewer wake-ups than events.
        #expect(batches < events, "\(batches) batches for \(events) events")
        reporter.finish()
    }
}
