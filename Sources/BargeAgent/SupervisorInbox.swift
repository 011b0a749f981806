import BargeCore
import BargeNetwork
import BargeTransfer
import Synchronization

/// Something the supervisor must act on. Every input reaches it as one of these, through one ``SupervisorInbox``:
/// the engine's reports, the timer, the drop-in directory, the control socket's commands, the network monitor.
enum SupervisorEvent: Sendable {
    /// The engine's reports (progress, checkpoints, ends).
    case reports([TransferReport])
    /// The next due instant came.
    case timer
    /// The drop-in directory may have changed (the watcher, SIGHUP, `barge reload`, a retry of an unreadable
    /// directory); `done` is resumed once it was read and the jobs follow it.
    case manifestsChanged(done: CheckedContinuation<Void, Never>?)
    /// A control command, answered through `reply` once it was carried out and the jobs were reconciled.
    case command(SupervisorCommand, by: ControlCaller, reply: CheckedContinuation<CommandReply, Never>)
    /// The uplinks changed (the network monitor).
    case network(NetworkSnapshot)
    /// Origins' names were looked up (off the loop): each host's numeric address, or nil when it did not resolve.
    case hostsResolved([String: String?])
    /// Time to sample the links that carry yielding transfers (every ``LinkYielding/interval`` while any runs).
    case yieldTick
}

/// A control command the supervisor carries out.
enum SupervisorCommand: Sendable {
    case suspend(Supervisor.Selection)
    case resume(Supervisor.Selection)
    case cancel(Supervisor.Selection)
    case retry(Supervisor.Selection)
    case add(NewJobRequest)
    /// Changes the verdict set by hand on an interface (both halves `auto`: none).
    case setUplink(String, UplinkOverrideChange)
}

/// What one pass of the supervisor does with the events that arrived together: a burst is coalesced, so 1,000
/// reports, a timer and a watcher's three notices make one manifest read and one reconcile, not a thousand. Pure.
struct SupervisorWork: Sendable {
    /// The report batches, in arrival order.
    var reports: [[TransferReport]] = []
    /// The commands, in arrival order, with where their answers go.
    var commands: [(SupervisorCommand, ControlCaller, CheckedContinuation<CommandReply, Never>)] = []
    /// Whether the drop-in directory must be read.
    var readsManifests = false
    /// Who waits for that read.
    var manifestWaiters: [CheckedContinuation<Void, Never>] = []
    /// Whether the timer fired.
    var timerFired = false
    /// The uplinks as the last of the monitor's reports has them (a roam's burst is one change).
    var network: NetworkSnapshot?
    /// Origins' addresses looked up, the later answer winning.
    var resolved: [String: String?] = [:]
    /// Whether the links are to be sampled (no plan: only the budgets change).
    var yieldTick = false

    /// The work for `events`, in the order they arrived.
    init(_ events: [SupervisorEvent]) {
        for event in events {
            switch event {
            case .reports(let batch): self.reports.append(batch)
            case .timer: self.timerFired = true
            case .manifestsChanged(let done):
                self.readsManifests = true
                if let done { self.manifestWaiters.append(done) }
            case .command(let command, let caller, let reply): self.commands.append((command, caller, reply))
            case .network(let snapshot): self.network = snapshot
            case .hostsResolved(let addresses): self.resolved.merge(addresses) { _, later in later }
            case .yieldTick: self.yieldTick = true
            }
        }
    }

    /// Whether nothing but transfers that succeeded calls for a plan: then, while the engine still holds a
    /// backlog of started jobs, the plan can wait (the engine gives the freed connections to its backlog itself).
    var onlySuccessesEnded: Bool {
        !self.readsManifests && !self.timerFired && self.commands.isEmpty && self.network == nil
            && self.resolved.isEmpty
            && self.reports.allSatisfy { batch in
                batch.allSatisfy { report in
                    switch report.event {
                    case .finished(.completed), .finished(.notModified): true
                    case .finished: false
                    case .started, .response, .progress, .checkpoint, .uploadSession: true
                    }
                }
            }
    }

    /// Whether the jobs must be planned again: anything but progress (a transfer that ended frees its slot).
    var needsReconcile: Bool {
        self.readsManifests || self.timerFired || !self.commands.isEmpty || self.network != nil
            || !self.resolved.isEmpty
            || self.reports.contains { batch in
                batch.contains { report in
                    if case .finished = report.event { true } else { false }
                }
            }
    }
}

/// The supervisor's one inbox: any thread posts, one loop takes everything that waits at once.
///
/// A `Mutex`-guarded list and one waiting continuation, rather than an `AsyncStream`, so that the loop takes all
/// that arrived while it worked in one go (the coalescing above) and a post never blocks.
final class SupervisorInbox: Sendable {
    private struct State {
        var events: [SupervisorEvent] = []
        var waiter: CheckedContinuation<[SupervisorEvent]?, Never>?
        var finished = false
    }

    private let state = Mutex(State())

    /// Adds an event; after ``finish()`` a command is answered at once (the agent is stopping) and anything else
    /// is dropped.
    func post(_ event: SupervisorEvent) {
        enum Posted {
            case queued
            case wakes(CheckedContinuation<[SupervisorEvent]?, Never>, [SupervisorEvent])
            case refused
        }
        let posted: Posted = self.state.withLock { state in
            guard !state.finished else { return .refused }
            state.events.append(event)
            guard let waiter = state.waiter else { return .queued }
            state.waiter = nil
            defer { state.events = [] }
            return .wakes(waiter, state.events)
        }
        switch posted {
        case .queued: break
        case .wakes(let waiter, let events): waiter.resume(returning: events)
        case .refused: Self.refuse(event)
        }
    }

    /// Everything posted since the last call, waiting for the first; nil once finished and empty.
    func next() async -> [SupervisorEvent]? {
        await withCheckedContinuation { (continuation: CheckedContinuation<[SupervisorEvent]?, Never>) in
            let ready: [SupervisorEvent]?? = self.state.withLock { state in
                if !state.events.isEmpty {
                    defer { state.events = [] }
                    return .some(state.events)
                }
                if state.finished { return .some(nil) }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// Ends the inbox: the loop takes what waits, then gets nil.
    func finish() {
        let waiter = self.state.withLock { state in
            state.finished = true
            defer { state.waiter = nil }
            return state.events.isEmpty ? state.waiter : nil
        }
        waiter?.resume(returning: nil)
    }

    /// Answers what can no longer be carried out.
    private static func refuse(_ event: SupervisorEvent) {
        switch event {
        case .command(_, _, let reply): reply.resume(returning: .refused(.failed, "the agent is stopping"))
        case .manifestsChanged(let done): done?.resume()
        case .reports, .timer, .network, .hostsResolved, .yieldTick: break
        }
    }
}
