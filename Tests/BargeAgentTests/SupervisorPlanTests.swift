import BargeCore
import BargeNetwork
import BargeStore
import Foundation
import Synchronization
import Testing

@testable import BargeAgent
@testable import BargeTransfer

/// The engine as the supervisor sees it, recording what it is asked; reports are fed by the test.
final class RecordingEngine: TransferControl {
    enum Call: Equatable, Sendable {
        case start(String)
        case pause(UInt64)
        case resume(UInt64)
        case cancel(UInt64, discard: Bool)
    }

    let calls = Mutex<[Call]>([])
    private let nextID = Mutex<UInt64>(0)
    private let stream: AsyncStream<[TransferReport]>
    let reporter: TransferReporter

    init() {
        let (stream, continuation) = AsyncStream<[TransferReport]>.makeStream()
        self.stream = stream
        self.reporter = TransferReporter(continuation)
    }

    var recorded: [Call] { self.calls.withLock { $0 } }

    func makeReportStream() -> (reports: AsyncStream<[TransferReport]>, reporter: TransferReporter) {
        (self.stream, self.reporter)
    }

    func start(_ request: TransferRequest, reportingTo reporter: TransferReporter) -> TransferID {
        self.calls.withLock { $0.append(.start(request.destination)) }
        return TransferID(
            self.nextID.withLock {
                $0 += 1
                return $0
            }
        )
    }

    func pause(_ id: TransferID) { self.calls.withLock { $0.append(.pause(id.rawValue)) } }
    func resume(_ id: TransferID) { self.calls.withLock { $0.append(.resume(id.rawValue)) } }
    func cancel(_ id: TransferID, discardPartial: Bool) {
        self.calls.withLock { $0.append(.cancel(id.rawValue, discard: discardPartial)) }
    }
    func setRate(_ id: TransferID, _ limit: RateLimit) {}
    func setGlobalRate(_ limit: RateLimit) {}
    func setYieldRate(on interface: String, _ limit: RateLimit, direction: YieldController.Direction) {}
    func wireBytes() async -> [String: WireBytes] { [:] }
    func shutdown() async {}

    /// Delivers events as the engine would (one batch).
    func report(_ events: [(UInt64, TransferEvent)]) {
        for (id, event) in events { self.reporter.collect(TransferID(id), event) }
        self.reporter.deliverAll()
    }
}

/// A store in memory: what was written, and ids for inserts.
actor MemoryStore: JobPersistence {
    private(set) var batches: [JobStore.Batch] = []
    private var nextID: Int64 = 0
    private let stored: [StoredJob]
    /// Reading validators fails while set.
    private var validatorsFail = false

    init(jobs: [StoredJob] = []) {
        self.stored = jobs
        self.nextID = jobs.map(\.record.id).max() ?? 0
    }

    func failValidators(_ fail: Bool) { self.validatorsFail = fail }

    func jobs() async throws -> [StoredJob] { self.stored }
    func lastJobID() async throws -> Int64 { self.nextID }
    func manifestDigests() async throws -> [String: String] { [:] }
    func manifestVersion(_ id: String) async throws -> ManifestVersion? { nil }
    func validators(of ids: [Int64]) async throws -> [Int64: MirrorValidators] {
        if self.validatorsFail { throw CocoaError(.fileReadUnknown) }
        return Dictionary(uniqueKeysWithValues: ids.map { ($0, MirrorValidators(etag: "\"e\"")) })
    }
    func reply(of id: Int64) async throws -> [UInt8]? { nil }
    func apply(_ batch: JobStore.Batch) async throws -> JobStore.AppliedBatch {
        self.batches.append(batch)
        var applied = JobStore.AppliedBatch()
        applied.ids = batch.inserts.map { job in
            let id = job.record.id == 0 ? self.nextID + 1 : job.record.id
            self.nextID = max(self.nextID, id)
            return id
        }
        return applied
    }
    func uplinkOverrides() async throws -> [String: UplinkOverride] { [:] }
    func setUplinkOverride(_ override: UplinkOverride, for interface: String) async throws {}
    nonisolated func releaseMemory() {}

    var histories: [String] { self.batches.flatMap { $0.history.map(\.entry.state) } }
}

