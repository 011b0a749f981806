import BargeCore
import BargeStore
import BargeTransfer

/// What the supervisor asks of the transfer engine: ``TransferEngine`` in the agent, a recording double in the
/// tests of the plan's application.
protocol TransferControl: Sendable {
    /// A report stream for the transfers started with it.
    func makeReportStream() -> (reports: AsyncStream<[TransferReport]>, reporter: TransferReporter)
    /// Starts a transfer, reporting to `reporter`.
    func start(_ request: TransferRequest, reportingTo reporter: TransferReporter) -> TransferID
    /// Pauses a transfer where it is.
    func pause(_ id: TransferID)
    /// Resumes a paused transfer.
    func resume(_ id: TransferID)
    /// Stops a transfer, keeping its partial unless `discardPartial`.
    func cancel(_ id: TransferID, discardPartial: Bool)
    /// Changes a transfer's rate cap.
    func setRate(_ id: TransferID, _ limit: RateLimit)
    /// Changes the budget all transfers share.
    func setGlobalRate(_ limit: RateLimit)
    /// Changes the budget of the yielding transfers bound to an interface that go `direction`.
    func setYieldRate(on interface: String, _ limit: RateLimit, direction: YieldController.Direction)
    /// The bytes the transfers bound to each interface received and sent so far (at the wire).
    func wireBytes() async -> [String: WireBytes]
    /// Stops every transfer and the engine.
    func shutdown() async
}

extension TransferEngine: TransferControl {}

extension TransferControl {
    /// Stops a transfer and keeps its partial.
    func cancel(_ id: TransferID) { self.cancel(id, discardPartial: false) }
}

/// What the supervisor asks of its store: ``JobStore`` in the agent, a double in memory in the tests.
protocol JobPersistence: Sendable {
    /// Every job.
    func jobs() async throws -> [StoredJob]
    /// The highest job id ever given.
    func lastJobID() async throws -> Int64
    /// The digests of the stored last good manifest versions.
    func manifestDigests() async throws -> [String: String]
    /// A manifest's stored last good version.
    func manifestVersion(_ id: String) async throws -> ManifestVersion?
    /// The mirrored copies' validators of these jobs.
    func validators(of ids: [Int64]) async throws -> [Int64: MirrorValidators]
    /// An upload job's reply body as stored.
    func reply(of id: Int64) async throws -> [UInt8]?
    /// Applies a batch in one transaction; returns the ids of its inserts and the changes refused alone.
    @discardableResult func apply(_ batch: JobStore.Batch) async throws -> JobStore.AppliedBatch
    /// The uplink verdicts set by hand, by interface.
    func uplinkOverrides() async throws -> [String: UplinkOverride]
    /// Sets (or with both `auto`, clears) an interface's verdict by hand.
    func setUplinkOverride(_ override: UplinkOverride, for interface: String) async throws
    /// Gives back the memory of caches filled by a large read.
    func releaseMemory()
}

extension JobStore: JobPersistence {}
