public import BargeCore
import CBargeLinux
internal import CCurl
import Foundation
import Glibc
import Synchronization

let curlGlobalInit: Void = {
    precondition(curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK, "libcurl failed to initialise")
}()

/// A started transfer: its id, for control calls, and the stream of its events (the last is `finished`).
public struct TransferHandle: Sendable {
    /// The transfer's id within its engine.
    public let id: TransferID
    /// Everything that happens to the transfer, in order.
    public let events: AsyncStream<TransferEvent>
}

/// The transfer engine: engine threads each drive a libcurl multi handle; any task may start, pause, resume, cancel
/// and re-pace transfers, and each change takes effect within one poll cycle.
///
/// Downloads go into a hidden partial file beside the destination, resume with `Range` + `If-Range`, are
/// verified (size, SHA-256) and then renamed into place atomically. All methods are thread-safe: they enqueue a
/// command and wake the engine thread that runs the transfer, which alone touches its libcurl handles.
///
/// One engine thread serves up to 8 connections; with more (`limits.total`), and the processors to run them,
/// several threads share the transfers (each host's take them in turn), each with its share of the total and
/// per-host limits and its own write and commit queues, all drawing from one global rate budget. On a fast network
/// one thread's CPU (libcurl's parsing, the kernel's network work) is the bound of a burst of small files: two
/// threads on two cores took 2,000 files of 16 KiB in 0.264 s where one took 0.294 s (interleaved, 13 rounds).
public final class TransferEngine: Sendable {
    private let loops: [EngineLoop]
    private let pacer = GlobalPacer()
    /// Each interface's traffic (``InterfaceTraffic``), made when a transfer is first bound to it and kept.
    private let interfaces = Mutex<[String: InterfaceTraffic]>([:])
    /// The bytes read by transfers bound to no interface (their link is not known to the engine).
    private let unbound = InterfaceTraffic(isBound: false)
    /// The next transfer's sequence number, and each host's next turn among the engine threads.
    private let routing = Mutex<(next: UInt64, turns: [String: UInt64])>((0, [:]))

    /// Starts the engine threads.
    ///
    /// - Parameters:
    ///   - limits: at most `total` connections at once, `perHost` to one host.
    ///   - threads: how many engine threads share the transfers; by default one per 8 connections of
    ///     `limits.total`, at most one per processor and per connection allowed to one host.
    public convenience init(limits: Concurrency = Concurrency(), threads: Int? = nil) {
        self.init(limits: limits, threads: threads, commitPacing: CommitPacing())
    }

