public import BargeCore
internal import CCurl
import Foundation
import Glibc
import Synchronization

private let curlGlobalInit: Void = {
    precondition(curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK, "libcurl failed to initialise")
}()

/// A started transfer: its id, for control calls, and the stream of its events (the last is `finished`).
public struct TransferHandle: Sendable {
    /// The transfer's id within its engine.
    public let id: TransferID
    /// Everything that happens to the transfer, in order.
    public let events: AsyncStream<TransferEvent>
}

/// The transfer engine: one thread drives a libcurl multi handle; any task may start, pause, resume, cancel and
/// re-pace transfers, and each change takes effect within one poll cycle.
///
/// Downloads go into a hidden partial file beside the destination, resume with `Range` + `If-Range`, are
/// verified (size, SHA-256) and then renamed into place atomically. All methods are thread-safe: they enqueue a
/// command and wake the engine thread, which alone touches libcurl.
public final class TransferEngine: Sendable {
    private let loop: EngineLoop
    private let nextID = Mutex<UInt64>(1)

    /// Starts the engine thread.
    ///
    /// - Parameter limits: at most `total` connections at once, `perHost` to one host.
    public init(limits: Concurrency = Concurrency()) {
        _ = curlGlobalInit
        self.loop = EngineLoop(limits: limits)
        let loop = self.loop
        let thread = Thread { loop.run() }
        thread.name = "barge-transfer-engine"
        thread.start()
    }

    deinit { self.loop.submit(.stop) }

    /// Starts fetching `request.destination`; returns at once.
    public func start(_ request: TransferRequest) -> TransferHandle {
        let id = self.makeID()
        let (events, continuation) = AsyncStream<TransferEvent>.makeStream(bufferingPolicy: .unbounded)
        self.loop.submit(.start(id, request, .own(continuation)))
        return TransferHandle(id: id, events: events)
    }

    /// Starts fetching `request.destination`, reporting its events, tagged with its id, to a stream shared with
    /// other transfers (one consumer for many transfers wakes once per batch of events, not once per event).
    /// The shared stream is never finished by the engine; a transfer's last event is `finished`.
    public func start(
        _ request: TransferRequest,
        reportingTo events: AsyncStream<(TransferID, TransferEvent)>.Continuation
    ) -> TransferID {
        let id = self.makeID()
        self.loop.submit(.start(id, request, .shared(id, events)))
        return id
    }

    private func makeID() -> TransferID {
        TransferID(
            self.nextID.withLock { next in
                defer { next += 1 }
                return next
            }
        )
    }

    /// Pauses a transfer in place (its connection stays open); for long suspensions cancel and start again.
    public func pause(_ id: TransferID) { self.loop.submit(.pause(id)) }

    /// Resumes a paused transfer.
    public func resume(_ id: TransferID) { self.loop.submit(.resume(id)) }

    /// Stops a transfer; its partial is kept for a later resume unless `discardPartial` is set.
    public func cancel(_ id: TransferID, discardPartial: Bool = false) {
        self.loop.submit(.cancel(id, discardPartial: discardPartial))
    }

    /// Changes a transfer's rate cap while it runs.
    public func setRate(_ id: TransferID, _ limit: RateLimit) { self.loop.submit(.setRate(id, limit)) }

    /// Changes the budget all transfers share.
    public func setGlobalRate(_ limit: RateLimit) { self.loop.submit(.setGlobalRate(limit)) }

    /// Stops every transfer (partials are synced and kept) and ends the engine thread.
    public func shutdown() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            self.loop.submit(.shutdown(done))
        }
    }
}

/// A command from any thread to the engine thread.
enum EngineCommand: Sendable {
    case start(TransferID, TransferRequest, EventSink)
    case pause(TransferID)
    case resume(TransferID)
    case cancel(TransferID, discardPartial: Bool)
    case setRate(TransferID, RateLimit)
    case setGlobalRate(RateLimit)
    case shutdown(CheckedContinuation<Void, Never>)
    case stop
}

