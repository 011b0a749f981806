public import BargeCore
import Synchronization

/// Something that happened to a transfer, in order; the last event is always ``finished(_:)``.
public enum TransferEvent: Sendable {
    /// An attempt began on `url`, resuming at `offset` (0 for a fresh start).
    case started(url: String, offset: UInt64)
    /// The final response's headers arrived.
    case response(TransferResponse)
    /// Bytes arrived (at most a few times a second).
    case progress(TransferProgress)
    /// The partial was made durable up to `offset` (after `fsync`); a resume may safely start there. 0 just
    /// before a failure that discarded the partial: any checkpoint stored before is void.
    case checkpoint(offset: UInt64)
    /// An upload's resumable session: the tus upload's URL once the server created it, nil once it is void (the
    /// server lost it, or the file changed under it). The caller keeps it for the next run.
    case uploadSession(UploadSession?)
    /// The transfer ended.
    case finished(TransferOutcome)
}

/// The facts of a response that the agent keeps.
public struct TransferResponse: Sendable, Hashable {
    /// The HTTP status (0 for non-HTTP sources).
    public var status: Int
    /// The protocol of the status line, e.g. `HTTP/2` or `HTTP/1.1` (empty for non-HTTP sources).
    public var httpVersion: String
    /// The version's validators.
    public var validators: Validators
    /// The whole file's size, when the server said.
    public var totalSize: UInt64?
    /// Where the body starts (non-zero for a resumed range).
    public var offset: UInt64
}

/// How far a transfer has come.
public struct TransferProgress: Sendable, Hashable {
    /// Bytes of the file received so far, resumed bytes included.
    public var received: UInt64
    /// The file's size, when known.
    public var total: UInt64?
    /// The recent rate in bytes per second.
    public var bytesPerSecond: Double
}

/// How a transfer ended.
public enum TransferOutcome: Sendable {
    /// The file is verified and in place.
    case completed(CompletedTransfer)
    /// A conditional request answered 304: the file in place is current and untouched.
    case notModified(Validators)
    /// The transfer failed; a transient failure may be retried, and the partial is kept for resuming.
    case failed(TransferFailure)
    /// Cancelled by the caller.
    case cancelled
}

/// The facts of a finished download or upload.
public struct CompletedTransfer: Sendable, Hashable {
    /// The source it finally came from (after redirects).
    public var url: String
    /// The file's size.
    public var size: UInt64
    /// The file's SHA-256, lowercase hex; nil when none was expected or asked for
    /// (``TransferRequest/reportsSHA256``).
    public var sha256: String?
    /// Its validators, for the next conditional refresh.
    public var validators: Validators
    /// Bytes this run transferred (less than `size` when it resumed).
    public var transferred: UInt64
    /// An upload's reply body from the server, up to the request's limit.
    public var reply: [UInt8]? = nil
    /// An upload's file as it was sent.
    public var stamp: SourceStamp? = nil
}

/// Why a transfer failed, in words a person understands, and whether trying again may help.
public struct TransferFailure: Error, Sendable, Hashable, CustomStringConvertible {
    /// Whether a retry may succeed.
    public enum Kind: String, Sendable, Hashable, Codable {
        /// Network trouble, a busy server, a full disk: retry later.
        case transient
        /// The file is gone, access is refused, the content is wrong: retrying will not help.
        case permanent
    }

    /// Transient or permanent.
    public var kind: Kind
    /// What happened, e.g. "connection refused by 127.0.0.1:8080".
    public var reason: String
    /// The server's `Retry-After`, in seconds.
    public var retryAfter: Double?

    /// Creates a failure.
    public init(_ kind: Kind, _ reason: String, retryAfter: Double? = nil) {
        self.kind = kind
        self.reason = reason
        self.retryAfter = retryAfter
    }

    public var description: String { "\(self.kind.rawValue): \(self.reason)" }
}

/// One event of one transfer, as a shared report stream carries it.
public struct TransferReport: Sendable {
    /// The transfer the event belongs to.
    public let id: TransferID
    /// What happened.
    public let event: TransferEvent
}

/// The sending side of a report stream shared by many transfers: the engine collects their events and delivers
/// them as one batch at most every ``deliveryInterval``, so one consumer (the agent's supervisor, which writes a
/// batch to its store in one transaction) wakes at most 200 times a second, not once per event.
///
/// Make one with ``TransferEngine/makeReportStream()``. Several engine threads may collect and deliver; a lock
/// keeps each thread's events in order (a batch is yielded under it).
public final class TransferReporter: Sendable {
    private struct State {
        var collected: [TransferReport] = []
        /// When the last batch was delivered (monotonic seconds).
        var lastDelivery = -Double.infinity
    }

    private let continuation: AsyncStream<[TransferReport]>.Continuation
    private let state = Mutex(State())

    init(_ continuation: AsyncStream<[TransferReport]>.Continuation) { self.continuation = continuation }

    /// Collects an event (engine thread).
    func collect(_ id: TransferID, _ event: TransferEvent) {
        self.state.withLock { $0.collected.append(TransferReport(id: id, event: event)) }
    }

    /// The shortest time between two batches. Each batch wakes the reader's task (a thread handoff, often a
    /// sleeping thread woken, and for the agent a store transaction): a burst of small files would otherwise
    /// cost one per pass of the engine's loop, hundreds a second, while no reader gains from hearing more often.
    static let deliveryInterval = 0.005

    /// Delivers what was collected as one batch (engine thread), unless the last batch went less than
    /// ``deliveryInterval`` ago: then returns when to call again (the engine wakes for it).
    func deliver(now: Double) -> Double? {
        self.state.withLock { state in
            guard !state.collected.isEmpty else { return nil }
            let due = state.lastDelivery + Self.deliveryInterval
            guard now >= due else { return due }
            state.lastDelivery = now
            self.yieldCollected(&state)
            return nil
        }
    }

    /// Delivers what was collected now, whenever the last batch went (engine thread, when it stops or has
    /// nothing left to run).
    func deliverAll() {
        self.state.withLock { state in
            guard !state.collected.isEmpty else { return }
            self.yieldCollected(&state)
        }
    }

    /// Yields the collected reports as one batch (under the lock, so each thread's batches stay in order).
    private func yieldCollected(_ state: inout State) {
        self.continuation.yield(state.collected)
        state.collected.removeAll(keepingCapacity: true)
    }

    /// Ends the stream: no more reports will come.
    public func finish() { self.continuation.finish() }
}

/// Where a transfer's events go: its own stream, or a report stream shared by many transfers.
enum EventSink: Sendable {
    case own(AsyncStream<TransferEvent>.Continuation)
    case shared(TransferID, TransferReporter)

    func yield(_ event: TransferEvent) {
        switch self {
        case .own(let continuation): continuation.yield(event)
        case .shared(let id, let reporter): reporter.collect(id, event)
        }
    }

    /// Ends a transfer's own stream; a shared stream stays open for the others.
    func finish() {
        if case .own(let continuation) = self { continuation.finish() }
    }
}