    /// ``init(limits:threads:)`` with the batches of group commit set (the tests make them large or slow).
    init(limits: Concurrency, threads: Int?, commitPacing: CommitPacing) {
        _ = curlGlobalInit
        let count = max(1, min(threads ?? Self.defaultThreads(for: limits), limits.total, limits.perHost))
        var descriptors = rlimit()
        let descriptorLimit =
            getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &descriptors) == 0
            ? Int(clamping: descriptors.rlim_cur) : 1024
        let bound = commitPacing.waitingBound(descriptorLimit: descriptorLimit, threads: count)
        let pacing = commitPacing.fitted(toWaiting: bound)
        let pacer = self.pacer
        self.loops = (0..<count).map { index in
            var share = limits
            share.total = limits.total / count + (index < limits.total % count ? 1 : 0)
            share.perHost = limits.perHost / count + (index < limits.perHost % count ? 1 : 0)
            return EngineLoop(limits: share, pacer: pacer, commitPacing: pacing, maximumAwaitingCommit: bound)
        }
        for (index, loop) in self.loops.enumerated() {
            let name = count == 1 ? "barge-engine" : "barge-engine-\(index)"
            let thread = Thread {
                // The kernel's name (`top -H`, `ps -L`, perf): Foundation does not set it on Linux, and a thread
                // otherwise keeps the name of the one that created it.
                _ = CBargeLinux_name_this_thread(name)
                loop.run()
            }
            thread.name = name
            thread.start()
        }
    }

    /// One engine thread per 8 connections, at most one per processor.
    static func defaultThreads(for limits: Concurrency) -> Int {
        min(ProcessInfo.processInfo.activeProcessorCount, (limits.total + 7) / 8)
    }

    /// How many engine threads share the transfers.
    public var threadCount: Int { self.loops.count }

    /// How many jobs the engine threads have handed to their commit queues so far (each syncs the file system, up
    /// to twice): what the tests of group commit count.
    var commitJobs: Int { self.loops.reduce(0) { $0 + $1.commitJobs.load(ordering: .relaxed) } }

    deinit { for loop in self.loops { loop.submit(.stop) } }

    /// The engine thread that runs a transfer: its id says (`(id - 1) % threads`).
    private func loop(for id: TransferID) -> EngineLoop {
        self.loops[Int((id.rawValue &- 1) % UInt64(self.loops.count))]
    }

    /// A new transfer's id, which names the engine thread that runs it: the transfers to one host take the
    /// threads in turn, so each thread gets its share of every host's transfers, as it has its share of the
    /// per-host limit (by id alone, transfers alternating between two hosts would all of one host land on one
    /// thread, which would run them on half the host's connections).
    private func makeID(for request: TransferRequest) -> (TransferID, EngineLoop) {
        let count = UInt64(self.loops.count)
        let (sequence, turn) = self.routing.withLock { state in
            defer { state.next += 1 }
            guard count > 1 else { return (state.next, UInt64(0)) }
            let host = URLRules.host(of: request.sources.first ?? "")
            if state.turns.count >= 1024 { state.turns.removeAll() }
            let turn = state.turns[host, default: 0]
            state.turns[host] = turn &+ 1
            return (state.next, turn % count)
        }
        let id = TransferID(sequence &* count &+ turn &+ 1)
        return (id, self.loops[Int(turn)])
    }

    /// Starts fetching `request.destination`; returns at once.
    public func start(_ request: TransferRequest) -> TransferHandle {
        let (id, loop) = self.makeID(for: request)
        let (events, continuation) = AsyncStream<TransferEvent>.makeStream(bufferingPolicy: .unbounded)
        loop.submit(.start(loop.makeTransfer(id, request, .own(continuation), traffic: self.traffic(of: request))))
        return TransferHandle(id: id, events: events)
    }

    /// A report stream for many transfers started with ``start(_:reportingTo:)``: their events arrive in batches,
    /// at most one per ``TransferReporter/deliveryInterval`` (5 ms) from all engine threads together (and one
    /// more as each thread stops). The engine never finishes the stream; a transfer's last event is `finished`,
    /// and ``TransferReporter/finish()`` ends the stream.
    public func makeReportStream() -> (reports: AsyncStream<[TransferReport]>, reporter: TransferReporter) {
        let (reports, continuation) = AsyncStream<[TransferReport]>.makeStream(bufferingPolicy: .unbounded)
        return (reports, TransferReporter(continuation))
    }

    /// Starts fetching `request.destination`, reporting its events to a stream shared with other transfers.
    public func start(_ request: TransferRequest, reportingTo reporter: TransferReporter) -> TransferID {
        let (id, loop) = self.makeID(for: request)
        loop.submit(.start(loop.makeTransfer(id, request, .shared(id, reporter), traffic: self.traffic(of: request))))
        return id
    }

    /// Pauses a transfer in place (its connection stays open); for long suspensions cancel and start again.
    public func pause(_ id: TransferID) { self.loop(for: id).submit(.pause(id)) }

    /// Resumes a paused transfer.
    public func resume(_ id: TransferID) { self.loop(for: id).submit(.resume(id)) }

    /// Stops a transfer; its partial is kept for a later resume unless `discardPartial` is set.
    public func cancel(_ id: TransferID, discardPartial: Bool = false) {
        self.loop(for: id).submit(.cancel(id, discardPartial: discardPartial))
    }

    /// Changes a transfer's rate cap while it runs.
    public func setRate(_ id: TransferID, _ limit: RateLimit) { self.loop(for: id).submit(.setRate(id, limit)) }

    /// Changes the budget all transfers share: the next bytes draw from the new one (a transfer the old budget
    /// paused waits out that pause first).
    public func setGlobalRate(_ limit: RateLimit) { self.pacer.set(limit, now: monotonicNow()) }

    /// Changes the budget shared by the transfers bound to `interface` that yield (``TransferRequest/yields``).
    public func setYieldRate(on interface: String, _ limit: RateLimit, direction: YieldController.Direction) {
        self.traffic(on: interface).pacer(direction).set(limit, now: monotonicNow())
    }

    /// The bytes the kernel has received so far for the connections of the transfers bound to each interface (TCP
    /// payload, counted from each socket's `tcpi_bytes_received` by the engine thread that owns it, before this
    /// returns). Unlike the bytes the transfers read, they follow the interface's own counter while the transfers
    /// are paced: libcurl reads a whole buffer from the socket at once and holds it while a transfer waits, and
    /// TCP refills the window in a burst. The bytes of transfers bound to no interface (a name that did not
    /// resolve, no monitor) are counted on every interface: they may leave by any, and are Barge's own wherever.
    /// The same for what their peers acknowledged (`tcpi_bytes_acked`) is `sent`.
    public func wireBytes() async -> [String: WireBytes] {
        for loop in self.loops {
            await withCheckedContinuation { reply in loop.submit(.countWireBytes(reply)) }
        }
        let unbound = WireBytes(
            received: self.unbound.wire.load(ordering: .relaxed),
            sent: self.unbound.wireSent.load(ordering: .relaxed)
        )
        return self.interfaces.withLock { interfaces in
            interfaces.mapValues { traffic in
                WireBytes(
                    received: traffic.wire.load(ordering: .relaxed) &+ unbound.received,
                    sent: traffic.wireSent.load(ordering: .relaxed) &+ unbound.sent
                )
            }
        }
    }

    private func traffic(on interface: String) -> InterfaceTraffic {
        self.interfaces.withLock { traffic in
            if let known = traffic[interface] { return known }
            let made = InterfaceTraffic(isBound: true)
            traffic[interface] = made
            return made
        }
    }

    private func traffic(of request: TransferRequest) -> InterfaceTraffic {
        request.interface.map(self.traffic(on:)) ?? self.unbound
    }

    /// Stops every transfer (partials are synced and kept) and ends the engine threads.
    public func shutdown() async {
        await withTaskGroup(of: Void.self) { group in
            for loop in self.loops {
                group.addTask {
                    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                        loop.submit(.shutdown(done))
                    }
                }
            }
        }
    }
}

/// A command from any thread to the engine thread.
enum EngineCommand: Sendable {
    case start(NewTransfer)
    case pause(TransferID)
    case resume(TransferID)
    case cancel(TransferID, discardPartial: Bool)
    case setRate(TransferID, RateLimit)
    /// Counts what its connections received since the last count (``SocketLedger/count()``).
    case countWireBytes(CheckedContinuation<Void, Never>)
    case shutdown(CheckedContinuation<Void, Never>)
    case stop
    /// The prepare queue opened (or failed to open) an admitted transfer's partial.
    case prepared(TransferID, Result<PreparedPartial, TransferFailure>)
    /// The write queue wrote out and checked the batch handed to it (one result per file, in order).
    case written([Result<CompletedTransfer, TransferFailure>])
    /// The commit queue did the job handed to it.
    case committed(CommitReport)
    /// Whether the destination is this transfer's file, placed by an earlier run that did not record it.
    case checkedPlaced(TransferID, PartialFile, CompletedTransfer?)
    /// A background checkpoint of this partial (in this round: `resets`) holds up to `offset`.
    case checkpointed(TransferID, PartialFile, resets: Int, offset: UInt64)
    /// An upload's file was hashed before sending (``UploadRequest/unchangedIfSHA256``): its hash, nil when it
    /// could not be read whole.
    case uploadHashed(TransferID, String?)
}