/// The engine thread's loop and everything it owns.
///
/// `@unchecked Sendable`: `submit` is thread-safe (a `Mutex` and `curl_multi_wakeup`); everything else is only
/// touched by `run()`, on the engine thread.
final class EngineLoop: @unchecked Sendable {
    private let multi: UnsafeMutableRawPointer
    private let pending = Mutex<[EngineCommand]>([])
    private var transfers: [TransferID: ActiveTransfer] = [:]
    /// Started transfers waiting for a connection slot (libcurl would queue them too, but every queued handle
    /// would cost a scan in each loop iteration).
    private var waiting: [ActiveTransfer?] = []
    private var waitingStart = 0
    private let maximumActive: Int
    private let pacer = GlobalPacer()
    private let directories = DirectoryCache()
    private var shutdownWaiters: [CheckedContinuation<Void, Never>] = []
    /// Verified transfers waiting to be committed together.
    private var readyToCommit: [(ActiveTransfer, CompletedTransfer)] = []
    /// When the oldest of `readyToCommit` became ready.
    private var readySince = 0.0
    /// How long a verified file may wait for others to share its syncs.
    private static let commitDelay = 0.02
    private static let commitBatch = 64

    init(limits: Concurrency) {
        self.maximumActive = limits.total
        self.multi = curl_multi_init()!
        _ = barge_multi_setopt_long(self.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, limits.total)
        _ = barge_multi_setopt_long(self.multi, CURLMOPT_MAX_HOST_CONNECTIONS, limits.perHost)
    }

    func submit(_ command: EngineCommand) {
        self.pending.withLock { $0.append(command) }
        _ = curl_multi_wakeup(self.multi)
    }

    func run() {
        var running: Int32 = 0
        var stopping = false
        while !stopping {
            for command in self.pending.withLock({ commands in
                defer { commands.removeAll() }
                return commands
            }) {
                stopping = self.apply(command) || stopping
            }
            if stopping { break }
            self.admitWaiting()
            _ = curl_multi_perform(self.multi, &running)
            self.drainMessages()
            self.commitReady()
            self.admitWaiting()
            let timeout = self.tick(now: monotonicNow())
            var descriptors: Int32 = 0
            _ = curl_multi_poll(self.multi, nil, 0, timeout, &descriptors)
        }
        self.commitReady(now: true)  // verified files go into place before the engine stops
        for transfer in self.transfers.values { self.stop(transfer, outcome: .cancelled, discard: false) }
        for case let transfer? in self.waiting[self.waitingStart...] where !transfer.cancelledBeforeStart {
            transfer.continuation.yield(.finished(.cancelled))
            transfer.continuation.finish()
        }
        curl_multi_cleanup(self.multi)
        for waiter in self.shutdownWaiters { waiter.resume() }
    }

    /// Moves waiting transfers into the multi handle while there are free slots.
    private func admitWaiting() {
        // Verified files waiting for their commit hold no connection: they do not count against the limit.
        while self.transfers.count - self.readyToCommit.count < self.maximumActive,
            self.waitingStart < self.waiting.count
        {
            let transfer = self.waiting[self.waitingStart]!
            self.waiting[self.waitingStart] = nil  // the engine no longer holds it once it finishes
            self.waitingStart += 1
            guard !transfer.cancelledBeforeStart else { continue }
            self.transfers[transfer.id] = transfer
            self.beginAttempt(transfer, first: true)
        }
        if self.waitingStart == self.waiting.count {
            self.waiting.removeAll(keepingCapacity: true)
            self.waitingStart = 0
        }
    }

    /// A transfer not yet admitted, by id.
    private func waitingTransfer(_ id: TransferID) -> ActiveTransfer? {
        self.waiting[self.waitingStart...].lazy.compactMap { $0 }.first { $0.id == id && !$0.cancelledBeforeStart }
    }

