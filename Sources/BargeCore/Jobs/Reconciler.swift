/// What the agent knows of the network when it reconciles: for all jobs, or for the jobs of one origin (the
/// uplink its traffic leaves by).
public enum NetworkView: Hashable, Sendable, CustomStringConvertible {
    /// No monitor runs: the uplink is treated as unmetered.
    case unmonitored
    /// No uplink.
    case offline
    /// An uplink of this cost; `via` names it and the source of its verdict (`wwan0, rule 1 'wwan*'`).
    case online(cost: NetworkCost, roaming: Bool, via: String? = nil)
    /// No route to the origin (named).
    case unreachable(String)
    /// The origin's name is being looked up (its path is not known yet).
    case lookingUp(String)
    /// A running transfer's uplink no longer suits it, but its origin's path (by the named interface) does: it is
    /// stopped at once and started again on that path.
    case moving(to: String)

    /// Whether a job with this network policy may transfer; nil, or why not.
    public func refusal(for policy: NetworkCostPolicy) -> String? {
        switch self {
        case .unmonitored:
            return nil
        case .offline:
            return "waiting for a network"
        case .unreachable(let origin):
            return "no route to \(origin)"
        case .lookingUp(let origin):
            return "looking up \(origin)"
        case .moving(let interface):
            return "moving to \(interface)"
        case .online(let cost, let roaming, let via):
            let uplink = via.map { ": \($0)" } ?? " now"
            switch policy {
            case .any: return nil
            case .notRoaming:
                return roaming
                    ? "waiting for a network that is not roaming" + (via.map { " (roaming: \($0))" } ?? "") : nil
            case .unmetered:
                if roaming { return "waiting for an unmetered network (roaming\(uplink))" }
                return cost == .unmetered ? nil : "waiting for an unmetered network (metered\(uplink))"
            }
        }
    }

    /// Whether it is ``unreachable(_:)``.
    public var isUnreachable: Bool {
        if case .unreachable = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .unmonitored: "not monitored (treated as unmetered)"
        case .offline: "offline"
        case .unreachable(let origin): "no route to \(origin)"
        case .lookingUp(let origin): "looking up \(origin)"
        case .moving(let interface): "moving to \(interface)"
        case .online(let cost, let roaming, let via):
            (roaming ? "\(cost.rawValue), roaming" : cost.rawValue) + (via.map { " (\($0))" } ?? "")
        }
    }
}

/// Everything outside the jobs that a reconcile depends on.
public struct ReconcileFacts: Hashable, Sendable {
    /// Now, on the local clock.
    public var now: LocalTime
    /// The uplink's cost, for jobs whose origin has no view of its own in `networkByHost`.
    public var network: NetworkView
    /// The network as the jobs of each origin (``JobSpec/host``) meet it: the uplink their traffic leaves by.
    public var networkByHost: [String: NetworkView]
    /// The network as a running job's connection meets it, where that is not its origin's view (a transfer bound
    /// to an interface that is no longer its origin's path).
    public var networkByJob: [Int64: NetworkView]
    /// Transfers at once.
    public var limits: Concurrency
    /// The global bandwidth timetable.
    public var bandwidth: BandwidthTimetable
    /// How many jobs beyond `limits.total` are handed to the engine to wait there for a connection, so that one
    /// that ends is replaced at once by the engine (which admits by priority) instead of after a report and a new
    /// plan. 0: only as many as may run.
    public var backlog: Int
    /// The running jobs the engine holds paused, and since when (epoch seconds).
    public var paused: [Int64: Double]
    /// How long a running job held back by the user, the network or its window stays paused (its connection
    /// and partial kept, so a short flap costs nothing) before it is stopped; nil: stopped at once.
    public var pauseGrace: Double?
    /// How long a running job whose origin has no route (a link down, a route gone) stays paused before it is
    /// stopped: a link that comes back within it continues the same transfers on the same connections; after it,
    /// they are stopped (the connection is most likely dead) and start again from their offsets when the route
    /// returns. nil: `pauseGrace`.
    public var linkGrace: Double?