/// The supervisor's plan applied to an engine and a store behind their protocols: no socket, no transfer.
@Suite("Supervisor with doubles", .serialized)
struct SupervisorPlanTests {
    static func supervisor(store: MemoryStore = MemoryStore()) -> (Supervisor, RecordingEngine, MemoryStore) {
        var config = AgentConfig.defaults(scope: .system)
        config.manifestDirectory = "/nonexistent/barge-test-manifests.d"  // unreadable: every job kept, none made
        config.allowedRoots = ["/srv"]
        let engine = RecordingEngine()
        let supervisor = Supervisor(config: config, configPath: nil, notifier: nil, store: store, engine: engine)
        return (supervisor, engine, store)
    }

    /// Fail closed: a job whose stored validators cannot be read does not start (it would fetch its copy whole);
    /// it waits, saying why, and starts once the store answers. Jobs without validators start meanwhile.
    @Test func aJobWhoseValidatorsCannotBeReadWaitsForThem() async throws {
        var record = JobRecord(id: 1)
        record.hasValidators = true
        let store = MemoryStore(jobs: [
            StoredJob(spec: JobSpec(manifest: nil, urls: ["https://o.test/a"], destination: "/srv/a"), record: record),
            StoredJob(
                spec: JobSpec(manifest: nil, urls: ["https://o.test/b"], destination: "/srv/b"),
                record: JobRecord(id: 2)
            ),
        ])
        await store.failValidators(true)
        let (supervisor, engine, _) = Self.supervisor(store: store)
        try await supervisor.start()
        #expect(engine.recorded == [.start("/srv/b")])
        let waiting = try #require(await supervisor.status(job: 1).jobs.first)
        #expect(waiting.state == "queued" && waiting.reason.contains("cannot read its stored validators"))
        await store.failValidators(false)
        #expect(await supervisor.resume(.jobs([1])).ok)
        #expect(engine.recorded == [.start("/srv/b"), .start("/srv/a")])
        await supervisor.stop()
    }