    /// Applies a command; returns true when the loop must stop.
    private func apply(_ command: EngineCommand) -> Bool {
        switch command {
        case .start(let id, let request, let continuation):
            let transfer = ActiveTransfer(
                id: id,
                request: request,
                continuation: continuation,
                globalPacer: self.pacer,
                directories: self.directories
            )
            self.waiting.append(transfer)
        case .pause(let id):
            if let transfer = self.waitingTransfer(id) { transfer.userPaused = true }
            guard let transfer = self.transfers[id], !transfer.userPaused else { break }
            transfer.userPaused = true
            if transfer.inMulti { _ = curl_easy_pause(transfer.easy, CURLPAUSE_ALL) }
        case .resume(let id):
            if let transfer = self.waitingTransfer(id) { transfer.userPaused = false }
            guard let transfer = self.transfers[id], transfer.userPaused else { break }
            transfer.userPaused = false
            transfer.lastByteAt = monotonicNow()
            if transfer.inMulti, transfer.pacedUntil == nil { _ = curl_easy_pause(transfer.easy, CURLPAUSE_CONT) }
        case .cancel(let id, let discard):
            if let transfer = self.transfers[id] {
                self.stop(transfer, outcome: .cancelled, discard: discard)
            } else if let transfer = self.waitingTransfer(id) {
                transfer.cancelledBeforeStart = true
                transfer.continuation.yield(.finished(.cancelled))
                transfer.continuation.finish()
            }
        case .setRate(let id, let limit):
            guard let transfer = self.transfers[id] ?? self.waitingTransfer(id) else { break }
            switch limit {
            case .off:
                transfer.bucket = nil
            case .limited(let rate):
                if transfer.bucket == nil {
                    transfer.bucket = TokenBucket(bytesPerSecond: rate.bytesPerSecond, now: monotonicNow())
                } else {
                    transfer.bucket!.setRate(bytesPerSecond: rate.bytesPerSecond, now: monotonicNow())
                }
            }
        case .setGlobalRate(let limit):
            switch limit {
            case .off: self.pacer.bucket = nil
            case .limited(let rate):
                if self.pacer.bucket == nil {
                    self.pacer.bucket = TokenBucket(bytesPerSecond: rate.bytesPerSecond, now: monotonicNow())
                } else {
                    self.pacer.bucket!.setRate(bytesPerSecond: rate.bytesPerSecond, now: monotonicNow())
                }
            }
        case .shutdown(let waiter):
            self.shutdownWaiters.append(waiter)
            return true
        case .stop:
            return true
        }
        return false
    }

    /// Unpauses paced transfers that are due, fails stalled ones, reports progress; returns the poll timeout.
    private func tick(now: Double) -> Int32 {
        guard !self.transfers.isEmpty else { return self.waitingStart < self.waiting.count ? 0 : 3_600_000 }
        var wake = self.readyToCommit.isEmpty ? now + 1 : min(now + 1, self.readySince + Self.commitDelay)
        for transfer in Array(self.transfers.values) {
            if let until = transfer.pacedUntil, !transfer.userPaused {
                if until <= now {
                    transfer.pacedUntil = nil
                    transfer.lastByteAt = now
                    if transfer.inMulti { _ = curl_easy_pause(transfer.easy, CURLPAUSE_CONT) }
                    wake = now
                } else {
                    wake = min(wake, until)
                }
            }
            if transfer.inMulti, !transfer.userPaused, transfer.pacedUntil == nil,
                now - transfer.lastByteAt > transfer.request.stallTimeout
            {
                let host = FailureClassifier.host(of: transfer.currentSource)
                transfer.abortFailure = TransferFailure(
                    .transient,
                    "stalled: no data from \(host) for \(Int(transfer.request.stallTimeout))s"
                )
                self.detach(transfer)
                self.attemptEnded(transfer, code: CURLE_OPERATION_TIMEDOUT)
                continue
            }
            transfer.reportProgressIfDue(now: now)
        }
        return Int32(max(0, min(1000, (wake - now) * 1000)).rounded(.up))
    }

    private func drainMessages() {
        var left: Int32 = 0
        while let message = curl_multi_info_read(self.multi, &left) {
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
            let code = message.pointee.data.result
            var context: UnsafeMutableRawPointer?
            _ = barge_easy_getinfo_private(easy, &context)
            let transfer = Unmanaged<ActiveTransfer>.fromOpaque(context!).takeUnretainedValue()
            self.detach(transfer)
            self.attemptEnded(transfer, code: code)
        }
    }

    private func detach(_ transfer: ActiveTransfer) {
        if transfer.inMulti {
            curl_multi_remove_handle(self.multi, transfer.easy)
            transfer.inMulti = false
        }
    }

    // MARK: Attempts