/// A transfer made by ``EngineLoop/makeTransfer(_:_:_:traffic:)`` on its way to the engine thread.
///
/// `@unchecked Sendable`: the thread that made it submits it and never touches it again; from then on only the
/// engine thread does.
struct NewTransfer: @unchecked Sendable {
    let transfer: ActiveTransfer
}

/// The engine thread's loop and everything it owns.
///
/// `@unchecked Sendable`: `submit` is thread-safe (a `Mutex` and `curl_multi_wakeup`); everything else is only
/// touched by `run()`, on the engine thread.
final class EngineLoop: @unchecked Sendable {
    private let multi: UnsafeMutableRawPointer
    /// Commands for the next pass; `stopped` once the loop has ended (its multi handle is gone).
    private let pending = Mutex<(commands: [EngineCommand], stopped: Bool)>(([], false))
    private var transfers: [TransferID: ActiveTransfer] = [:]
    /// Its connections' sockets, counted per interface.
    let sockets = SocketLedger()
    /// Started transfers waiting for a connection, admitted by priority and only while their host has a free
    /// connection (libcurl never queues one: its wait would count as a stall, and every queued handle would cost
    /// a scan in each loop iteration).
    private var waiting = AdmissionQueue<ActiveTransfer>()
    /// Admitted transfers holding a connection, by the host they were admitted for.
    private var connectionsPerHost: [String: Int] = [:]
    private let maximumActive: Int
    private let maximumPerHost: Int
    private let pacer: GlobalPacer
    private let directories = DirectoryCache()
    private let easyHandles: EasyHandlePool
    private var shutdownWaiters: [CheckedContinuation<Void, Never>] = []
    /// Received transfers waiting for the write queue.
    private var readyToCommit: [(ActiveTransfer, FileToCommit)] = []
    /// The batch the write queue is writing out and checking; nil when it is idle.
    private var writing: [(ActiveTransfer, FileToCommit)]?
    /// Written and checked, waiting for the commit queue.
    private var written: [(ActiveTransfer, FileToCommit, CompletedTransfer)] = []
    /// Since when `written` has not been empty.
    private var writtenSince = 0.0
    /// The batch of the commit queue's current job (empty for a sync alone); nil when it is idle.
    private var committing: [ActiveTransfer]?
    /// Transfers whose files are in place, waiting for the sync that makes them durable before they are done.
    private var placed: [(ActiveTransfer, CompletedTransfer)] = []
    /// Since when `placed` has not been empty.
    private var placedSince = 0.0
    /// When waiting files go to the commit queue in batches.
    private let commitPacing: CommitPacing
    /// When the files waiting for the commit queue are due (the loop wakes then); nil when none wait for a time.
    private var commitDue: Double?
    /// Set once the loop stops: everything waiting is committed at once.
    private var committingEverything = false
    /// Jobs handed to the commit queue so far (``TransferEngine/commitJobs``).
    let commitJobs = Atomic<Int>(0)
    /// Syncs and renames run here, off the engine thread, so the network never waits for the disk: while one
    /// batch is being made durable, the next one gathers (group commit).
    private let commitQueue = DispatchQueue(label: "barge.commit", qos: .utility)
    /// Received files are written out and checked here, meanwhile: the commit queue's wait for a sync (1-2 ms
    /// each on this project's VM, about as long as all the writing) never holds up the next batch's writes.
    private let writeQueue = DispatchQueue(label: "barge.write", qos: .utility)
    private let committer = Committer()
    /// Large partials are re-hashed here, off the engine thread, before they resume.
    private static let prepareQueue = DispatchQueue(label: "barge.prepare", qos: .utility)
    /// A partial up to this size is re-hashed on the engine thread (a hop to the queue would cost more).
    private static let inlineRehashLimit: UInt64 = 4 << 20
    /// Received files on their way through the write and commit queues (each holds its buffer until it is
    /// written, then an open file, until it is placed): past this many, no new transfer starts until commits catch
    /// up, which bounds the memory and descriptors a fast network and a slow disk can pile up (per engine thread:
    /// each has its own queues): ``CommitPacing/waitingBound(descriptorLimit:threads:)``.
    private let maximumAwaitingCommit: Int
    /// What each tus server (by creation URL) announced on OPTIONS: asked once, not before every file.
    private var tusCapabilities: [String: UploadExchange.Capabilities] = [:]
    /// Transfers cancelled with `discardPartial` while their partial was being re-hashed.
    private var discardWhenPrepared: Set<TransferID> = []
    /// The report streams transfers of this engine have used; each delivers its batch at most once per 5 ms.
    private var reporters: [ObjectIdentifier: TransferReporter] = [:]

    init(limits: Concurrency, pacer: GlobalPacer, commitPacing: CommitPacing, maximumAwaitingCommit: Int) {
        self.pacer = pacer
        self.maximumActive = limits.total
        self.maximumPerHost = limits.perHost
        self.maximumAwaitingCommit = maximumAwaitingCommit
        self.commitPacing = commitPacing
        self.easyHandles = EasyHandlePool(capacity: limits.total)
        self.multi = curl_multi_init()!
        _ = barge_multi_setopt_long(self.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, limits.total)
        // No per-host limit in libcurl: Barge's admission keeps it (AdmissionQueue), so libcurl never holds a
        // transfer back, where its wait would run into the stall timeout.
        _ = barge_multi_setopt_long(self.multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0)
        // Keep as many idle connections as may run at once (libcurl's default follows the handles added, which
        // shrinks as transfers finish and closes connections the next files would reuse).
        _ = barge_multi_setopt_long(self.multi, CURLMOPT_MAXCONNECTS, limits.total)
    }