    /// Creates facts.
    public init(
        now: LocalTime,
        network: NetworkView = .unmonitored,
        networkByHost: [String: NetworkView] = [:],
        networkByJob: [Int64: NetworkView] = [:],
        limits: Concurrency = Concurrency(),
        bandwidth: BandwidthTimetable = BandwidthTimetable([]),
        backlog: Int = 0,
        paused: [Int64: Double] = [:],
        pauseGrace: Double? = nil,
        linkGrace: Double? = nil
    ) {
        self.now = now
        self.network = network
        self.networkByHost = networkByHost
        self.networkByJob = networkByJob
        self.limits = limits
        self.bandwidth = bandwidth
        self.backlog = backlog
        self.paused = paused
        self.pauseGrace = pauseGrace
        self.linkGrace = linkGrace
    }

    /// The backlog the agent keeps for `limits`: 64 jobs per connection, at least 256 (a burst of small files on a
    /// fast link finishes a file per connection every millisecond or two; the engine must not run dry before the
    /// next plan, and fewer plans leave it more of the machine). A waiting transfer holds no connection and no
    /// buffer in the engine, only its request.
    public static func backlog(for limits: Concurrency) -> Int { max(256, 64 * limits.total) }
}

/// A job's new waiting state and its reason.
public struct JobStateChange: Hashable, Sendable {
    /// The job.
    public var id: Int64
    /// Its new state.
    public var state: JobState
    /// Why.
    public var reason: String

    /// Creates a change.
    public init(id: Int64, state: JobState, reason: String) {
        self.id = id
        self.state = state
        self.reason = reason
    }
}

/// The reconciler's answer: what the engine must do now, and when to look again.
public struct ReconcilePlan: Hashable, Sendable {
    /// Jobs to start, highest priority first.
    public var start: [Int64] = []
    /// Running jobs to stop (suspended for longer than the pause grace, preempted); their waiting state is in
    /// `changes`.
    public var stop: [Int64] = []
    /// Running jobs to pause where they are (held back by the user, the network or a window): the engine keeps
    /// their connection and partial; their waiting state is in `changes`.
    public var pause: [Int64] = []
    /// Paused jobs to resume (allowed again); their running state is in `changes`.
    public var resume: [Int64] = []
    /// New states of jobs that do not run (only those that differ from the record).
    public var changes: [JobStateChange] = []
    /// The rate cap of every job that runs after the plan (started or kept).
    public var rates: [Int64: RateLimit] = [:]
    /// The budget all transfers share.
    public var globalRate: RateLimit = .off
    /// The next instant at which the answer may change with nothing else happening; nil: never.
    public var wakeAt: Double?

    /// Creates an empty plan.
    public init() {}
}