    private func beginAttempt(_ transfer: ActiveTransfer, first: Bool) {
        do {
            try transfer.configureAttempt(firstAttempt: first)
        } catch {
            self.failOver(transfer, error)
            return
        }
        transfer.pacedUntil = nil
        guard curl_multi_add_handle(self.multi, transfer.easy) == CURLM_OK else {
            self.finish(transfer, .failed(TransferFailure(.transient, "libcurl could not start the transfer")))
            return
        }
        transfer.inMulti = true
        if transfer.userPaused { _ = curl_easy_pause(transfer.easy, CURLPAUSE_ALL) }
    }

    /// Decides what follows the end of an attempt: completion, a restart, the next mirror, or failure.
    private func attemptEnded(_ transfer: ActiveTransfer, code: CURLcode) {
        if transfer.restartFromZero, transfer.abortFailure == nil {
            transfer.restarts += 1
            guard transfer.restarts <= 3 else {
                self.failOver(
                    transfer,
                    TransferFailure(
                        .transient,
                        "\(FailureClassifier.host(of: transfer.currentSource)) keeps sending unusable ranges"
                    )
                )
                return
            }
            self.beginAttempt(transfer, first: false)
            return
        }
        if let failure = transfer.abortFailure {
            if failure.kind == .permanent { transfer.partial?.discard() }
            self.failOver(transfer, failure)
            return
        }
        guard code == CURLE_OK else {
            self.failOver(transfer, self.failure(for: transfer, code: code))
            return
        }
        guard transfer.isHTTP else {
            self.complete(transfer)
            return
        }
        switch transfer.status {
        case 304:
            transfer.partial?.discard()
            self.finish(transfer, .notModified(transfer.request.currentValidators ?? transfer.validators))
        case 416:
            let range = ContentRange(transfer.responseHeaders["content-range"])
            if transfer.attemptOffset > 0, let total = range?.total, total == transfer.attemptOffset {
                self.complete(transfer)  // The partial already holds the whole file.
            } else {
                transfer.restartFromZero = true
                self.attemptEnded(transfer, code: CURLE_OK)
            }
        case 200...299:
            self.complete(transfer)
        default:
            let retryAfter = FailureClassifier.retryAfter(
                transfer.responseHeaders["retry-after"],
                now: Date().timeIntervalSince1970
            )
            self.failOver(
                transfer,
                FailureClassifier.failure(status: transfer.status, url: transfer.currentSource, retryAfter: retryAfter)
            )
        }
    }

    private func failure(for transfer: ActiveTransfer, code: CURLcode) -> TransferFailure {
        if code == CURLE_UNSUPPORTED_PROTOCOL, (300...399).contains(transfer.status),
            let location = transfer.responseHeaders["location"], location.lowercased().hasPrefix("http:"),
            transfer.currentSource.lowercased().hasPrefix("https:")
        {
            return TransferFailure(
                .permanent,
                "refused a redirect from https to http (\(location)); the entry must allow insecure redirects"
            )
        }
        return FailureClassifier.failure(code: code, url: transfer.currentSource, detail: transfer.errorDetail)
    }

    /// Verifies the partial and commits it into place.
    private func complete(_ transfer: ActiveTransfer) {
        guard let partial = transfer.partial else {
            self.finish(transfer, .failed(TransferFailure(.transient, "no partial file")))
            return
        }
        do {
            try partial.flush()
        } catch {
            self.failOver(
                transfer,
                TransferFailure(error.isTransient ? .transient : .permanent, "cannot write: \(error)")
            )
            return
        }
        let size = partial.length
        if let expected = transfer.request.expectedSize, size != expected {
            partial.discard()
            self.failOver(
                transfer,
                TransferFailure(.permanent, "size mismatch: expected \(expected) bytes, got \(size)")
            )
            return
        }
        let digest = partial.digest()
        if let expected = transfer.request.sha256, expected != digest {
            partial.discard()
            self.failOver(
                transfer,
                TransferFailure(.permanent, "hash mismatch: expected \(expected.prefix(8))…, got \(digest.prefix(8))…")
            )
            return
        }
        let validators =
            transfer.validators.isEmpty
            ? (partial.validator.flatMap(Validators.init(encoded:)) ?? Validators()) : transfer.validators
        var effective: UnsafeMutablePointer<CChar>?
        _ = barge_easy_getinfo_string(transfer.easy, CURLINFO_EFFECTIVE_URL, &effective)
        let done = CompletedTransfer(
            url: effective.map { String(cString: $0) } ?? transfer.currentSource,
            size: size,
            sha256: digest,
            validators: validators,
            transferred: transfer.transferred
        )
        if self.readyToCommit.isEmpty { self.readySince = monotonicNow() }
        self.readyToCommit.append((transfer, done))
    }