    /// A transfer's state, made on the caller's thread: a burst of starts (an agent's new manifest, a list) then
    /// costs the engine thread an append each, not an allocation and set-up each (2,000 starts took 14 ms of it).
    func makeTransfer(
        _ id: TransferID,
        _ request: TransferRequest,
        _ sink: EventSink,
        traffic: InterfaceTraffic?
    ) -> NewTransfer {
        NewTransfer(
            transfer: ActiveTransfer(
                id: id,
                request: request,
                continuation: sink,
                globalPacer: self.pacer,
                traffic: traffic,
                sockets: self.sockets,
                easyHandles: self.easyHandles,
                checkpointed: { [weak self] id, partial, resets, offset in
                    self?.submit(.checkpointed(id, partial, resets: resets, offset: offset))
                }
            )
        )
    }

    func submit(_ command: EngineCommand) {
        // The loop takes all pending commands at once: only the first of a burst needs to wake it. The wake-up is
        // made under the lock: the loop marks itself stopped under it before it frees the multi handle, so a
        // wake-up never reaches a freed handle.
        let accepted = self.pending.withLock { pending in
            guard !pending.stopped else { return false }
            if pending.commands.isEmpty { _ = curl_multi_wakeup(self.multi) }
            pending.commands.append(command)
            return true
        }
        if !accepted { Self.refuse(command) }
    }

    /// A command that came after the loop ended: a transfer is cancelled at once, a shutdown is done.
    private static func refuse(_ command: EngineCommand) {
        switch command {
        case .start(let new):
            let sink = new.transfer.continuation
            sink.yield(.finished(.cancelled))
            sink.finish()
            if case .shared(_, let reporter) = sink { reporter.deliverAll() }
        case .shutdown(let waiter):
            waiter.resume()
        case .countWireBytes(let reply):
            reply.resume()  // nothing left to count
        default:
            break
        }
    }

    func run() {
        var running: Int32 = 0
        var stopping = false
        while !stopping {
            for command in self.takeCommands() {
                stopping = self.apply(command) || stopping
            }
            if stopping { break }
            self.directories.startPass()
            self.admitWaiting()
            _ = curl_multi_perform(self.multi, &running)
            self.drainMessages()
            self.commitReady()
            self.admitWaiting()
            let now = monotonicNow()
            var timeout = self.tick(now: now)
            // With nothing left to run here, what was collected goes now: waiting out the interval would only
            // delay a burst's last reports, which its reader (a `barge get`, a batch of jobs) is waiting for.
            let idle = self.transfers.isEmpty && !self.hasWaiting
            if let due = self.commitDue { timeout = min(timeout, Int32(max(0, (due - now) * 1000).rounded(.up))) }
            for reporter in self.reporters.values {
                if idle {
                    reporter.deliverAll()
                    continue
                }
                guard let due = reporter.deliver(now: now) else { continue }
                timeout = min(timeout, Int32(((due - now) * 1000).rounded(.up)))  // wake to deliver what waits
            }
            var descriptors: Int32 = 0
            _ = curl_multi_poll(self.multi, nil, 0, timeout, &descriptors)
        }
        self.commitEverything()  // verified files go into place before the engine stops
        for transfer in self.transfers.values { self.stop(transfer, outcome: .cancelled, discard: false) }
        for transfer in self.waiting.removeAll() {
            transfer.continuation.yield(.finished(.cancelled))
            transfer.continuation.finish()
        }
        for reporter in self.reporters.values { reporter.deliverAll() }
        let late = self.takeCommands(stopping: true)
        curl_multi_cleanup(self.multi)
        for waiter in self.shutdownWaiters { waiter.resume() }
        for command in late { Self.refuse(command) }
    }

    /// The commands submitted since the last call; `stopping` refuses later ones (the loop has ended).
    private func takeCommands(stopping: Bool = false) -> [EngineCommand] {
        self.pending.withLock { pending in
            if stopping { pending.stopped = true }
            defer { pending.commands.removeAll() }
            return pending.commands
        }
    }

    /// Transfers started but not yet admitted (some may be cancelled already).
    private var hasWaiting: Bool { !self.waiting.isEmpty }

    /// Received files not yet placed (each holds an open file).
    private var awaitingCommit: Int {
        self.readyToCommit.count + (self.writing?.count ?? 0) + self.written.count + (self.committing?.count ?? 0)
    }

    /// Whether transfers of this thread are receiving or preparing, or waiting to start while there is room for
    /// them (when the bound on waiting files holds them back, what waits must go for them to start).
    private var othersRunning: Bool {
        self.transfers.count > self.awaitingCommit + self.placed.count
            || (self.hasWaiting && self.awaitingCommit < self.maximumAwaitingCommit)
    }

    /// Moves waiting transfers into the multi handle while there are free connections, in all and to their hosts.
    private func admitWaiting() {
        // Files waiting for their commit hold no connection: they do not count against the limit, but those not
        // yet placed count against their own bound.
        let awaitingCommit = self.awaitingCommit
        let committing = awaitingCommit + self.placed.count
        while self.transfers.count - committing < self.maximumActive, awaitingCommit < self.maximumAwaitingCommit,
            let transfer = self.waiting.next(where: { self.connectionsPerHost[$0, default: 0] < self.maximumPerHost })
        {
            self.transfers[transfer.id] = transfer
            self.takeConnection(transfer)
            self.prepare(transfer)
        }
    }

    /// Counts an admitted transfer against its host's connections.
    private func takeConnection(_ transfer: ActiveTransfer) {
        guard !transfer.holdsConnection else { return }
        transfer.holdsConnection = true
        self.connectionsPerHost[transfer.admissionHost, default: 0] += 1
    }