    /// A user's job whose destination check fails is refused for good only when the answer is "may not"; an
    /// error of the check itself leaves it waiting to be checked again.
    @Test func onlyADenialRefusesAUsersJob() {
        for denial in [EACCES, EPERM, EEXIST, ELOOP, EROFS] { #expect(Supervisor.deniesCreation(denial), "\(denial)") }
        for passing in [EIO, ENOMEM, EAGAIN, ENOENT, EMFILE] {
            #expect(!Supervisor.deniesCreation(passing), "\(passing)")
        }
    }

    /// A local user's retry stays within their number of unfinished jobs, as an add does.
    @Test func aUsersRetryStaysWithinTheirNumberOfJobs() async throws {
        let user = ControlCaller(uid: 4242, gid: 4242, pid: 1, isAdministrator: false)
        var policy = TransferPolicy()
        policy.owner = FileOwner(user: "4242", group: "4242")
        func stored(_ id: Int64, _ state: JobState) -> StoredJob {
            var record = JobRecord(id: id)
            record.state = state
            record.userSuspended = state == .suspended  // never started: no destination check, no transfer
            let spec = JobSpec(manifest: nil, urls: ["https://o.test/\(id)"], destination: "/srv/\(id)", policy: policy)
            return StoredJob(spec: spec, record: record)
        }
        let jobs = (1...Int64(Supervisor.jobsPerUser)).map { stored($0, .suspended) } + [stored(1000, .error)]
        let (supervisor, _, _) = Self.supervisor(store: MemoryStore(jobs: jobs))
        try await supervisor.start()
        let refused = await supervisor.retry(.jobs([1000]), by: user)
        #expect(!refused.ok && refused.error == .forbidden, "\(refused)")
        #expect(try #require(await supervisor.status(job: 1000).jobs.first).state == "error")
        #expect(await supervisor.cancel(.jobs([1]), by: user).ok)
        #expect(await supervisor.retry(.jobs([1000]), by: user).ok)
        #expect(try #require(await supervisor.status(job: 1000).jobs.first).state != "error")
        await supervisor.stop()
    }

    /// Another user's job is shown without secrets a URL may carry, in its reason as in its URL.
    @Test func reasonsShownToOthersLoseTheirURLsSecrets() {
        #expect(
            Supervisor.redactingURLs(in: "HTTP 403 from https://u:p@h.test/a/b?token=s3cret#x, retry in 5m")
                == "HTTP 403 from https://h.test/a/b, retry in 5m"
        )
        #expect(
            Supervisor.redactingURLs(in: "redirected to 'http://h.test:8080/c?sig=1' (http://x.test/d?k=2).")
                == "redirected to 'http://h.test:8080/c' (http://x.test/d)."
        )
        // A quote inside a query is still the query: nothing after the "?" is shown.
        #expect(
            Supervisor.redactingURLs(in: "HTTP 404 for https://h.test/p?t=ab'cd\"ef next")
                == "HTTP 404 for https://h.test/p next"
        )
        // A quote in a path or in the user information, and user information without a host.
        #expect(
            Supervisor.redactingURLs(in: "not found: https://cdn.test/Bob's%20notes.pdf?Sig=SECRET (HTTP 404)")
                == "not found: https://cdn.test/Bob's%20notes.pdf (HTTP 404)"
        )
        #expect(Supervisor.redactingURLs(in: "https://tok'SECRET@h.test/f failed") == "https://h.test/f failed")
        #expect(Supervisor.redactingURLs(in: "'https://SECRET@/file' has no host") == "'https:///file' has no host")
        #expect(Supervisor.redactingURLs(in: "connection refused by h.test") == "connection refused by h.test")
    }

    @Test func anAddedJobStartsAndCompletesFromTheEnginesReports() async throws {
        let (supervisor, engine, store) = Self.supervisor()
        try await supervisor.start()
        let reply = await supervisor.add(NewJobRequest(url: "https://o.test/f", destination: "/srv/f"))
        #expect(reply.ok, "\(reply)")
        #expect(engine.recorded == [.start("/srv/f")])
        var job = try #require(await supervisor.status().jobs.first)
        #expect(job.state == "queued" && job.reason == "waiting for a connection to o.test")
        engine.report([(1, .started(url: "https://o.test/f", offset: 0))])
        #expect(await eventually { await supervisor.status().jobs.first?.state == "connecting" })
        let done = CompletedTransfer(url: "https://o.test/f", size: 3, validators: Validators(), transferred: 3)
        engine.report([(1, .finished(.completed(done)))])
        #expect(await eventually { await supervisor.status().jobs.first?.state == "complete" })
        job = try #require(await supervisor.status().jobs.first)
        #expect(job.reason == "fetched 3 B from o.test")
        #expect(await store.histories == ["complete"])
        await supervisor.stop()
    }

    @Test func aCancelDiscardsThePartialAndASuspendStops() async throws {
        let (supervisor, engine, _) = Self.supervisor()
        try await supervisor.start()
        #expect(await self.connect(["a", "b"], supervisor, engine))
        #expect(await supervisor.cancel(.jobs([1])).ok)
        #expect(await supervisor.suspend(.jobs([2])).ok)
        #expect(engine.recorded.suffix(2) == [.cancel(1, discard: true), .cancel(2, discard: false)])
        let states = await supervisor.status().jobs.map(\.state)
        #expect(states == ["cancelled", "suspended"])
        await supervisor.stop()
    }

    /// A cancel that reaches the engine once the file's commit has begun cannot stop it: the engine reports the
    /// file complete, and the job says so (with its history line); one that came in time leaves it cancelled,
    /// and nothing claims a file.
    @Test func aCancelDuringTheCommitIsReportedAsWhatHappened() async throws {
        let (supervisor, engine, store) = Self.supervisor()
        try await supervisor.start()
        #expect(await self.connect(["late", "early"], supervisor, engine))
        #expect(await supervisor.cancel(.jobs([1, 2])).ok)
        let done = CompletedTransfer(url: "https://o.test/late", size: 5, validators: Validators(), transferred: 5)
        engine.report([(1, .finished(.completed(done))), (2, .finished(.cancelled))])
        #expect(await eventually { await supervisor.status().jobs.first { $0.id == 1 }?.state == "complete" })
        let jobs = await supervisor.status().jobs
        #expect(jobs.first { $0.id == 1 }?.reason == "fetched 5 B from o.test")
        #expect(jobs.first { $0.id == 2 }?.state == "cancelled")
        #expect(await store.histories == ["complete"])
        await supervisor.stop()
    }

    /// A connection that failed right after the network changed is tried again at the next change, at once and
    /// once, not after its back-off; one the server told to come back later (Retry-After) waits as told.
    @Test func aFailureFromANetworkChangeIsRetriedAtTheNextChange() async throws {
        let (supervisor, engine, _) = Self.supervisor()
        try await supervisor.start()
        func uplinks(_ names: String...) -> NetworkSnapshot {
            NetworkSnapshot(
                uplinks: names.enumerated().map { index, name in
                    let facts = InterfaceFacts(name: name, driver: "e1000e")
                    return Uplink(
                        index: Int32(index + 2),
                        facts: facts,
                        families: [.ipv4],
                        verdict: UplinkClassifier.classify(facts, rules: [])
                    )
                }
            )
        }
        func starts() -> Int { engine.recorded.filter { $0 == .start("/srv/a") }.count }
        supervisor.networkChanged(to: uplinks("eth0"))
        #expect(await self.connect(["a"], supervisor, engine))
        supervisor.networkChanged(to: uplinks("eth1"))
        engine.report([(1, .finished(.failed(TransferFailure(.transient, "connection reset"))))])
        #expect(await self.eventually { await supervisor.status().jobs.first?.state == "transient-error" })
        #expect(starts() == 1)
        supervisor.networkChanged(to: uplinks("eth0"))
        #expect(await self.eventually { starts() == 2 }, "\(engine.recorded)")

        engine.report([
            (2, .started(url: "https://o.test/a", offset: 0)),
            (2, .finished(.failed(TransferFailure(.transient, "503 Service Unavailable", retryAfter: 600)))),
        ])
        #expect(await self.eventually { await supervisor.status().jobs.first?.state == "transient-error" })
        supervisor.networkChanged(to: uplinks("eth1"))
        supervisor.networkChanged(to: uplinks("eth2"))
        #expect(await self.eventually { await supervisor.status().agent.network.contains("eth2") })
        #expect(await supervisor.status().jobs.first?.state == "transient-error")
        #expect(starts() == 2, "\(engine.recorded)")
        await supervisor.stop()
    }

    /// Adds a one-shot job per name (ids 1, 2, …) and has the engine connect them; returns whether all connected.
    func connect(_ names: [String], _ supervisor: Supervisor, _ engine: RecordingEngine) async -> Bool {
        for name in names {
            _ = await supervisor.add(NewJobRequest(url: "https://o.test/\(name)", destination: "/srv/\(name)"))
        }
        engine.report(names.enumerated().map { (UInt64($0 + 1), .started(url: "https://o.test/\($1)", offset: 0)) })
        return await self.eventually { await supervisor.status().jobs.allSatisfy { $0.state == "connecting" } }
    }

    /// Polls an async condition until it holds or the deadline passes (the supervisor takes reports on its own).
    func eventually(timeout: Double = 5, _ condition: () async -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if await condition() { return true }
            try? await Task.sleep(for: .milliseconds(2))  // a poll with a deadline, not synchronisation
        }
        return await condition()
    }
}
