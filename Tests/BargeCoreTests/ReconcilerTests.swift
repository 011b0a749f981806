import BargeCore
import PropertyBased
import Testing

/// Monday 2026-11-23, 12:00 UTC.
let monday = 1_795_435_200.0

func job(
    _ id: Int64,
    _ priority: Priority = .normal,
    state: JobState = .queued,
    running: Bool = false,
    userSuspended: Bool = false,
    dueAt: Double? = nil,
    lastStartedAt: Double? = nil,
    network: NetworkCostPolicy = .any,
    windows: [TimeWindow] = []
) -> JobView {
    var policy = TransferPolicy()
    policy.priority = priority
    policy.network = network
    policy.windows = windows
    var record = JobRecord(id: id)
    record.state = running ? .transferring : state
    record.userSuspended = userSuspended
    record.dueAt = dueAt
    record.lastStartedAt = lastStartedAt
    return JobView(
        spec: JobSpec(manifest: "m", urls: ["https://o.test/\(id)"], destination: "/srv/\(id)", policy: policy),
        record: record,
        isRunning: running
    )
}

func facts(total: Int = 2, network: NetworkView = .unmonitored, at seconds: Double = monday) -> ReconcileFacts {
    var limits = Concurrency()
    limits.total = total
    return ReconcileFacts(now: LocalTime(epochSeconds: seconds), network: network, limits: limits)
}

@Suite("Reconciler") struct ReconcilerTests {
    @Test func higherPrioritiesRunFirstWithinTheLimit() {
        let plan = Reconciler.plan([job(1, .low), job(2, .high), job(3, .normal), job(4, .foreground)], facts: facts())
        #expect(plan.start == [4, 2])
        #expect(Set(plan.changes.map(\.id)) == [1, 3])
        #expect(plan.changes.allSatisfy { $0.state == .queued && $0.reason.hasPrefix("waiting") })
    }

    @Test func aWaitingHigherJobPreemptsARunningLowerOne() {
        let plan = Reconciler.plan(
            [job(1, .low, running: true), job(2, .low, running: true), job(3, .foreground)],
            facts: facts()
        )
        #expect(plan.start == [3])
        #expect(plan.stop.count == 1)
        let stopped = try! #require(plan.changes.first)
        #expect(stopped.state == .queued && stopped.reason == "waiting for a free slot (2 of 2 running)")
    }