    /// Gives a transfer's connection back to its host (its file goes to be committed, or it ended).
    private func releaseConnection(_ transfer: ActiveTransfer) {
        guard transfer.holdsConnection else { return }
        transfer.holdsConnection = false
        let host = transfer.admissionHost
        let left = self.connectionsPerHost[host, default: 1] - 1
        self.connectionsPerHost[host] = left > 0 ? left : nil
    }

    /// A transfer not yet admitted, by id.
    private func waitingTransfer(_ id: TransferID) -> ActiveTransfer? {
        self.waiting.first { $0.id == id }
    }

    /// Applies a command; returns true when the loop must stop.
    private func apply(_ command: EngineCommand) -> Bool {
        switch command {
        case .start(let new):
            let transfer = new.transfer
            if case .shared(_, let reporter) = transfer.continuation {
                self.reporters[ObjectIdentifier(reporter)] = reporter
            }
            self.waiting.append(transfer, host: transfer.admissionHost, priority: transfer.request.priority)
        case .pause(let id):
            if let transfer = self.waitingTransfer(id) { transfer.userPaused = true }
            guard let transfer = self.transfers[id], !transfer.userPaused else { break }
            transfer.userPaused = true
            if transfer.inMulti { _ = curl_easy_pause(transfer.easy, CURLPAUSE_ALL) }
            // What it received up to the pause is told now, not at the next tick: a paused job's bytes stand still
            // from the moment it is shown paused.
            transfer.reportProgressIfDue(now: monotonicNow(), force: transfer.hasUnreportedBytes)
        case .resume(let id):
            if let transfer = self.waitingTransfer(id) { transfer.userPaused = false }
            guard let transfer = self.transfers[id], transfer.userPaused else { break }
            transfer.userPaused = false
            transfer.lastByteAt = monotonicNow()
            if transfer.inMulti, transfer.pacedUntil == nil { _ = curl_easy_pause(transfer.easy, CURLPAUSE_CONT) }
        case .cancel(let id, let discard):
            if let transfer = self.transfers[id] {
                // Too late once its commit has begun: it completes.
                guard !transfer.isCommitting else { break }
                if transfer.isPreparing, discard { self.discardWhenPrepared.insert(id) }
                self.readyToCommit.removeAll { $0.0 === transfer }
                self.stop(transfer, outcome: .cancelled, discard: discard)
            } else if let transfer = self.waiting.remove(where: { $0.id == id }) {
                if discard {
                    // Never opened here, but a partial an earlier run left for it may be there: it goes too (unless
                    // another transfer holds it).
                    let destination = transfer.request.destination
                    Self.prepareQueue.async { PartialFiles.remove(for: destination) }
                }
                transfer.continuation.yield(.finished(.cancelled))
                transfer.continuation.finish()
            }
        case .countWireBytes(let reply):
            self.sockets.count()
            reply.resume()
        case .setRate(let id, let limit):
            guard let transfer = self.transfers[id] ?? self.waitingTransfer(id) else { break }
            transfer.bucket = TokenBucket.adjusted(transfer.bucket, to: limit, now: monotonicNow())
        case .shutdown(let waiter):
            self.shutdownWaiters.append(waiter)
            return true
        case .stop:
            return true
        case .written(let results):
            self.wrote(results)
        case .committed(let report):
            self.committed(report)
        case .prepared(let id, let result):
            self.prepared(id, result)
        case .checkedPlaced(let id, let partial, let placed):
            if let placed, let transfer = self.transfers[id], transfer.isPreparing {
                transfer.isPreparing = false
                partial.discard()
                self.finish(transfer, .completed(placed))
            } else {
                self.prepared(id, .success(PreparedPartial(partial: partial, offset: 0)))
            }
        case .uploadHashed(let id, let unchanged):
            guard let transfer = self.transfers[id], transfer.isPreparing, let upload = transfer.upload else { break }
            transfer.isPreparing = false
            guard let unchanged else {
                self.beginAttempt(transfer, first: true)
                break
            }
            // The same content as last sent: nothing to send.
            let done = CompletedTransfer(
                url: transfer.currentSource,
                size: upload.source.size,
                sha256: unchanged,
                validators: Validators(),
                transferred: 0,
                reply: nil,
                stamp: upload.source.stamp
            )
            self.finish(transfer, .completed(done))
        case .checkpointed(let id, let partial, let resets, let offset):
            // Reported only for the partial it was made of, in the same round, while the transfer runs.
            guard let transfer = self.transfers[id], let current = transfer.partial, current === partial,
                current.resets == resets, !transfer.isCommitting, !current.needsReplacing
            else { break }
            transfer.continuation.yield(.checkpoint(offset: offset))
        }
        return false
    }