/// The reconciler: desired jobs + their records + facts → a plan. Pure and level-triggered: the agent runs it on
/// every event (a manifest, a transfer's end, a command, the network, its one timer) and applies the plan.
///
/// The rules, in order, for each job that has not ended:
/// 1. suspended by the user → suspended (a running transfer is stopped);
/// 2. due later (a retry, a refresh) → stays as it is, woken at the due time;
/// 3. the network's cost is not allowed → suspended ("waiting for an unmetered network");
/// 4. outside every time window → suspended ("waiting for window 22:00-06:00"), woken when one opens or closes.
///    A transfer held back by 3 or 4 while connected is paused where it is (connection and partial kept) for up
///    to `pauseGrace` (`linkGrace` when its origin has no route), resumed if allowed again by then, else stopped;
/// 5. otherwise eligible. Eligible jobs are ranked by priority (foreground, high, normal, low), then connected
///    ones before those waiting in the engine before the rest of the same level (no thrashing), then least
///    recently started (round robin). The first `limits.total` are the ones that should be connected; they and
///    the next `backlog` are handed to the engine, which admits them by priority as connections free up. A
///    connected job outside the first `limits.total` is stopped only when a higher-priority one among them waits
///    in the engine for a connection its host could give it (a job that waits for its host's connections would
///    gain nothing from it).
public enum Reconciler {
    /// Plans the next step.
    public static func plan(_ jobs: [JobView], facts: ReconcileFacts) -> ReconcilePlan {
        var plan = ReconcilePlan()
        let now = facts.now.epochSeconds
        var wake = Double.infinity
        var eligible: [Int] = []
        let bandwidthRule = facts.bandwidth.rule(at: facts.now)
        if let next = facts.bandwidth.nextChange(after: facts.now) { wake = next }
        plan.globalRate = bandwidthRule?.total ?? .off

        /// Holds a job back; a running one that may wait where it is (`pausable`: the network or a window, which
        /// often come back soon) is paused for up to the grace, not stopped. A person's suspend stops it.
        func hold(_ index: Int, _ state: JobState, _ reason: String, pausable: Bool = false, grace: Double? = nil) {
            let job = jobs[index]
            let id = job.record.id
            var staysPaused = false
            if job.isRunning {
                if pausable, job.isAdmitted, let grace = grace ?? facts.pauseGrace, grace > 0 {
                    if let since = facts.paused[id] {
                        if now - since >= grace {
                            plan.stop.append(id)
                        } else {
                            staysPaused = true
                            wake = min(wake, since + grace)
                        }
                    } else {
                        plan.pause.append(id)
                        wake = min(wake, now + grace)
                    }
                } else {
                    plan.stop.append(id)
                }
            }
            if (job.isRunning && !staysPaused) || job.record.state != state || job.record.reason != reason {
                plan.changes.append(JobStateChange(id: id, state: state, reason: reason))
            }
        }

        for index in jobs.indices {
            let job = jobs[index]
            let record = job.record
            if record.state.isTerminal && !job.isRunning { continue }
            if record.userSuspended {
                hold(index, .suspended, "suspended by user")
                continue
            }
            if !job.isRunning, let due = record.dueAt, due > now,
                record.state == .upToDate || record.state == .transientError
            {
                wake = min(wake, due)
                continue
            }
            // Up to date with no due time: never checked again (`refresh: never`, an upload sent until its file
            // changes, which changes its spec and queues it).
            if !job.isRunning, record.state == .upToDate, record.dueAt == nil { continue }
            let network =
                facts.networkByJob[record.id]
                ?? (facts.networkByHost.isEmpty ? facts.network : facts.networkByHost[job.spec.host] ?? facts.network)
            if let refusal = network.refusal(for: job.spec.policy.network) {
                let noRoute = network == .offline || network.isUnreachable
                let grace: Double? = if case .moving = network { 0 } else { noRoute ? facts.linkGrace : nil }
                hold(index, .suspended, refusal, pausable: true, grace: grace)
                continue
            }
            let windows = job.spec.policy.windows
            if !windows.isEmpty {
                if let change = windows.nextChange(after: facts.now) { wake = min(wake, change) }
                if !windows.allowsTransfer(at: facts.now) {
                    hold(index, .suspended, "waiting for window \(windows.summary)", pausable: true)
                    continue
                }
            }
            eligible.append(index)
        }

        eligible.sort { left, right in
            let a = jobs[left]
            let b = jobs[right]
            if a.spec.policy.priority != b.spec.policy.priority {
                return a.spec.policy.priority > b.spec.policy.priority
            }
            if a.isAdmitted != b.isAdmitted { return a.isAdmitted }
            if a.isRunning != b.isRunning { return a.isRunning }
            let aStarted = a.record.lastStartedAt ?? -.infinity
            let bStarted = b.record.lastStartedAt ?? -.infinity
            if aStarted != bStarted { return aStarted < bStarted }
            return a.record.id < b.record.id
        }
        let slots = max(0, facts.limits.total)
        let connected = eligible.prefix(slots)
        var handed: [Int]
        if facts.backlog > 0 {
            // Connected jobs keep their connections (only the preemption below stops one: stopping a job whose
            // place a higher one could not take would leave its connection idle); the others are handed in rank
            // order up to the backlog, each host's at most 64 per connection it may have, so that one host's long
            // list never keeps the others' jobs from the engine.
            handed = []
            var waitingPerHost: [String: Int] = [:]
            let hostShare = max(1, facts.limits.perHost) * 64
            for index in eligible {
                let job = jobs[index]
                if job.isAdmitted {
                    handed.append(index)
                    continue
                }
                guard handed.count < slots + facts.backlog else { continue }
                let host = job.spec.host
                guard waitingPerHost[host, default: 0] < hostShare else { continue }
                waitingPerHost[host, default: 0] += 1
                handed.append(index)
            }
        } else {
            handed = Array(eligible.prefix(slots))
        }
        // A connected job keeps its connection, unless a higher one waits in the engine for a connection that
        // only stopping it can free: its host's (the host is full), or any (every connection is taken).
        var perHost: [String: Int] = [:]
        var connectedCount = 0
        for index in handed where jobs[index].isAdmitted {
            perHost[jobs[index].spec.host, default: 0] += 1
            connectedCount += 1
        }
        var preempted: Set<Int> = []
        for index in handed where jobs[index].isRunning && !jobs[index].isAdmitted {
            let waiting = jobs[index]
            let host = waiting.spec.host
            let hostFull = perHost[host, default: 0] >= facts.limits.perHost
            guard hostFull || connectedCount >= slots else { continue }  // the engine admits it by itself
            // The lowest connected job below it (on its host, when the host is full), the last in rank.
            let victim = handed.last { candidate in
                let job = jobs[candidate]
                return job.isAdmitted && !preempted.contains(candidate)
                    && job.spec.policy.priority < waiting.spec.policy.priority
                    && (!hostFull || job.spec.host == host)
            }
            guard let victim else { continue }
            preempted.insert(victim)
            perHost[jobs[victim].spec.host, default: 1] -= 1
            perHost[host, default: 0] += 1
        }
        handed.removeAll { preempted.contains($0) }
        var runningPerPriority: [Priority: Int] = [:]
        for index in connected { runningPerPriority[jobs[index].spec.policy.priority, default: 0] += 1 }
        for index in handed {
            let job = jobs[index]
            if !job.isRunning { plan.start.append(job.record.id) }
            if job.isRunning, facts.paused[job.record.id] != nil {
                plan.resume.append(job.record.id)
                let host = job.spec.host
                plan.changes.append(
                    JobStateChange(id: job.record.id, state: .transferring, reason: "transferring from \(host)")
                )
            }
            var rate = job.spec.policy.maxRate
            let priority = job.spec.policy.priority
            if let shared = bandwidthRule?.perPriority[priority]?.rate {
                let sharing = UInt64(max(1, runningPerPriority[priority] ?? 0))
                let share = RateLimit.limited(ByteRate(bytesPerSecond: max(1, shared.bytesPerSecond / sharing)))
                rate = rate.tighter(than: share)
            }
            plan.rates[job.record.id] = rate
        }
        let running = connected.count
        let handedSet = Set(handed)
        let waitingForSlot = eligible.filter { !handedSet.contains($0) }  // the preempted ones among them
        for index in waitingForSlot {
            let job = jobs[index]
            let higher = connected.filter { jobs[$0].spec.policy.priority > job.spec.policy.priority }.count
            let reason =
                higher == running && higher > 0
                ? "waiting: \(higher) higher-priority transfer\(higher == 1 ? "" : "s") running"
                : "waiting for a free slot (\(running) of \(slots) running)"
            hold(index, .queued, reason)
        }
        plan.wakeAt = wake.isFinite ? wake : nil
        return plan
    }
}

extension RateLimit {
    /// The stricter of two caps.
    public func tighter(than other: RateLimit) -> RateLimit {
        switch (self.rate, other.rate) {
        case (nil, _): other
        case (_, nil): self
        case (let mine?, let theirs?): mine.bytesPerSecond <= theirs.bytesPerSecond ? self : other
        }
    }
}