    @Test func aPreemptedJobSaysWhatItWaitsFor() {
        let plan = Reconciler.plan([job(1, .low, running: true), job(2, .high)], facts: facts(total: 1))
        #expect(plan.start == [2] && plan.stop == [1])
        #expect(
            plan.changes == [
                JobStateChange(id: 1, state: .queued, reason: "waiting: 1 higher-priority transfer running")
            ]
        )
    }

    @Test func runningJobsOfOneLevelAreNotThrashedAndTheRestTakeTurns() {
        // Same level: the running ones keep their slots; a freed slot goes to the least recently started.
        let plan = Reconciler.plan(
            [
                job(1, running: true, lastStartedAt: 50), job(2, lastStartedAt: 10), job(3, lastStartedAt: nil),
                job(4, lastStartedAt: 5),
            ],
            facts: facts()
        )
        #expect(plan.start == [3])
        #expect(plan.stop.isEmpty)
    }

    @Test func userSuspendedJobsStaySuspended() {
        let plan = Reconciler.plan(
            [job(1, running: true, userSuspended: true), job(2, userSuspended: true)],
            facts: facts()
        )
        #expect(plan.stop == [1])
        #expect(plan.start.isEmpty)
        #expect(plan.changes.map(\.reason) == ["suspended by user", "suspended by user"])
    }

    @Test func theNetworkCostHoldsJobsBack() {
        let jobs = [job(1, network: .unmetered), job(2, network: .notRoaming), job(3, network: .any)]
        let metered = Reconciler.plan(jobs, facts: facts(total: 8, network: .online(cost: .metered, roaming: false)))
        #expect(metered.start == [2, 3])
        #expect(
            metered.changes == [
                JobStateChange(id: 1, state: .suspended, reason: "waiting for an unmetered network (metered now)")
            ]
        )
        let roaming = Reconciler.plan(jobs, facts: facts(total: 8, network: .online(cost: .metered, roaming: true)))
        #expect(roaming.start == [3])
        let offline = Reconciler.plan(jobs, facts: facts(total: 8, network: .offline))
        #expect(offline.start.isEmpty && offline.changes.allSatisfy { $0.reason == "waiting for a network" })
    }

    /// Each origin meets the network by the uplink its traffic leaves by: an origin on the wired LAN runs while
    /// the default route is a metered modem; an origin without a route waits with that reason; an origin the
    /// monitor has no view of yet follows the general view.
    @Test func eachOriginIsJudgedByItsOwnUplink() {
        func job(_ id: Int64, _ host: String) -> JobView {
            var policy = TransferPolicy()
            policy.network = .unmetered
            return JobView(
                spec: JobSpec(
                    manifest: "m",
                    urls: ["https://\(host)/\(id)"],
                    destination: "/srv/\(id)",
                    policy: policy
                ),
                record: JobRecord(id: id),
                isRunning: false
            )
        }
        let jobs = [job(1, "lan.test"), job(2, "cdn.test"), job(3, "gone.test:8443"), job(4, "new.test")]
        let byHost: [String: NetworkView] = [
            "lan.test": .online(cost: .unmetered, roaming: false, via: "wired0, ethernet: ARPHRD_ETHER"),
            "cdn.test": .online(cost: .metered, roaming: false, via: "wwan0, rule 1 'wwan*'"),
            "gone.test:8443": .unreachable("gone.test:8443"),
        ]
        let plan = Reconciler.plan(
            jobs,
            facts: ReconcileFacts(
                now: LocalTime(epochSeconds: monday),
                network: .online(cost: .unmetered, roaming: false),
                networkByHost: byHost,
                limits: Concurrency()
            )
        )
        #expect(plan.start == [1, 4])
        #expect(
            plan.changes.map(\.reason) == [
                "waiting for an unmetered network (metered: wwan0, rule 1 'wwan*')", "no route to gone.test:8443",
            ]
        )
    }

    @Test func aClosedWindowSuspendsAndWakesAtItsOpening() throws {
        let night = try TimeWindow(parsing: "22:00-06:00")
        let plan = Reconciler.plan([job(1, running: true, windows: [night])], facts: facts())
        #expect(plan.stop == [1])
        #expect(plan.changes.first?.reason == "waiting for window 22:00-06:00")
        #expect(plan.wakeAt == monday + 10 * 3600)  // 22:00 the same day
        // Inside the window it runs, and the agent wakes when the window closes.
        let inside = Reconciler.plan([job(1, windows: [night])], facts: facts(at: monday + 11 * 3600))
        #expect(inside.start == [1])
        #expect(inside.wakeAt == monday + 18 * 3600)  // 06:00 the next day
    }

    @Test func weekdayWindowsFollowTheLocalClock() throws {
        let weekend = try TimeWindow(parsing: "sat-sun 00:00-24:00")
        // Monday 12:00 UTC is Monday 23:00 at UTC+11: still closed; it opens on Saturday 00:00 local.
        let time = LocalTime(epochSeconds: monday, utcOffset: 11 * 3600)
        #expect(!weekend.isOpen(at: time))
        let opening = try #require(weekend.nextChange(after: time))
        #expect(opening == monday + (5 * 24 - 23) * 3600)
        #expect(weekend.isOpen(at: LocalTime(epochSeconds: opening, utcOffset: 11 * 3600)))
    }

    @Test func jobsDueLaterWaitForTheirTimeAndSetTheOnlyTimer() {
        var upToDate = job(1, state: .upToDate, dueAt: monday + 600)
        upToDate.record.reason = "mirrored"
        let retrying = job(2, state: .transientError, dueAt: monday + 60)
        let plan = Reconciler.plan([upToDate, retrying], facts: facts())
        #expect(plan.start.isEmpty && plan.changes.isEmpty)
        #expect(plan.wakeAt == monday + 60)
        let later = Reconciler.plan([upToDate, retrying], facts: facts(at: monday + 61))
        #expect(later.start == [2])
        #expect(later.wakeAt == monday + 600)
    }

    @Test func anIdleMirrorNeedsNoTimer() {
        let done = job(1, state: .complete)
        let failed = job(2, state: .error)
        let plan = Reconciler.plan([done, failed], facts: facts())
        #expect(plan == ReconcilePlan())
    }

    @Test func perPriorityBandwidthIsSharedAndTheTimetableSetsTheGlobalRate() throws {
        let rule = BandwidthRule(
            at: 8 * 60,
            total: .limited(ByteRate(bytesPerSecond: 4_000_000)),
            perPriority: [.low: .limited(ByteRate(bytesPerSecond: 1_000_000))]
        )
        var capped = job(2, .low)
        capped.spec.policy.maxRate = .limited(ByteRate(bytesPerSecond: 100_000))
        var input = facts(total: 8)
        input.bandwidth = BandwidthTimetable([rule, BandwidthRule(at: 18 * 60)])
        let plan = Reconciler.plan([job(1, .low), capped, job(3, .high)], facts: input)
        #expect(plan.globalRate == .limited(ByteRate(bytesPerSecond: 4_000_000)))
        #expect(plan.rates[1] == .limited(ByteRate(bytesPerSecond: 500_000)))
        #expect(plan.rates[2] == .limited(ByteRate(bytesPerSecond: 100_000)))
        #expect(plan.rates[3] == .off)
        #expect(plan.wakeAt == monday + 6 * 3600)  // the 18:00 row
    }

    // MARK: Properties

    static let jobs = zip(
        Gen.int(in: 0...3),
        Gen.element(of: JobState.allCases).compactMap { $0 },
        Gen.bool(0.2),
        Gen.bool(0.3),
        Gen.int(in: -100...100),
        Gen.int(in: 0...3)
    ).array(of: 0...30)

    static func views(_ raw: [(Int, JobState, Bool, Bool, Int, Int)]) -> [JobView] {
        raw.enumerated().map { index, item in
            let (priority, state, suspended, running, due, network) = item
            var view = job(
                Int64(index + 1),
                Priority.allCases[priority],
                state: state,
                running: running && !state.isTerminal,
                userSuspended: suspended,
                dueAt: due == 0 ? nil : monday + Double(due),
                lastStartedAt: Double(due),
                network: [.any, .notRoaming, .unmetered, .any][network]
            )
            // As the agent keeps them: an up-to-date job stores no reason; its status derives one.
            if state == .upToDate { view.record.reason = "" }
            return view
        }
    }

    /// With a backlog, the engine gets more jobs than it may connect, in rank order, and a job waiting there
    /// preempts a connected lower one only where that frees a connection it can take.
    @Test func theEngineGetsABacklogAndPreemptionFreesOnlyUsableConnections() {
        var limits = Concurrency()
        limits.total = 2
        limits.perHost = 1
        func facts(backlog: Int) -> ReconcileFacts {
            ReconcileFacts(now: LocalTime(epochSeconds: monday), limits: limits, backlog: backlog)
        }
        let queued = (1...10).map { job(Int64($0), $0 == 7 ? .high : .normal) }
        let plan = Reconciler.plan(queued, facts: facts(backlog: 3))
        #expect(plan.start == [7, 1, 2, 3, 4])
        #expect(plan.changes.map(\.id) == [5, 6, 8, 9, 10])
        #expect(plan.changes.allSatisfy { $0.reason == "waiting for a free slot (2 of 2 running)" })

        func on(_ host: String, _ view: JobView, admitted: Bool) -> JobView {
            var view = view
            view.spec.urls = ["https://\(host)/\(view.record.id)"]
            view.isRunning = true
            view.isAdmitted = admitted
            return view
        }
        // A high job waits for host a, which a low job holds: that one makes room, not the low job on host b.
        let sameHost = Reconciler.plan(
            [
                on("a", job(1, .low), admitted: true), on("b", job(2, .low), admitted: true),
                on("a", job(3, .high), admitted: false),
            ],
            facts: facts(backlog: 3)
        )
        #expect(sameHost.stop == [1])
        // A high job waiting for host a, which a job of its own level holds: stopping the low job on b frees nothing
        // it can use.
        let busyHost = Reconciler.plan(
            [
                on("a", job(1, .high), admitted: true), on("b", job(2, .low), admitted: true),
                on("a", job(3, .high), admitted: false),
            ],
            facts: facts(backlog: 3)
        )
        #expect(busyHost.stop.isEmpty)
        // Every connection taken, the high job's host free: the lowest connected job makes room.
        let full = Reconciler.plan(
            [
                on("a", job(1, .normal), admitted: true), on("b", job(2, .low), admitted: true),
                on("c", job(3, .high), admitted: false),
            ],
            facts: facts(backlog: 3)
        )
        #expect(full.stop == [2])
        // A free connection: the engine admits the waiting job by itself.
        limits.total = 3
        let room = Reconciler.plan(
            [on("a", job(1, .low), admitted: true), on("c", job(3, .high), admitted: false)],
            facts: facts(backlog: 3)
        )
        #expect(room.stop.isEmpty && room.start.isEmpty)
    }

    /// One host's long list never takes the engine from the others: connected jobs elsewhere keep their
    /// connections (the long list could not use them: its host is full), and each host's waiting jobs are capped.
    @Test func aLongListForOneHostStopsNothingElsewhere() {
        var limits = Concurrency()
        limits.total = 8
        limits.perHost = 4
        func on(_ host: String, _ view: JobView) -> JobView {
            var view = view
            view.spec.urls = ["https://\(host)/\(view.record.id)"]
            return view
        }
        var jobs = (1...400).map { on("a", job(Int64($0), .normal)) }
        jobs += (401...404).map { on("b", job(Int64($0), .low, running: true)) }
        let plan = Reconciler.plan(
            jobs,
            facts: ReconcileFacts(now: LocalTime(epochSeconds: monday), limits: limits, backlog: 512)
        )
        #expect(plan.stop.isEmpty)
        #expect(plan.start.count == 256)  // host a's share of the waiting: 64 per connection it may have
    }

    /// A connected transfer that the network holds back is paused, not stopped, for the grace: a flap costs
    /// nothing; allowed again it resumes where it was; held longer it is stopped.
    @Test func aHeldBackTransferPausesForTheGraceThenStops() {
        let metered = NetworkView.online(cost: .metered, roaming: false)
        func facts(_ network: NetworkView, paused: [Int64: Double] = [:], at now: Double = monday) -> ReconcileFacts {
            ReconcileFacts(now: LocalTime(epochSeconds: now), network: network, paused: paused, pauseGrace: 30)
        }
        let running = job(1, running: true, network: .unmetered)
        let held = Reconciler.plan([running], facts: facts(metered))
        #expect(held.pause == [1] && held.stop.isEmpty)
        #expect(
            held.changes == [
                JobStateChange(id: 1, state: .suspended, reason: "waiting for an unmetered network (metered now)")
            ]
        )
        #expect(held.wakeAt == monday + 30)
        var paused = running
        paused.record.state = .suspended
        paused.record.reason = "waiting for an unmetered network (metered now)"
        // Still held within the grace: nothing changes (level-triggered).
        let still = Reconciler.plan([paused], facts: facts(metered, paused: [1: monday - 10]))
        #expect(still.pause.isEmpty && still.stop.isEmpty && still.changes.isEmpty)
        // Allowed again: it resumes where it was.
        let back = Reconciler.plan([paused], facts: facts(.unmonitored, paused: [1: monday - 10]))
        #expect(back.resume == [1] && back.start.isEmpty && back.stop.isEmpty)
        #expect(back.changes.map(\.state) == [.transferring])
        // Held past the grace: stopped.
        let late = Reconciler.plan([paused], facts: facts(metered, paused: [1: monday - 31]))
        #expect(late.stop == [1])
        // A person's suspend stops it at once.
        var suspended = running
        suspended.record.userSuspended = true
        #expect(Reconciler.plan([suspended], facts: facts(.unmonitored)).stop == [1])
    }

    /// A transfer whose origin lost its route is paused at once and held for the link grace, not the pause grace:
    /// a link back within it continues the same connection; after it, the transfer is stopped and waits, with no
    /// retry and no back-off, for the route.
    @Test func aLostRouteHoldsForTheLinkGraceThenStops() {
        func facts(_ view: NetworkView, paused: [Int64: Double] = [:]) -> ReconcileFacts {
            ReconcileFacts(
                now: LocalTime(epochSeconds: monday),
                network: .online(cost: .unmetered, roaming: false),
                networkByHost: ["o.test": view],
                paused: paused,
                pauseGrace: 30,
                linkGrace: 2
            )
        }
        let running = job(1, running: true, network: .unmetered)
        let gone = NetworkView.unreachable("o.test")
        let held = Reconciler.plan([running], facts: facts(gone))
        #expect(held.pause == [1] && held.stop.isEmpty)
        #expect(held.changes == [JobStateChange(id: 1, state: .suspended, reason: "no route to o.test")])
        #expect(held.wakeAt == monday + 2)
        var paused = running
        paused.record.state = .suspended
        paused.record.reason = "no route to o.test"
        #expect(Reconciler.plan([paused], facts: facts(gone, paused: [1: monday - 1])).stop.isEmpty)
        #expect(Reconciler.plan([paused], facts: facts(gone, paused: [1: monday - 2])).stop == [1])
        #expect(Reconciler.plan([paused], facts: facts(.offline, paused: [1: monday - 2])).stop == [1])
        // Back within the grace: the same transfer resumes.
        let back = facts(.online(cost: .unmetered, roaming: false), paused: [1: monday - 1])
        #expect(Reconciler.plan([paused], facts: back).resume == [1])
        // A metered uplink keeps the pause grace.
        let metered = NetworkView.online(cost: .metered, roaming: false, via: "wwan0, rule 1 'wwan*'")
        #expect(Reconciler.plan([paused], facts: facts(metered, paused: [1: monday - 10])).stop.isEmpty)
    }

    static let networks: [NetworkView] = [
        .unmonitored, .offline, .online(cost: .metered, roaming: false), .online(cost: .unmetered, roaming: false),
        .online(cost: .metered, roaming: true),
    ]

    @Test func neverMoreTransfersThanTheLimitAndForegroundNeverWaitsBehindALowerLevel() async {
        await propertyCheck(count: 400, input: Self.jobs, Gen.int(in: 0...6), Gen.int(in: 0...4)) { raw, limit, net in
            let views = Self.views(raw)
            let plan = Reconciler.plan(views, facts: facts(total: limit, network: Self.networks[net]))
            let before = Set(views.filter(\.isRunning).map(\.record.id))
            let after = before.subtracting(plan.stop).union(plan.start)
            #expect(after.count <= limit)
            #expect(Set(plan.start).isDisjoint(with: before))
            #expect(plan.stop.allSatisfy(before.contains))
            let byID = Dictionary(uniqueKeysWithValues: views.map { ($0.record.id, $0) })
            let lowestRunning = after.map { byID[$0]!.spec.policy.priority }.min()
            for change in plan.changes where change.state == .queued {
                // A job left waiting for a slot never waits behind a running job of a lower level.
                if let lowestRunning { #expect(byID[change.id]!.spec.policy.priority <= lowestRunning) }
            }
        }
    }

    @Test func userSuspendedJobsNeverRunAndEveryWaitingJobHasAReason() async {
        await propertyCheck(count: 400, input: Self.jobs, Gen.int(in: 0...6), Gen.int(in: 0...4)) { raw, limit, net in
            let views = Self.views(raw)
            let plan = Reconciler.plan(views, facts: facts(total: limit, network: Self.networks[net]))
            let changes = Dictionary(plan.changes.map { ($0.id, $0) }, uniquingKeysWith: { $1 })
            let running = Set(views.filter(\.isRunning).map(\.record.id)).subtracting(plan.stop).union(plan.start)
            for view in views {
                let id = view.record.id
                if view.record.userSuspended {
                    #expect(!running.contains(id))
                    if !view.record.state.isTerminal { #expect(changes[id]?.state ?? view.record.state == .suspended) }
                }
                if !running.contains(id) {
                    let reason = changes[id]?.reason ?? view.record.statusReason(now: 1_000)
                    #expect(!reason.isEmpty, "job \(id) in \(view.record.state) has no reason")
                }
            }
            // Applying the plan and planning again changes nothing: the reconciler is level-triggered.
            let applied = views.map { view -> JobView in
                var next = view
                next.isRunning = running.contains(view.record.id)
                next.isAdmitted = next.isRunning  // without a backlog, whatever runs is connected
                if next.isRunning { next.record.state = .transferring }
                if let change = changes[view.record.id] {
                    next.record.state = change.state
                    next.record.reason = change.reason
                }
                return next
            }
            let again = Reconciler.plan(applied, facts: facts(total: limit, network: Self.networks[net]))
            #expect(again.start.isEmpty && again.stop.isEmpty && again.changes.isEmpty)
        }
    }
}