    /// Unpauses paced transfers that are due, fails stalled ones, reports progress; returns the poll timeout.
    private func tick(now: Double) -> Int32 {
        guard !self.transfers.isEmpty else { return self.hasWaiting ? 0 : 3_600_000 }
        var wake = now + 1
        var stalled: [ActiveTransfer] = []  // ended after the pass, which must not change `transfers` under it
        for transfer in self.transfers.values where !transfer.isCommitting {
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
                let host = URLRules.host(of: transfer.currentSource)
                transfer.abortFailure = TransferFailure(
                    .transient,
                    "stalled: no data from \(host) for \(Int(transfer.request.stallTimeout))s"
                )
                stalled.append(transfer)
                continue
            }
            transfer.reportProgressIfDue(now: now)
        }
        for transfer in stalled {
            self.detach(transfer)
            self.attemptEnded(transfer, code: CURLE_OPERATION_TIMEDOUT)
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

    /// Opens the partial of a newly admitted transfer; the first attempt begins when it is ready to resume. A
    /// large partial is re-hashed on the prepare queue while the engine drives the other transfers.
    private func prepare(_ transfer: ActiveTransfer) {
        if let upload = transfer.request.upload {
            // An upload's file is opened here: an open and an fstat, no partial to look for.
            do {
                transfer.upload = UploadState(
                    source: try SourceFile.open(transfer.request.destination),
                    request: upload,
                    known: upload.uploadProtocol == .tus ? self.tusCapabilities[transfer.currentSource] : nil
                )
            } catch {
                self.finish(transfer, .failed(error))
                return
            }
            if let expected = upload.unchangedIfSHA256, let state = transfer.upload {
                // Hashed off this thread (the file may be large); the answer comes back as a command.
                transfer.isPreparing = true
                let (id, source) = (transfer.id, state.source)
                Self.prepareQueue.async { [self] in
                    let hash = source.sha256Hex()
                    self.submit(.uploadHashed(id, hash == expected ? hash : nil))
                }
                return
            }
            self.beginAttempt(transfer, first: true)
            return
        }
        transfer.isPreparing = true
        let (id, request) = (transfer.id, transfer.request)
        switch PreparedPartial.open(for: request, directories: self.directories) {
        case .failure(let failure):
            self.prepared(id, .failure(failure))
        case .success(let partial)
        where transfer.mayFindItPlaced && partial.sizeWhenOpened == 0 && (request.resumeOffset ?? 0) > 0:
            // The caller knew of a checkpoint, but the partial is gone: if the file was finished and placed
            // before the caller could record it (a killed agent), it is done; else it starts over. Checked once,
            // at the transfer's first start (a later partial is gone because this transfer dropped it), and off
            // this thread: it may hash the whole file.
            transfer.mayFindItPlaced = false
            Self.prepareQueue.async { [self] in
                self.submit(.checkedPlaced(id, partial, partial.finishedEarlier(for: request)))
            }
        case .success(let partial) where partial.sizeWhenOpened <= Self.inlineRehashLimit:
            self.prepared(id, PreparedPartial.resume(partial, for: request))
        case .success(let partial):
            Self.prepareQueue.async { [self] in
                self.submit(.prepared(id, PreparedPartial.resume(partial, for: request)))
            }
        }
    }

    private func prepared(_ id: TransferID, _ result: Result<PreparedPartial, TransferFailure>) {
        guard let transfer = self.transfers[id], transfer.isPreparing else {
            // Cancelled while its partial was being re-hashed.
            if case .success(let prepared) = result, prepared.offset == 0 || self.discardWhenPrepared.contains(id) {
                prepared.partial.discard()
            }
            self.discardWhenPrepared.remove(id)
            return
        }
        transfer.isPreparing = false
        switch result {
        case .success(let prepared):
            transfer.partial = prepared.partial
            transfer.preparedOffset = prepared.offset
            self.beginAttempt(transfer, first: true)
        case .failure(let failure):
            self.finish(transfer, .failed(failure))
        }
    }

    private func beginAttempt(_ transfer: ActiveTransfer, first: Bool) {
        self.takeConnection(transfer)  // again, after a commit that failed
        if transfer.upload == nil, transfer.partial?.needsReplacing ?? true {
            // A fresh start (the next mirror after wrong content): a new partial.
            transfer.partial = nil
            self.prepare(transfer)
            return
        }
        do {
            if transfer.upload != nil {
                try transfer.configureUploadAttempt()
            } else {
                try transfer.configureAttempt(firstAttempt: first)
            }
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
        if let upload = transfer.upload {
            self.uploadAttemptEnded(transfer, upload, code: code)
            return
        }
        if transfer.restartFromZero, transfer.abortFailure == nil {
            transfer.restarts += 1
            guard transfer.restarts <= 3 else {
                self.failOver(
                    transfer,
                    TransferFailure(
                        .transient,
                        "\(URLRules.host(of: transfer.currentSource)) keeps sending unusable ranges"
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
            let range = ContentRange(transfer.responseHeaders[.contentRange])
            if transfer.attemptOffset > 0, let total = range?.total, total == transfer.attemptOffset {
                self.complete(transfer)  // The partial already holds the whole file.
            } else {
                transfer.restartFromZero = true
                self.attemptEnded(transfer, code: CURLE_OK)
            }
        case 200...299:
            self.complete(transfer)
        case 301, 302, 303, 307, 308:
            self.followRedirect(transfer)
        default:
            let retryAfter = FailureClassifier.retryAfter(
                transfer.responseHeaders[.retryAfter],
                now: Date().timeIntervalSince1970
            )
            self.failOver(
                transfer,
                FailureClassifier.failure(status: transfer.status, url: transfer.currentSource, retryAfter: retryAfter)
            )
        }
    }

    /// Decides what follows an upload's request: the exchange's next step, completion, or failure.
    private func uploadAttemptEnded(_ transfer: ActiveTransfer, _ upload: UploadState, code: CURLcode) {
        if let failure = transfer.abortFailure {
            self.failOver(transfer, failure)
            return
        }
        guard code == CURLE_OK else {
            self.failOver(transfer, self.failure(for: transfer, code: code))
            return
        }
        var status = 0
        _ = barge_easy_getinfo_long(transfer.easy, CURLINFO_RESPONSE_CODE, &status)
        transfer.status = status
        // A success before the whole body went (a server that answered early): the server cannot have the file.
        // tus is exempt: its answer says how much it took.
        let body = upload.exchange.body
        if (200...299).contains(status), upload.request.uploadProtocol == .put, upload.bodySent < body.count {
            let host = URLRules.host(of: transfer.attemptURL)
            self.failOver(
                transfer,
                TransferFailure(
                    .transient,
                    "\(host) answered \(status) after \(upload.bodySent) of \(body.count) bytes; sent again"
                )
            )
            return
        }
        let (session, confirmed) = (upload.exchange.session, upload.exchange.confirmed)
        let outcome = upload.exchange.apply(transfer.uploadResponse, base: transfer.attemptURL)
        if let capabilities = upload.exchange.capabilities, self.tusCapabilities[transfer.currentSource] == nil {
            if self.tusCapabilities.count >= 256 { self.tusCapabilities.removeAll() }  // a bound
            self.tusCapabilities[transfer.currentSource] = capabilities
        }
        if upload.exchange.session != session { transfer.continuation.yield(.uploadSession(upload.session)) }
        if upload.exchange.confirmed != confirmed {
            transfer.continuation.yield(.checkpoint(offset: upload.exchange.confirmed))
        }
        switch outcome {
        case .proceed:
            self.beginAttempt(transfer, first: false)
        case .done:
            if let change = upload.source.change() {
                // What the server holds is not the file now (a mix, for tus): it goes again, afresh.
                if upload.exchange.session != nil { transfer.continuation.yield(.uploadSession(nil)) }
                transfer.continuation.yield(.checkpoint(offset: 0))
                self.failOver(transfer, TransferFailure(.transient, change))
                return
            }
            let done = CompletedTransfer(
                url: upload.exchange.session ?? transfer.currentSource,
                size: upload.source.size,
                sha256: upload.sentSHA256,
                validators: transfer.validators,
                transferred: transfer.transferred,
                reply: upload.reply,
                stamp: upload.source.stamp
            )
            self.finish(transfer, .completed(done))
        case .unexpectedStatus:
            let retryAfter = FailureClassifier.retryAfter(
                transfer.responseHeaders[.retryAfter],
                now: Date().timeIntervalSince1970
            )
            self.failOver(
                transfer,
                FailureClassifier.failure(status: status, url: transfer.attemptURL, retryAfter: retryAfter)
            )
        case .failed(let kind, let reason):
            self.failOver(transfer, TransferFailure(kind, reason))
        }
    }

    private func failure(for transfer: ActiveTransfer, code: CURLcode) -> TransferFailure {
        FailureClassifier.failure(code: code, url: transfer.currentSource, detail: transfer.errorDetail)
    }

    /// Follows a redirect the attempt ended with, where ``RedirectPolicy`` lets it lead.
    private func followRedirect(_ transfer: ActiveTransfer) {
        var location: UnsafeMutablePointer<CChar>?
        _ = barge_easy_getinfo_string(transfer.easy, CURLINFO_REDIRECT_URL, &location)
        guard let target = location.map({ String(cString: $0) }), !target.isEmpty else {
            let host = URLRules.host(of: transfer.attemptURL)
            self.failOver(transfer, TransferFailure(.permanent, "\(host) sent a redirect without a location"))
            return
        }
        if let refusal = RedirectPolicy.refusal(
            from: transfer.attemptURL,
            to: target,
            allowInsecure: transfer.request.allowInsecureRedirect
        ) {
            self.failOver(transfer, TransferFailure(.permanent, refusal))
            return
        }
        guard transfer.redirects < transfer.request.maxRedirects else {
            self.failOver(
                transfer,
                TransferFailure(.permanent, "too many redirects from \(transfer.currentSource) (a redirect loop?)")
            )
            return
        }
        transfer.redirects += 1
        transfer.redirectedURL = target
        self.beginAttempt(transfer, first: false)
    }

    /// Hands a received file on to be written out and checked (the write queue), then put in place (the commit
    /// queue).
    private func complete(_ transfer: ActiveTransfer) {
        guard let partial = transfer.partial else {
            self.finish(transfer, .failed(TransferFailure(.transient, "no partial file")))
            return
        }
        var effective: UnsafeMutablePointer<CChar>?
        _ = barge_easy_getinfo_string(transfer.easy, CURLINFO_EFFECTIVE_URL, &effective)
        let url = effective.map { String(cString: $0) } ?? transfer.currentSource
        transfer.releaseEasyHandle()
        self.releaseConnection(transfer)
        let file = FileToCommit(
            partial: partial,
            mode: transfer.request.mode,
            owner: transfer.request.owner,
            expectedSize: transfer.request.expectedSize,
            expectedSHA256: transfer.request.sha256,
            url: url,
            validators: transfer.validators,
            transferred: transfer.transferred
        )
        self.readyToCommit.append((transfer, file))
    }

    /// Hands the received files to the write queue and the written ones to the commit queue, each unless it is
    /// busy (group commit: what gathers meanwhile goes next, together) and, while other transfers run, once a
    /// batch is full or has waited long enough (``CommitPacing``); when nothing is on its way, has the files placed
    /// before made durable.
    private func commitReady() {
        self.commitDue = nil
        if self.writing == nil, !self.readyToCommit.isEmpty {
            let batch = self.readyToCommit
            self.readyToCommit.removeAll()
            for (transfer, _) in batch { transfer.isCommitting = true }
            self.writing = batch
            let files = batch.map(\.1)
            self.writeQueue.async { [self] in self.submit(.written(Committer.write(files))) }
        }
        guard self.committing == nil else { return }
        if !self.written.isEmpty {
            // The files placed before wait for this batch's sync: they are due when the earliest of both is.
            let since = self.placed.isEmpty ? self.writtenSince : min(self.writtenSince, self.placedSince)
            guard self.isDue(count: self.written.count, since: since) else { return }
            let batch = self.written
            self.written.removeAll()
            self.committing = batch.map(\.0)
            let files = batch.map { (file: $0.1, done: $0.2) }
            self.commitJobs.add(1, ordering: .relaxed)
            self.commitQueue.async { [self] in self.submit(.committed(self.committer.commit(files))) }
        } else if self.writing == nil, !self.placed.isEmpty {
            // No batch on its way to share the sync with.
            guard self.isDue(count: self.placed.count, since: self.placedSince) else { return }
            self.committing = []
            self.commitJobs.add(1, ordering: .relaxed)
            self.commitQueue.async { [self] in self.submit(.committed(self.committer.syncPlaced())) }
        }
    }

    /// Whether `count` files waiting since `since` go now; if not, notes when they are due.
    private func isDue(count: Int, since: Double) -> Bool {
        guard !self.committingEverything else { return true }
        let decision = self.commitPacing.decide(
            count: count,
            since: since,
            now: monotonicNow(),
            othersRunning: self.othersRunning
        )
        guard case .at(let due) = decision else { return true }
        self.commitDue = due
        return false
    }

    /// Takes the write queue's results: written files wait for the commit queue, failed ones fail over.
    private func wrote(_ results: [Result<CompletedTransfer, TransferFailure>]) {
        guard let batch = self.writing else { return }
        self.writing = nil
        for ((transfer, file), result) in zip(batch, results) {
            switch result {
            case .success(let done):
                if self.written.isEmpty { self.writtenSince = monotonicNow() }
                self.written.append((transfer, file, done))
            case .failure(let failure):
                transfer.isCommitting = false
                self.failOver(transfer, failure)
            }
        }
        self.commitReady()
    }

    /// Reports what the commit queue did (transfers are done once their files are durable) and hands it the next
    /// job.
    private func committed(_ report: CommitReport) {
        guard let batch = self.committing else { return }
        self.committing = nil
        if let earlier = report.earlier {
            let placed = self.placed
            self.placed.removeAll()
            for (transfer, done) in placed {
                transfer.isCommitting = false
                switch earlier {
                case .success:
                    transfer.reportProgressIfDue(now: monotonicNow(), force: true)
                    self.finish(transfer, .completed(done))
                case .failure(let error):
                    let reason = "cannot make the file durable: \(error)"
                    self.failOver(transfer, TransferFailure(error.isTransient ? .transient : .permanent, reason))
                }
            }
        }
        for (transfer, result) in zip(batch, report.results) {
            switch result {
            case .placed(let done):
                if self.placed.isEmpty { self.placedSince = monotonicNow() }
                self.placed.append((transfer, done))
            case .failed(let failure):
                transfer.isCommitting = false
                self.failOver(transfer, failure)
            }
        }
        self.commitReady()
    }

    /// Commits everything received before the engine stops, waiting for the write and commit queues.
    private func commitEverything() {
        self.committingEverything = true
        while self.writing != nil || !self.written.isEmpty || self.committing != nil || !self.readyToCommit.isEmpty
            || !self.placed.isEmpty
        {
            self.commitReady()
            // Each job is done and its report submitted.
            if self.writing != nil { self.writeQueue.sync {} }
            if self.committing != nil { self.commitQueue.sync {} }
            for command in self.takeCommands() {
                switch command {
                case .written(let results): self.wrote(results)
                case .committed(let report): self.committed(report)
                case .shutdown(let waiter): self.shutdownWaiters.append(waiter)
                case .start, .countWireBytes: Self.refuse(command)
                default: break  // the engine is stopping
                }
            }
        }
    }

    /// Tries the next mirror, or finishes with the failures of all of them.
    private func failOver(_ transfer: ActiveTransfer, _ failure: TransferFailure) {
        transfer.failures.append(failure)
        if transfer.sourceIndex + 1 < transfer.request.sources.count {
            transfer.sourceIndex += 1
            transfer.redirectedURL = nil
            transfer.redirects = 0
            transfer.restarts = 0
            transfer.decodeContent = false
            self.beginAttempt(transfer, first: false)
            return
        }
        if let partial = transfer.partial {
            if partial.lostWriteBack {
                partial.discard()  // what is on disk is not what arrived
            } else if (try? partial.sync()) != nil, partial.length > 0 {
                // Keep what arrived, durably, and say so: the next run resumes from here, not from an older
                // checkpoint (a link that drops every few MiB still makes progress).
                transfer.continuation.yield(.checkpoint(offset: partial.length))
            }
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
        // Its lock goes before its end is told: whoever starts the job again at once finds the partial free.
        transfer.partial?.release()
        self.finish(transfer, outcome)
    }

    private func finish(_ transfer: ActiveTransfer, _ outcome: TransferOutcome) {
        // The bytes since the last tick are told before the end, whatever the end: a failed or cancelled attempt
        // moved them too (the agent's byte counters count them).
        if transfer.hasUnreportedBytes { transfer.reportProgressIfDue(now: monotonicNow(), force: true) }
        self.detach(transfer)
        self.releaseConnection(transfer)
        // Back to the pool here: the last reference may be the starting caller's, on its thread.
        transfer.releaseEasyHandle()
        if case .failed = outcome, let partial = transfer.partial, partial.isDiscarded || partial.length == 0 {
            if !partial.isDiscarded { partial.discard() }
            // Nothing of it is kept: a checkpoint the caller stored is void (else its next start, finding no
            // partial, could take an older file at the destination for this one).
            transfer.continuation.yield(.checkpoint(offset: 0))
        }
        // A partial that stays gives up its lock before the end is told (as a stopped one does): whoever starts the
        // job again at once finds it free, not held until this transfer is freed.
        if case .failed = outcome { transfer.partial?.release() }
        transfer.continuation.yield(.finished(outcome))
        transfer.continuation.finish()
        self.transfers.removeValue(forKey: transfer.id)
    }
}

/// Barge's bytes on an interface so far: the TCP payload received, and the payload sent and acknowledged.
public struct WireBytes: Sendable, Hashable {
    /// Received.
    public var received: UInt64
    /// Sent and acknowledged.
    public var sent: UInt64

    /// Creates a count.
    public init(received: UInt64, sent: UInt64) {
        self.received = received
        self.sent = sent
    }

    /// The count in `direction`.
    public subscript(direction: YieldController.Direction) -> UInt64 {
        direction == .sending ? self.sent : self.received
    }
}