    /// Puts every verified file of this iteration in place: alone with `fsync`s, together with grouped syncs.
    ///
    /// A verified file waits up to 20 ms for others (or until 64 are ready, or nothing else is running), so that a
    /// burst of small files shares two syncs instead of paying two `fsync`s each.
    private func commitReady(now force: Bool = false) {
        // A transfer cancelled after its verification is no longer the engine's to commit.
        self.readyToCommit.removeAll { self.transfers[$0.0.id] !== $0.0 }
        guard !self.readyToCommit.isEmpty else { return }
        let othersRunning = self.transfers.count > self.readyToCommit.count || self.waitingStart < self.waiting.count
        if !force, othersRunning, self.readyToCommit.count < Self.commitBatch,
            monotonicNow() - self.readySince < Self.commitDelay
        {
            return
        }
        let batch = self.readyToCommit
        self.readyToCommit.removeAll()
        let errors: [BargeSystemError?]
        if batch.count == 1, let partial = batch[0].0.partial {
            do throws(BargeSystemError) {
                try partial.commit(mode: batch[0].0.request.mode, owner: batch[0].0.request.owner)
                errors = [nil]
            } catch {
                errors = [error]
            }
        } else {
            errors = PartialFile.commit(
                batch.map { ($0.0.partial!, mode: $0.0.request.mode, owner: $0.0.request.owner) }
            )
        }
        for ((transfer, done), error) in zip(batch, errors) {
            if let error {
                self.failOver(
                    transfer,
                    TransferFailure(
                        error.isTransient ? .transient : .permanent,
                        "cannot put the file in place: \(error)"
                    )
                )
            } else {
                transfer.reportProgressIfDue(now: monotonicNow(), force: true)
                self.finish(transfer, .completed(done))
            }
        }
    }

    /// Tries the next mirror, or finishes with the failures of all of them.
    private func failOver(_ transfer: ActiveTransfer, _ failure: TransferFailure) {
        transfer.failures.append(failure)
        if transfer.sourceIndex + 1 < transfer.request.sources.count {
            transfer.sourceIndex += 1
            transfer.restarts = 0
            transfer.decodeContent = false
            self.beginAttempt(transfer, first: false)
            return
        }
        if let partial = transfer.partial {
            // Keep what arrived: the next run resumes from it.
            try? partial.keepForResume()
        }
        let failures = transfer.failures
        guard failures.count > 1 else {
            self.finish(transfer, .failed(failure))
            return
        }
        let kind: TransferFailure.Kind = failures.contains { $0.kind == .transient } ? .transient : .permanent
        let reason = "all \(failures.count) sources failed: " + failures.map(\.reason).joined(separator: "; ")
        let retryAfter = failures.compactMap(\.retryAfter).min()
        self.finish(transfer, .failed(TransferFailure(kind, reason, retryAfter: retryAfter)))
    }

    private func stop(_ transfer: ActiveTransfer, outcome: TransferOutcome, discard: Bool) {
        self.detach(transfer)
        if discard {
            transfer.partial?.discard()
        } else if let partial = transfer.partial {
            if (try? partial.sync()) != nil, partial.length > 0 {
                transfer.continuation.yield(.checkpoint(offset: partial.length))
            }
        }
        self.finish(transfer, outcome)
    }

    private func finish(_ transfer: ActiveTransfer, _ outcome: TransferOutcome) {
        self.detach(transfer)
        if case .failed = outcome, let partial = transfer.partial, partial.length == 0 { partial.discard() }
        transfer.continuation.yield(.finished(outcome))
        transfer.continuation.finish()
        self.transfers.removeValue(forKey: transfer.id)
    }
}
