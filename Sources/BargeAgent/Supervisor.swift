public import BargeCore
import BargeLoader
public import BargeNetwork
import BargeStore
import BargeTransfer
import CBargeLinux
import Crypto
import Foundation
import Glibc
import Logging

/// A running transfer's tightest cap and why (`300 KiB/s (max-rate)`), and what yielding tells its reason.
struct RateNote: Sendable {
    var limit: String
    var yielding: String?
}

/// A job's transfer while the engine runs it (kept until its `finished` event, even after a stop was asked).
struct LiveTransfer: Sendable {
    var transfer: TransferID
    /// A stop was asked; the state the plan gave it stands when the transfer ends.
    var stopping = false
    var received: UInt64 = 0
    /// The engine gave it a connection (until then it waits in the engine's queue).
    var admitted = false
    /// Paused by a plan (held back by the user, the network or a window), since then.
    var pausedSince: Double?
    /// The bytes kept for the job when the transfer began (its checkpoint): progress is going past them, not
    /// merely past where an attempt started (an attempt that starts over from zero and fails at the same place
    /// again made none).
    var startOffset: UInt64 = 0
    var bytesPerSecond: Double = 0
    var rate: RateLimit?
    /// The interface its connections are bound to (its origin's path when it began); nil: not bound.
    var interface: String?
    /// It draws from its interface's yield budget (a background transfer on a watched link).
    var yields = false
    /// Which way its bytes go: an upload's are sent.
    var direction = YieldController.Direction.receiving
}

/// A manifest as loaded for the agent: what it says, with its entries already turned into specs.
struct LoadedManifest: Sendable {
    let id: String
    let path: String
    let errors: [String]
    /// The entries' specs; nil when the manifest is invalid.
    let specs: [JobSpec]?
    let hooks: Hooks?
    let prune: Bool?
    /// A digest of a valid manifest's text.
    let digest: String?
    /// A valid manifest's text, unless it is known to be the last good version stored (``ManifestDiff`` stores it
    /// when its digest differs from the stored one).
    let newGoodText: String?
    /// The file's owner (its hooks run as them); the agent's own user when it cannot be told.
    let owner: (uid: UInt32, gid: UInt32)
    /// When a file its uploads found still settling is due to be looked at again.
    let nextScan: Double?
    /// The directories its uploads' files are found in (watched for new files).
    let sourceDirectories: [String]
    /// What its uploads could not read now (directories end with `/`): their jobs are kept as they are.
    let unreadableSources: [String]

    /// The specs of a manifest's entries: its downloads', and one per file each upload finds now.
    static func specs(of manifest: Manifest, id: String) -> UploadScanner.Found {
        var all = UploadScanner.Found()
        all.specs = manifest.downloads.map { JobSpec(manifest: id, entry: $0) }
        let now = Date().timeIntervalSince1970
        for entry in manifest.uploads {
            let found = UploadScanner.scan(entry, manifest: id, now: now)
            all.specs += found.specs
            all.directories += found.directories
            all.unreadable += found.unreadable
            if let next = found.nextScan { all.nextScan = min(all.nextScan ?? next, next) }
        }
        return all
    }

    /// `storedDigests`: the stored last good versions' digests, or nil while they are not known yet (the first read
    /// runs while the store opens).
    init(_ parsed: ParsedManifest, storedDigests: [String: String]? = nil) {
        self.id = parsed.id
        self.path = parsed.path
        self.errors = parsed.diagnostics.filter { $0.severity == .error }.map(\.description)
        let found = parsed.manifest.map { Self.specs(of: $0, id: parsed.id) }
        self.specs = found?.specs
        self.nextScan = found?.nextScan
        self.sourceDirectories = found?.directories ?? []
        self.unreadableSources = found?.unreadable ?? []
        self.hooks = parsed.manifest?.hooks
        self.prune = parsed.manifest?.prune
        var info = stat()
        self.owner = stat(parsed.path, &info) == 0 ? (info.st_uid, info.st_gid) : (geteuid(), getegid())
        if parsed.isValid, let text = parsed.text {
            let digest = SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
            self.digest = digest
            self.newGoodText = storedDigests.map { $0[parsed.id] == digest } == true ? nil : text
        } else {
            self.digest = nil
            self.newGoodText = nil
        }
    }

    /// A manifest's stored last good version, parsed again, standing in for a file that is invalid now.
    init(restoring version: ManifestVersion, current: LoadedManifest, loader: ManifestLoader) {
        let parsed = ManifestParser(config: loader.config, facts: loader.facts).parse(
            text: version.text,
            path: current.path,
            id: current.id
        )
        self.id = current.id
        self.path = current.path
        self.errors = current.errors
        let found = parsed.manifest.map { Self.specs(of: $0, id: current.id) }
        self.specs = found?.specs
        self.nextScan = found?.nextScan
        self.sourceDirectories = found?.directories ?? []
        self.unreadableSources = found?.unreadable ?? []
        self.hooks = parsed.manifest?.hooks
        self.prune = parsed.manifest?.prune
        self.digest = nil
        self.newGoodText = nil
        self.owner = current.owner
    }
}

/// A manifest file as the agent knows it: its last good version runs while a bad edit is shown as invalid.
struct KnownManifest {
    var path: String
    /// Whether a valid version was loaded (the current one, or an earlier one whose jobs keep running).
    var hasGoodVersion: Bool
    /// When the good version that runs while the file is invalid was stored (nil: the file is valid, or that
    /// version was loaded in this run).
    var goodVersionStoredAt: Double?
    /// The hooks of the good version.
    var hooks: Hooks
    /// The good version's `prune`: removed entries take their mirrored files with them.
    var prune: Bool
    var errors: [String]
    var owner: (uid: UInt32, gid: UInt32)
}

/// The one writer of the agent's state. Every event — the manifests changed, transfers reported, the timer
/// fired, a command arrived — comes here; the supervisor updates its jobs, runs the pure ``Reconciler`` and hands
/// the plan to the engine, then writes what changed to the store in one transaction.
public actor Supervisor {
    let configPath: String?
    let config: AgentConfig
    let store: any JobPersistence
    let engine: any TransferControl
    private let reporter: TransferReporter
    private let reports: AsyncStream<[TransferReport]>
    /// Every event comes through here; ``run(_:)`` takes them in order, a burst at a time.
    nonisolated let inbox = SupervisorInbox()
    /// The loop that takes the inbox's events, and the task that forwards the engine's reports to it.
    private var loop: Task<Void, Never>?
    private var forwarder: Task<Void, Never>?
    /// Set by ``stop()``: nothing new starts.
    private var stopping = false
    /// How many jobs the engine held after the last plan (connected and waiting there).
    private var handedAtLastPlan = 0
    /// Every job, compactly (an agent holds 100,000s); the reconciler reads its array as it is.
    private var table = JobTable()
    /// The jobs that run now.
    private var live: [Int64: LiveTransfer] = [:]
    private var byTransfer: [TransferID: Int64] = [:]
    /// Jobs whose spec so far came only from the store, which keeps part of the policy (not yet from a manifest in
    /// this run).
    private var specsFromStoreOnly: Set<Int64> = []
    private var manifests: [String: KnownManifest] = [:]
    /// The digests of the manifests' last good versions in the store, by manifest id.
    private var manifestDigests: [String: String] = [:]
    /// Why the drop-in directory cannot be read now (nil: it was read); nothing is removed while it is set.
    private var directoryProblem: String?
    /// Whether the last read failed or found the directory empty (set until a read finds manifests again).
    private var directoryFailed = false
    private var directoryRetry: Task<Void, Never>?
    /// Watches on the directories uploads find their files in: a file written there is looked at at once.
    private var sourceWatchers: [String: ManifestWatcher] = [:]
    /// The manifests are read again when a file an upload found still settling is due to have settled.
    private var sourceRescan: (at: Double, task: Task<Void, Never>)?
    /// How often an unreadable drop-in directory is read again (the watcher also tells when it comes back).
    static let directoryRetryInterval: Duration = .seconds(5)
    /// How long a drop-in directory found empty while manifests' jobs exist keeps them (a replacement under way).
    static let emptyDirectoryGrace: Double = 10
    /// Since when the drop-in directory has held no manifest while their jobs exist.
    private var emptySince: Double?
    /// Until when manifests absent from the drop-in directory keep their jobs: it was just missing, unreadable or
    /// empty, and may be being filled again a file at a time.
    private var unsettledUntil: Double?
    private var pending = JobStore.Batch()
    /// Destinations of one-shot jobs being added (the actor takes other work while the store writes them).
    private var destinationsBeingAdded: Set<String> = []
    /// The batch being written now (one at a time).
    private var storeWrite: Task<Void, Never>?
    /// The drop-in directory's read started with the supervisor, until the first sync takes it.
    private var firstRead: Task<DirectoryRead, Never>?
    /// The highest job id given so far.
    private var lastJobID: Int64 = 0
    private var timer: Task<Void, Never>?
    private var wakeAt: Double?
    private var globalRate: RateLimit = .off
    private var lastReconcileSeconds: Double?
    private let startedAt = Date().timeIntervalSince1970
    private let hooks: HookRunner
    /// Told of state changes (systemd's STATUS=).
    private let notifier: SystemdNotifier?
    var network: NetworkView = .unmonitored
    /// The network monitor, when it runs; the jobs of each origin then meet the network by the uplink their
    /// traffic leaves by (``networkByHost``).
    private var monitor: NetworkMonitor?
    /// Counters and histograms for `GET /metrics`.
    let metrics = AgentMetrics()
    /// The uplinks as the monitor last reported them.
    private var uplinks: NetworkSnapshot?
    /// The view of each origin's jobs (``JobSpec/host``), worked out by the monitor for the origins of the jobs;
    /// emptied when the uplinks change.
    private var networkByHost: [String: NetworkView] = [:]
    /// The verdicts set by hand, as stored.
    private var overrides: [String: UplinkOverride] = [:]
    /// The interface each origin's traffic leaves by, as the last views found it (for the rates `barge net`
    /// shows).
    private var interfaceByHost: [String: String] = [:]
    /// The origins' numeric addresses, as last looked up (a view is worked out from these at once after a network
    /// change; a name is looked up again in the background); nil: it did not resolve.
    private var addressByHost: [String: String?] = [:]
    /// Hosts being looked up now.
    private var resolving: Set<String> = []
    /// Whether jobs may have origins without a view yet (jobs added, or the uplinks changed).
    private var hostsNeedViews = true
    /// When the uplinks last changed, and the jobs whose transient failure came soon after (most likely from that
    /// change): the next change retries them at once.
    private var lastNetworkChangeAt: Double?
    private var failedWithTheNetwork: Set<Int64> = []
    /// Where removed jobs' partials and pruned files are unlinked, in order, off the cooperative threads (a
    /// manifest of 100,000 entries removed is 100,000 unlinks). A partial that a new transfer holds by then is
    /// left alone: its lock says it is not the old one's.
    static let cleanup = DispatchQueue(label: "barge.cleanup", qos: .utility)
    /// Owners named by entries, resolved through the user database (off the cooperative threads) once each.
    private var resolvedOwners: [FileOwner: (uid: UInt32, gid: UInt32)?] = [:]
    /// The links that carry yielding transfers, and their controllers (sampled while any runs).
    /// The yield controllers of each direction: downloads' (received bytes) and uploads' (sent bytes).
    private var yielding: [YieldController.Direction: LinkYielding]
    /// Posts ``SupervisorEvent/yieldTick`` every ``LinkYielding/interval`` while yielding transfers run; nil else.
    private var yieldTicker: Task<Void, Never>?
    /// Interfaces known to be loopback or not (``isLoopback(_:)``).
    private var loopbackByInterface: [String: Bool] = [:]
    /// Unfinished one-shot jobs a local user who does not administer the agent may have at once.
    static let jobsPerUser = 100
    /// How long a transfer held back by the user, the network or its window stays paused in the engine (its
    /// connection and partial kept: a short flap costs nothing) before it is stopped and checkpointed.
    static let pauseGrace: Double = 30
    /// Bytes between checkpoints: the most a killed agent fetches again.
    public static let checkpointInterval: UInt64 = 8 << 20

    /// Opens the store and starts the engine; call ``start()`` next. The drop-in directory is read (on another
    /// core) while the store opens and its jobs load: a burst of new entries starts sooner.
    public init(config: AgentConfig, configPath: String?, notifier: SystemdNotifier? = nil) throws {
        let firstRead = Task { await Self.readDirectory(config: config, storedDigests: nil) }
        let store: JobStore
        do {
            store = try JobStore(directory: config.stateDirectory)
        } catch {
            firstRead.cancel()
            throw error
        }
        self.init(
            config: config,
            configPath: configPath,
            notifier: notifier,
            store: store,
            engine: TransferEngine(limits: config.concurrency),
            firstRead: firstRead
        )
    }

    /// A supervisor over a given store and engine (the tests' doubles).
    init(
        config: AgentConfig,
        configPath: String?,
        notifier: SystemdNotifier?,
        store: any JobPersistence,
        engine: any TransferControl,
        firstRead: Task<DirectoryRead, Never>? = nil
    ) {
        self.firstRead = firstRead
        self.config = config
        self.configPath = configPath
        self.store = store
        self.engine = engine
        (self.reports, self.reporter) = engine.makeReportStream()
        self.hooks = HookRunner()
        self.notifier = notifier
        var settings = YieldController.Settings(capacity: config.yield.capacity)
        settings.threshold = config.yield.threshold
        settings.floor = config.yield.floor
        settings.climbSeconds = Double(config.yield.climb.seconds)
        self.yielding = [.receiving: LinkYielding(settings: settings), .sending: LinkYielding(settings: settings)]
    }

    /// Loads the stored jobs and the manifests, starts what is due, and consumes the engine's reports until
    /// ``stop()``.
    public func start() async throws {
        var views: [JobView] = []
        do {
            let stored = try await self.store.jobs()
            views.reserveCapacity(stored.count)
            for stored in stored {
                var record = stored.record
                if record.state.isRunning {
                    // The agent stopped (or was killed) while it ran: it resumes from its last checkpoint.
                    record.state = .queued
                    record.reason = "resuming after a restart"
                }
                // A mirror's reason is derived when shown; an upload's (what was sent, where) is its own.
                if record.state == .upToDate, !stored.spec.isUpload { record.reason = "" }
                views.append(JobView(spec: stored.spec, record: record, isRunning: false))
            }
        }
        self.manifestDigests = try await self.store.manifestDigests()
        self.lastJobID = try await self.store.lastJobID()
        self.store.releaseMemory()
        self.table = JobTable(views)
        self.specsFromStoreOnly = Set(views.lazy.map(\.record.id))
        views = []
        await self.readManifests()
        await self.reconcile()
        self.writeBehind()
        let (reports, inbox) = (self.reports, self.inbox)
        self.forwarder = Task {
            for await batch in reports { inbox.post(.reports(batch)) }
        }
        self.loop = Task { await self.run() }
    }

    /// Takes the inbox's events until it is finished: each time everything that waits, coalesced
    /// (``SupervisorWork``), carried out, then planned once. One event's work never interleaves with another's.
    private func run() async {
        while let events = await self.inbox.next() {
            await self.process(SupervisorWork(events))
        }
    }

    private func process(_ work: SupervisorWork) async {
        for batch in work.reports { self.apply(batch) }
        if let snapshot = work.network { self.networkChanged(snapshot) }
        if !work.resolved.isEmpty { self.hostsResolved(work.resolved) }
        var replies: [(CheckedContinuation<CommandReply, Never>, CommandReply)] = []
        for (command, caller, reply) in work.commands {
            replies.append((reply, await self.perform(command, by: caller)))
        }
        if work.readsManifests { await self.readManifests() }
        // Transfers that succeeded while the engine still holds half its backlog need no plan yet: it gives their
        // connections to the jobs waiting there, and a plan over every job for each batch of small files would
        // cost the burst more than it gains.
        let backlogHolds =
            self.handedAtLastPlan > self.config.concurrency.total && self.live.count * 2 >= self.handedAtLastPlan
        let planWaits = work.onlySuccessesEnded && backlogHolds
        if work.needsReconcile, !planWaits, !self.stopping { await self.reconcile() }
        // What changed is written behind the loop (the next events need not wait for the disk), except when someone
        // waits for an answer: that comes once its changes are stored.
        if work.yieldTick { await self.sampleLinks() }
        await self.keepSamplingLinks()
        if replies.isEmpty, work.manifestWaiters.isEmpty { self.writeBehind() } else { await self.flush() }
        for (reply, answer) in replies { reply.resume(returning: answer) }
        for waiter in work.manifestWaiters { waiter.resume() }
    }

    private func perform(_ command: SupervisorCommand, by caller: ControlCaller) async -> CommandReply {
        switch command {
        case .suspend(let selection): self.suspendJobs(selection, by: caller)
        case .resume(let selection): self.resumeJobs(selection, by: caller)
        case .cancel(let selection): self.cancelJobs(selection, by: caller)
        case .retry(let selection): self.retryJobs(selection, by: caller)
        case .add(let request): await self.addJob(request, by: caller)
        case .setUplink(let interface, let change): await self.setUplinkOverride(change, for: interface, by: caller)
        }
    }

    /// Sends a command through the inbox and waits for its answer.
    private nonisolated func send(_ command: SupervisorCommand, by caller: ControlCaller) async -> CommandReply {
        await withCheckedContinuation { reply in self.inbox.post(.command(command, by: caller, reply: reply)) }
    }

    // MARK: Yielding to other traffic

    /// The links that carry yielding transfers going `direction` now (connected ones, not paused).
    private func yieldingLinks(_ direction: YieldController.Direction) -> Set<String> {
        Set(
            self.live.values.lazy.filter {
                $0.yields && $0.admitted && $0.pausedSince == nil && $0.direction == direction
            }.compactMap(\.interface)
        )
    }

    /// Samples each link that carries yielding transfers (its counter in their direction, fresh from the kernel,
    /// and Barge's own bytes on it) and gives the engine the budgets that changed.
    private func sampleLinks() async {
        guard !self.stopping else { return }
        let engine = self.engine
        let links = Dictionary(
            uniqueKeysWithValues: YieldController.Direction.allCases.map { ($0, self.yieldingLinks($0)) }
        )
        let barge = links.values.allSatisfy(\.isEmpty) ? [:] : await engine.wireBytes()
        let now = ProcessInfo.processInfo.systemUptime
        var counters: [String: InterfaceCounters] = [:]
        for direction in YieldController.Direction.allCases {
            let links = links[direction] ?? []
            var yielding = self.yielding[direction]!
            let wasYielding = Set(yielding.controllers.filter { $0.value.state != .clear }.keys)
            let changed = yielding.sample(
                links,
                at: now,
                linkBytes: { link in
                    if counters[link] == nil { counters[link] = InterfaceCounters.read(interface: link) }
                    return direction == .sending ? counters[link]?.sent : counters[link]?.received
                },
                bargeBytes: { barge[$0]?[direction] ?? 0 }
            )
            self.yielding[direction] = yielding
            let what = direction == .sending ? "background uploads" : "background downloads"
            for (link, budget) in changed {
                engine.setYieldRate(on: link, budget, direction: direction)
                // Said when it starts yielding and when it is unlimited again, not at each step between.
                if budget == .off {
                    guard links.contains(link) else { continue }  // forgotten (its transfers ended), not climbed back
                    Log.info("yield: the link is Barge's again; \(what) unlimited", ["uplink": "\(link)"])
                } else if !wasYielding.contains(link), let note = yielding.note(for: link),
                    yielding.controllers[link]?.state != .clear
                {
                    Log.info("yield: \(note); \(what) limited to \(budget)", ["uplink": "\(link)"])
                }
            }
        }
    }

    /// Whether the interface is a loopback, read once per name (a burst of starts reads nothing).
    private func isLoopback(_ interface: String) -> Bool {
        if let known = self.loopbackByInterface[interface] { return known }
        let loopback = Self.isLoopback(interface)
        self.loopbackByInterface[interface] = loopback
        return loopback
    }

    /// Whether the interface is a loopback (IFF_LOOPBACK in its sysfs flags).
    static func isLoopback(_ interface: String) -> Bool {
        guard let text = try? String(contentsOfFile: "/sys/class/net/\(interface)/flags", encoding: .utf8),
            let flags = Int(text.trimmingCharacters(in: .whitespacesAndNewlines).dropFirst(2), radix: 16)
        else { return false }
        return flags & 0x8 != 0  // IFF_LOOPBACK
    }

    /// Keeps the sampling tick running while yielding transfers run, and only then (an idle agent never wakes).
    private func keepSamplingLinks() async {
        let needed =
            !self.stopping && self.config.yield.enabled
            && self.live.values.contains { $0.yields && $0.admitted && $0.pausedSince == nil && $0.interface != nil }
        if needed, self.yieldTicker == nil {
            let inbox = self.inbox
            self.yieldTicker = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: LinkYielding.interval)
                    inbox.post(.yieldTick)
                }
            }
        } else if !needed, let ticker = self.yieldTicker {
            ticker.cancel()
            self.yieldTicker = nil
            await self.sampleLinks()  // forgets the links: their budgets go back to off
        }
    }

    /// Tells the supervisor that the uplinks changed (the network monitor); returns at once.
    public nonisolated func networkChanged(to snapshot: NetworkSnapshot) { self.inbox.post(.network(snapshot)) }

    /// Lets the network monitor decide how each origin's jobs meet the network, from `snapshot` (its uplinks now)
    /// on; call before ``start()`` so that no job starts before the network is known.
    public func monitorNetwork(_ monitor: NetworkMonitor, snapshot: NetworkSnapshot) {
        self.monitor = monitor
        self.networkChanged(snapshot)
    }

    /// Takes new uplinks: every origin's view is worked out again at the next plan.
    private func networkChanged(_ snapshot: NetworkSnapshot) {
        guard snapshot != self.uplinks else { return }
        self.uplinks = snapshot
        // For an origin without a view of its own (a name that does not resolve): the costliest uplink, so that
        // an entry that may not spend paid data does not when it cannot be told.
        let costliest = snapshot.uplinks.max { $0.verdict.price < $1.verdict.price }
        self.network =
            costliest.map { uplink in
                .online(
                    cost: uplink.verdict.cost,
                    roaming: uplink.verdict.roaming,
                    via: "\(uplink.facts.name), \(uplink.verdict.costSource)"
                )
            } ?? .offline
        self.networkByHost = [:]
        self.interfaceByHost = [:]
        self.hostsNeedViews = true
        // Names are looked up again on the new network (its resolver may answer otherwise); meanwhile the addresses
        // known keep their views coming at once. A name that did not resolve waits for the new answer.
        for (host, address) in self.addressByHost where address == nil { self.addressByHost[host] = nil }
        self.lookUp(self.addressByHost.keys.filter { !self.resolving.contains($0) })
        let now = Date().timeIntervalSince1970
        if !snapshot.uplinks.isEmpty {
            // Jobs whose connection failed with the last change try again at once on the new network (not before a
            // server's Retry-After: those are not among them); their attempts count on.
            for id in self.failedWithTheNetwork {
                guard let view = self.table[id], view.record.state == .transientError,
                    let due = view.record.dueAt, due > now
                else { continue }
                self.table.modify(id) { job in
                    job.record.dueAt = now
                    self.pending.records.append(job.record)
                }
            }
            self.failedWithTheNetwork = []
        }
        self.lastNetworkChangeAt = now
        let lines = snapshot.report.text.split(separator: "\n")
        Log.info("network: \(snapshot.uplinks.isEmpty ? "no uplink" : lines.joined(separator: "; "))")
    }

    /// Asks the monitor for the views of origins that have none yet, from their addresses as last looked up:
    /// never waiting for a resolver (after a roam the old DNS server may not answer for many seconds). A name
    /// never looked up is looked up in the background; until it answers its jobs wait ("looking up HOST"), and
    /// the answer brings a new plan (``SupervisorEvent/hostsResolved(_:)``). A name that did not resolve gets the
    /// general view (the costliest uplink's).
    private func updateNetworkViews() async {
        guard let monitor = self.monitor, self.hostsNeedViews else { return }
        self.hostsNeedViews = false
        var missing = Set<String>()
        for view in self.table.views where self.networkByHost[view.spec.host] == nil { missing.insert(view.spec.host) }
        guard !missing.isEmpty else { return }
        var known: [String: String] = [:]
        var unknown: [String] = []
        for host in missing {
            switch self.addressByHost[host] {
            case .some(.some(let address)): known[host] = address
            case .some(.none): self.networkByHost[host] = self.network  // did not resolve: the costliest view
            case .none:
                if host == "this machine" {
                    known[host] = host
                } else if let address = NetworkMonitor.numericAddress(of: host) {
                    known[host] = address
                } else {
                    // Not started before its path is known: it would not be bound to it.
                    self.networkByHost[host] = .lookingUp(host)
                    unknown.append(host)
                }
            }
        }
        if !known.isEmpty {
            let addresses = known
            let paths = await monitor.onThread { $0.paths(to: addresses) }
            for host in known.keys {
                self.networkByHost[host] = paths[host]?.view ?? self.network
                self.interfaceByHost[host] = paths[host]?.interface
            }
        }
        self.lookUp(unknown.filter { !self.resolving.contains($0) })
    }

    /// Looks `hosts` up off the actor; the answer comes through the inbox.
    private func lookUp(_ hosts: [String]) {
        guard !hosts.isEmpty else { return }
        self.resolving.formUnion(hosts)
        let inbox = self.inbox
        Task.detached {
            let found = await NetworkMonitor.addresses(of: hosts)
            inbox.post(.hostsResolved(Dictionary(uniqueKeysWithValues: hosts.map { ($0, found[$0]) })))
        }
    }

    /// Takes looked-up addresses: their hosts' views are worked out at the next plan.
    private func hostsResolved(_ addresses: [String: String?]) {
        for (host, address) in addresses {
            self.resolving.remove(host)
            self.addressByHost[host] = .some(address)
            self.networkByHost[host] = nil
        }
        self.hostsNeedViews = true
    }

    /// The network as each running transfer meets it, where that is not its origin's view: a transfer bound to an
    /// interface that is no longer its origin's path goes on while that interface still suits its entry; else,
    /// if the origin's path suits it, it moves there (stopped at once, or after the link grace when its interface
    /// is gone: a flap); else it waits with its origin's reason, paused, in case its interface comes back.
    private func networkOfMovedTransfers() -> [Int64: NetworkView] {
        guard self.monitor != nil, let uplinks = self.uplinks else { return [:] }
        var views: [Int64: NetworkView] = [:]
        for (id, running) in self.live {
            guard let interface = running.interface, let job = self.table[id] else { continue }
            let host = job.spec.host
            guard let path = self.interfaceByHost[host], path != interface else { continue }
            let policy = job.spec.policy.network
            let uplink = uplinks.uplinks.first { $0.facts.name == interface }
            if let uplink {
                let verdict = uplink.verdict
                let source = verdict.roaming ? verdict.roamingSource : verdict.costSource
                let via = "\(interface), \(source)"
                let own = NetworkView.online(cost: verdict.cost, roaming: verdict.roaming, via: via)
                if own.refusal(for: policy) == nil {
                    views[id] = own
                    continue
                }
            }
            guard (self.networkByHost[host] ?? self.network).refusal(for: policy) == nil else { continue }
            views[id] = uplink == nil ? .unreachable(host) : .moving(to: path)
        }
        return views
    }

    /// The verdicts set by hand that the store keeps (read once, before the monitor starts). Throws when they
    /// cannot be read: the agent does not start on verdicts it cannot know.
    public func storedUplinkOverrides() async throws -> [String: UplinkOverride] {
        self.overrides = try await self.store.uplinkOverrides()
        return self.overrides
    }

    /// `barge net set`: stores the override, then has the monitor classify the uplinks again with it (its report
    /// comes back through the inbox as any network change).
    private func setUplinkOverride(
        _ change: UplinkOverrideChange,
        for interface: String,
        by caller: ControlCaller
    ) async -> CommandReply {
        guard caller.isAdministrator else {
            return .refused(.forbidden, "only an administrator of the agent may set an uplink's verdict")
        }
        guard UplinkOverride.isInterfaceName(interface) else {
            return .refused(.invalidRequest, "'\(interface)' is not an interface name")
        }
        let override: UplinkOverride
        do {
            override = try change.applied(to: self.overrides[interface] ?? UplinkOverride())
        } catch {
            return .refused(.invalidRequest, error.description)
        }
        do {
            try await self.store.setUplinkOverride(override, for: interface)
        } catch {
            return .refused(.failed, "cannot store the override: \(error)")
        }
        if override.cost == nil, override.roaming == nil {
            self.overrides.removeValue(forKey: interface)
        } else {
            self.overrides[interface] = override
        }
        if let monitor = self.monitor { await monitor.onThread { $0.setOverride(override, for: interface) } }
        let what = UplinkOverride.describe(override)
        Log.info("override: \(what)", ["uplink": "\(interface)", "uid": "\(caller.uid)"])
        return CommandReply(ok: true, message: "\(interface): \(what)")
    }

    /// What `barge net` shows through the agent: the uplinks as the monitor last reported them, the overrides,
    /// and the rate of Barge's own transfers by the uplink they leave by.
    public func networkReport() -> NetworkReport? {
        guard self.monitor != nil, let uplinks = self.uplinks else { return nil }
        var report = uplinks.report
        var rates: [String: Double] = [:]
        for (id, running) in self.live where running.pausedSince == nil && running.bytesPerSecond.isFinite {
            guard let host = self.table[id]?.spec.host, let interface = self.interfaceByHost[host] else {
                continue
            }
            rates[interface, default: 0] += running.bytesPerSecond
        }
        for index in report.uplinks.indices {
            report.uplinks[index].bargeRate = UInt64(rates[report.uplinks[index].name] ?? 0)
        }
        report.overrides = self.overrides.sorted { $0.key < $1.key }.map { name, override in
            NetworkReport.OverrideReport(name: name, cost: override.cost?.rawValue, roaming: override.roaming)
        }
        return report
    }

    /// Tells the supervisor that the drop-in directory may have changed (the watcher); returns at once.
    public nonisolated func manifestsMayHaveChanged() { self.inbox.post(.manifestsChanged(done: nil)) }

    /// Reads the drop-in directory again and brings the jobs in line: new entries become jobs, changed ones are
    /// updated, removed ones are cancelled (their partials removed, finished files left in place). A manifest
    /// that turned invalid keeps its last good version. Returns once done.
    public nonisolated func reloadManifests() async {
        await withCheckedContinuation { done in self.inbox.post(.manifestsChanged(done: done)) }
    }

    /// Stops every transfer (each checkpoints its partial), writes the last state, and ends the engine.
    public func stop() async {
        self.stopping = true
        self.timer?.cancel()
        self.yieldTicker?.cancel()
        self.directoryRetry?.cancel()
        self.sourceRescan?.task.cancel()
        for watcher in self.sourceWatchers.values { watcher.cancel() }
        self.sourceWatchers = [:]
        self.notifier?.send("STOPPING=1")
        for running in self.live.values { self.engine.cancel(running.transfer) }
        await self.engine.shutdown()
        // The engine has delivered its last reports (checkpoints, cancellations) to the stream: they reach the
        // inbox, whose loop takes them (and answers what else waits) before it ends.
        self.reporter.finish()
        await self.forwarder?.value
        self.inbox.finish()
        await self.loop?.value
        for view in self.table.views where view.record.state.isRunning || view.isRunning {
            self.table.modify(view.record.id) { view in
                view.record.state = .queued
                view.record.reason = "agent stopped"
                self.pending.records.append(view.record)
            }
        }
        await self.flush()
        self.hooks.terminateAll()
    }

    // MARK: Manifests

    /// Reads the drop-in directory and brings the jobs in line (the plan follows).
    private func readManifests() async {
        await self.syncManifests()
        self.hostsNeedViews = true  // new entries may name new origins
        self.table.compact()
        // Parsing left freed memory in every allocator arena (its temporaries are gone now): give it back.
        _ = CBargeLinux_malloc_trim()
    }

    /// What one read of the drop-in directory found: its manifests, or why it could not be read.
    typealias DirectoryRead = Result<[LoadedManifest], ManifestLoader.PathError>

    /// Reads and parses the drop-in directory, off the cooperative threads. Each file's entries become compact specs
    /// as soon as it is parsed and checked, and the parsed entries go: 100,000s of them never sit in memory together.
    static func readDirectory(config: AgentConfig, storedDigests: [String: String]?) async -> DirectoryRead {
        let loader = ManifestLoader(config: config)
        return await offThePool { () -> DirectoryRead in
            var loaded: [LoadedManifest] = []
            do throws(ManifestLoader.PathError) {
                try loader.forEach(paths: [config.manifestDirectory]) { parsed in
                    loaded.append(LoadedManifest(parsed, storedDigests: storedDigests))
                }
            } catch {
                return .failure(error)
            }
            return .success(loaded)
        }
    }

    private func syncManifests() async {
        let loader = ManifestLoader(config: self.config)
        let directory = self.config.manifestDirectory
        let storedDigests = self.manifestDigests
        let result: DirectoryRead
        if let firstRead = self.firstRead {
            // Read while the store opened: the manifests at the start.
            self.firstRead = nil
            result = await firstRead.value
        } else {
            result = await Self.readDirectory(config: self.config, storedDigests: storedDigests)
        }
        let loaded: [LoadedManifest]
        switch result {
        case .failure(let error):
            // Fail closed: a directory that cannot be read says nothing about the manifests. Every job and file
            // stays as it is until it can be read again.
            if self.directoryProblem != error.description {
                Log.error("cannot read the manifest directory (every job is kept as it is): \(error)")
            }
            self.directoryProblem = error.description
            self.directoryFailed = true
            self.emptySince = nil  // a directory that comes back empty gets its whole grace
            self.unsettledUntil = Date().timeIntervalSince1970 + Self.emptyDirectoryGrace
            self.scheduleDirectoryRetry()
            return
        case .success(let manifests):
            // A directory that holds no manifest while manifests' jobs exist may be one being replaced (`rm -rf`
            // and a copy, an empty one renamed in first): its jobs stay until it has been empty for a while.
            let manifestJobs = manifests.isEmpty ? self.table.views.count { $0.spec.manifest != nil } : 0
            if manifestJobs > 0 {
                let now = Date().timeIntervalSince1970
                let since = self.emptySince ?? now
                self.emptySince = since
                self.unsettledUntil = since + Self.emptyDirectoryGrace
                if now - since < Self.emptyDirectoryGrace {
                    let problem =
                        "it holds no manifest; the \(manifestJobs) jobs of its manifests are kept for "
                        + "\(Int(Self.emptyDirectoryGrace))s in case it is being replaced"
                    if self.directoryProblem != problem { Log.error("the manifest directory \(directory): \(problem)") }
                    self.directoryProblem = problem
                    self.directoryFailed = true
                    self.scheduleDirectoryRetry(after: .seconds(Self.emptyDirectoryGrace - (now - since) + 0.1))
                    return
                }
            }
            self.emptySince = nil
            if self.directoryFailed {
                Log.info(
                    manifests.isEmpty
                        ? "the manifest directory \(directory) stayed empty: its manifests are gone"
                        : "the manifest directory \(directory) is readable again"
                )
                self.directoryFailed = false
            }
            self.directoryProblem = nil
            loaded = manifests
            let now = Date().timeIntervalSince1970
            if let until = self.unsettledUntil {
                if now < until {
                    self.directoryProblem =
                        "it was missing, unreadable or empty just now; manifests absent from it keep their jobs "
                        + "until \(Int(until - now) + 1)s have passed"
                    self.scheduleDirectoryRetry(after: .seconds(until - now + 0.1))
                } else {
                    self.unsettledUntil = nil
                }
            }
        }
        // Invalid manifests with no good version in this run stand in with their stored last good version.
        var standIns: [String: (manifest: LoadedManifest, storedAt: Double)] = [:]
        for manifest in loaded
        where manifest.specs == nil && self.manifests[manifest.id]?.hasGoodVersion != true
            && storedDigests[manifest.id] != nil
        {
            let version: ManifestVersion?
            do {
                version = try await self.store.manifestVersion(manifest.id)
            } catch {
                Log.error(
                    "cannot read the last good version of the manifest (its jobs are kept): \(error)",
                    ["manifest": "\(manifest.id)"]
                )
                version = nil
            }
            guard let version else { continue }
            let restored = await offThePool { LoadedManifest(restoring: version, current: manifest, loader: loader) }
            standIns[manifest.id] = (restored, version.storedAt)
        }
        // A manifest's problems are logged when they change (each error as `barge check` prints it), and its
        // return to valid once.
        for manifest in loaded where self.manifests[manifest.id]?.errors ?? [] != manifest.errors {
            let metadata: Logger.Metadata = ["manifest": "\(manifest.id)"]
            if manifest.errors.isEmpty {
                Log.info("the manifest is valid again", metadata)
            } else {
                let kept = standIns[manifest.id] != nil || self.manifests[manifest.id]?.hasGoodVersion == true
                for error in manifest.errors {
                    Log.error("\(error)\(kept ? " (its last good version runs)" : "")", metadata)
                }
            }
        }
        let diff = ManifestDiff(
            loaded: loaded,
            standIns: standIns,
            previous: self.manifests,
            jobs: self.table.views,
            jobIDs: { self.table.id(forDestination: $0) },
            digests: self.manifestDigests,
            excluding: self.destinationsBeingAdded,
            holdingAbsent: self.unsettledUntil != nil,
            now: Date().timeIntervalSince1970
        )
        self.manifests = diff.known
        self.manifestDigests = diff.digests
        self.watchSources(of: loaded)
        self.pending.manifestVersions += diff.versionsToStore
        self.pending.manifestRemovals += diff.versionsToDrop
        self.remove(diff.removed)
        for (id, spec) in diff.kept { self.update(id, to: spec) }
        // New jobs get their ids in destination order, here: they may start before the batch that inserts them is
        // written (it is written before any later change of theirs; a crash before then loses nothing the manifest
        // does not make again).
        for spec in diff.added {
            var record = JobRecord(id: self.nextJobID())
            record.reason = "new"
            self.pending.inserts.append(StoredJob(spec: spec, record: record))
            self.table.insert(JobView(spec: spec, record: record, isRunning: false))
        }
        if !self.specsFromStoreOnly.isEmpty {
            // Every manifest job's spec now comes from its manifest; a fresh set gives back the table's space.
            self.specsFromStoreOnly = self.specsFromStoreOnly.filter { self.table[$0]?.spec.isOneShot == true }
        }
    }

    /// Keeps a watch on each directory the uploads find their files in (a new or rewritten file is looked at at
    /// once), and one timer for the earliest settling file (it is looked at again when it may have settled).
    private func watchSources(of loaded: [LoadedManifest]) {
        guard !self.stopping else { return }
        let directories = Set(loaded.flatMap(\.sourceDirectories))
        for (directory, watcher) in self.sourceWatchers where !directories.contains(directory) {
            watcher.cancel()
            self.sourceWatchers.removeValue(forKey: directory)
        }
        for directory in directories where self.sourceWatchers[directory] == nil {
            do {
                self.sourceWatchers[directory] = try ManifestWatcher(directory: directory) { [weak self] in
                    self?.manifestsMayHaveChanged()
                }
            } catch {
                Log.error("cannot watch \(directory) for files to upload (they are found when it settles): \(error)")
            }
        }
        guard let next = loaded.compactMap(\.nextScan).min() else { return }
        if let current = self.sourceRescan, current.at <= next, current.at > Date().timeIntervalSince1970 { return }
        self.sourceRescan?.task.cancel()
        let delay = max(0, next - Date().timeIntervalSince1970) + 0.05
        let task = Task { [weak self] in
            try? await Task.sleep(for: .milliseconds(Int(delay * 1000)))
            guard !Task.isCancelled else { return }
            self?.manifestsMayHaveChanged()
        }
        self.sourceRescan = (next, task)
    }

    /// Reads the drop-in directory again after a while, until it can be read.
    private func scheduleDirectoryRetry(after delay: Duration = Supervisor.directoryRetryInterval) {
        guard self.directoryRetry == nil else { return }
        self.directoryRetry = Task { [weak self] in
            try? await Task.sleep(for: delay)
            guard !Task.isCancelled else { return }
            await self?.retryDirectory()
        }
    }

    private func retryDirectory() {
        self.directoryRetry = nil
        guard self.directoryProblem != nil else { return }
        self.manifestsMayHaveChanged()
    }

    private func update(_ id: Int64, to spec: JobSpec) {
        let fromStoreOnly = self.specsFromStoreOnly.remove(id) != nil
        guard var job = self.table[id], job.spec != spec else { return }
        let previous = job.spec
        let contentChanged =
            previous.urls != spec.urls || previous.sha256 != spec.sha256 || previous.size != spec.size
            || previous.upload?.stamp != spec.upload?.stamp
        // An edit of the entry (not the first load after a restart, when the stored spec lacks the policy) is the
        // person's answer to its error or cancellation: try again.
        let edited = contentChanged || !fromStoreOnly
        job.spec = spec
        // An upload's session is for the file and URL it was made for: a change makes a new upload.
        if contentChanged, spec.isUpload { self.pending.uploadSessions.append((id, nil)) }
        if contentChanged, !job.isRunning {
            job.record.state = .queued
            job.record.reason = "manifest changed"
            job.record.dueAt = nil
            job.record.attempts = 0
            job.record.firstFailureAt = nil
            self.pending.records.append(job.record)
        } else if edited, job.record.state == .error || job.record.state == .cancelled || job.record.state == .invalid {
            job.record.state = .queued
            job.record.reason = "manifest changed"
            job.record.attempts = 0
            self.pending.records.append(job.record)
        }
        self.table.replace(job)
        if !JobStore.storesSameSpec(previous, spec) { self.pending.specs.append((id, spec)) }
    }

    /// Removes jobs whose entries are gone, each with whether its mirrored file goes too.
    private func remove(_ removals: [(id: Int64, prunes: Bool)]) {
        let prunes = Dictionary(removals.map { ($0.id, $0.prunes) }, uniquingKeysWith: { $1 })
        for job in self.table.remove(Set(prunes.keys)) {
            let id = job.record.id
            let destination = job.spec.destination
            if job.spec.isUpload {
                // An upload's file is the user's own: never removed with its job (nor has it a partial).
                if let running = self.live.removeValue(forKey: id) {
                    self.byTransfer.removeValue(forKey: running.transfer)
                    self.engine.cancel(running.transfer)
                }
                self.pending.deletions.append(id)
                continue
            }
            if job.record.completedAt != nil, prunes[id] == true {
                Self.cleanup.async { PartialFiles.removeDestination(destination) }
            }
            if let running = self.live.removeValue(forKey: id) {
                self.byTransfer.removeValue(forKey: running.transfer)
                self.engine.cancel(running.transfer, discardPartial: true)
            } else {
                Self.cleanup.async { PartialFiles.remove(for: destination) }
            }
            self.pending.deletions.append(id)
        }
    }

    // MARK: Reconciling

    /// Runs the reconciler on the current jobs and facts and applies its plan.
    func reconcile() async {
        await self.updateNetworkViews()
        let clock = ContinuousClock()
        let began = clock.now
        defer {
            let elapsed = clock.now - began
            self.metrics.reconciled(in: elapsed)
            self.lastReconcileSeconds =
                Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        }
        let now = Date().timeIntervalSince1970
        var offset = tm()
        var seconds = time_t(now)
        localtime_r(&seconds, &offset)
        let facts = ReconcileFacts(
            now: LocalTime(epochSeconds: now, utcOffset: offset.tm_gmtoff),
            network: self.network,
            networkByHost: self.networkByHost,
            networkByJob: self.networkOfMovedTransfers(),
            limits: self.config.concurrency,
            bandwidth: BandwidthTimetable(self.config.bandwidth),
            backlog: ReconcileFacts.backlog(for: self.config.concurrency),
            paused: self.live.reduce(into: [:]) { paused, entry in
                if let since = entry.value.pausedSince { paused[entry.key] = since }
            },
            pauseGrace: Self.pauseGrace,
            linkGrace: Double(self.config.linkGrace.seconds)
        )
        let plan = Reconciler.plan(self.table.views, facts: facts)
        for id in plan.stop {
            guard let running = self.live[id], !running.stopping else { continue }
            self.live[id]!.stopping = true
            self.engine.cancel(running.transfer)
        }
        for id in plan.pause {
            guard let running = self.live[id], !running.stopping, running.pausedSince == nil else { continue }
            self.live[id]!.pausedSince = now
            self.engine.pause(running.transfer)
        }
        for id in plan.resume {
            guard let running = self.live[id], !running.stopping, running.pausedSince != nil else { continue }
            self.live[id]!.pausedSince = nil
            self.engine.resume(running.transfer)
        }
        for change in plan.changes {
            self.table.modify(change.id) { job in
                job.record.state = change.state
                job.record.reason = change.reason
                self.pending.records.append(job.record)
            }
        }
        if plan.globalRate != self.globalRate {
            self.globalRate = plan.globalRate
            self.engine.setGlobalRate(plan.globalRate)
        }
        let validators = await self.validatorsForStarting(plan.start)
        var wakeAt = plan.wakeAt
        await self.resolveOwners(of: plan.start)
        let refused = await self.checkUsersDestinations(plan.start)
        for id in plan.start {
            if let (status, reason) = refused[id] {
                guard Self.deniesCreation(status) else {
                    // The check could not tell (an I/O error, no memory, the directory missing for now): the job
                    // neither starts nor fails; it is checked again.
                    let retry = now + Self.startRetryDelay
                    wakeAt = min(wakeAt ?? retry, retry)
                    self.table.modify(id) { job in job.record.reason = reason + "; checking again" }
                    continue
                }
                self.table.modify(id) { job in
                    job.record.state = .invalid
                    job.record.reason = reason
                    self.pending.records.append(job.record)
                }
                continue
            }
            if validators == nil, self.table[id]?.record.hasValidators == true {
                // Fail closed: without its stored validators a mirrored copy would be fetched whole (or its
                // conditional refresh lost); it waits for the store instead.
                let retry = now + Self.startRetryDelay
                wakeAt = min(wakeAt ?? retry, retry)
                self.table.modify(id) { job in
                    job.record.reason = "cannot read its stored validators; trying again"
                }
                continue
            }
            self.begin(id, now: now, validators: validators?[id])
        }
        for (id, rate) in plan.rates {
            guard let running = self.live[id], running.rate != rate else { continue }
            self.live[id]!.rate = rate
            self.engine.setRate(running.transfer, rate)
        }
        self.schedule(wakeAt)
        self.handedAtLastPlan = self.live.count
        self.notifier?.send("STATUS=\(self.summary)")
    }

    /// The stored validators of the jobs about to start that have any, in one read of the store (on its own
    /// threads), after what waits to be written is written; nil when the store cannot be read.
    private func validatorsForStarting(_ ids: [Int64]) async -> [Int64: MirrorValidators]? {
        let stored = ids.filter { self.table[$0]?.record.hasValidators == true }
        guard !stored.isEmpty else { return [:] }
        await self.flush()
        do {
            return try await self.store.validators(of: stored)
        } catch {
            Log.error("cannot read the validators of \(stored.count) job(s) (they wait for the store): \(error)")
            return nil
        }
    }

    /// How long a job waits for what could not be read or checked before it starts (its stored validators, whether
    /// its user may create its file) before that is tried again.
    static let startRetryDelay: Double = 5

    /// Checks again, with each user's own ids (off the cooperative threads), that the one-shot jobs about to start
    /// for local users may still create their files: what they could do when they added a job may have changed
    /// since (a file another user made there since, a directory's mode). Returns the refused, with why.
    private func checkUsersDestinations(_ ids: [Int64]) async -> [Int64: (status: Int32, reason: String)] {
        let checks: [(id: Int64, destination: String, uid: UInt32, gid: UInt32)] = ids.compactMap { id in
            guard let job = self.table[id], job.spec.isOneShot, let owner = job.spec.policy.owner,
                let (uid, gid) = Self.numericOwner(owner)
            else { return nil }
            return (id, job.spec.destination, uid, gid)
        }
        guard !checks.isEmpty else { return [:] }
        return await offThePool {
            var refused: [Int64: (status: Int32, reason: String)] = [:]
            for check in checks {
                let status = CBargeLinux_may_create_as(
                    PathRules.directory(of: check.destination),
                    PathRules.fileName(of: check.destination),
                    check.uid,
                    check.gid
                )
                if status != 0 {
                    let error = String(cString: strerror(status))
                    refused[check.id] = (status, "uid \(check.uid) may no longer create \(check.destination): \(error)")
                }
            }
            return refused
        }
    }

    /// Whether a failed check that a user may create a file (its errno) says they may not, for good: not an error
    /// of the check itself, which is tried again.
    static func deniesCreation(_ status: Int32) -> Bool {
        [EACCES, EPERM, EEXIST, ELOOP, ENOTDIR, EISDIR, EROFS].contains(status)
    }

    /// Resolves, off the cooperative threads, the owners named by the jobs about to start that were not seen yet.
    private func resolveOwners(of ids: [Int64]) async {
        let unseen = Set(ids.compactMap { self.table[$0]?.spec.policy.owner }).filter { self.resolvedOwners[$0] == nil }
        guard !unseen.isEmpty else { return }
        let resolved = await offThePool { unseen.map { ($0, OwnerResolver.resolve($0)) } }
        for (owner, ids) in resolved { self.resolvedOwners[owner] = .some(ids) }
        if self.resolvedOwners.count > 4096 { self.resolvedOwners.removeAll() }  // a bound; resolved again
    }

    private func begin(_ id: Int64, now: Double, validators held: MirrorValidators?) {
        guard var job = self.table[id] else { return }
        var request = TransferRequest(spec: job.spec, config: self.config)
        request.resumeOffset = job.record.offset
        // A job that never started left no partial: no lookup for one (a burst of new jobs saves one per file). A
        // one-shot job (`barge get` through the agent) may pick up what a standalone `barge get` left.
        request.mayHaveEarlierPartial = job.record.lastStartedAt != nil || job.spec.isOneShot
        request.checkpointInterval = Self.checkpointInterval
        // Bound to its origin's path: a connection never moves to another uplink (a metered modem's route that
        // becomes preferred) behind the verdict it was started on.
        request.interface = self.interfaceByHost[job.spec.host]
        // Loopback has no scarce bandwidth and no one to yield to.
        if let interface = request.interface, self.isLoopback(interface) { request.yields = false }
        if let upload = job.spec.upload {
            request.upload = UploadRequest(
                uploadProtocol: upload.uploadProtocol,
                session: job.record.hasValidators ? held?.uploadSession.flatMap(UploadSession.init(encoded:)) : nil,
                chunkSize: upload.chunkSize,
                replyLimit: Int(upload.replyLimit)
            )
            // A kept file may be touched without changing: its content is compared with what was sent last.
            request.upload?.hashesContent = upload.after == .keep
            if upload.after == .keep, job.record.completedAt != nil, job.record.hasValidators {
                request.upload?.unchangedIfSHA256 = held?.contentSHA256
            }
            // Background uploads yield in the kernel instead: a low-priority congestion control (TCP-LP).
            let background = job.spec.policy.priority == .normal || job.spec.policy.priority == .low
            request.congestionControl = background ? self.config.yield.uploadCongestionControl : nil
            request.checkpointInterval = nil
        } else if job.record.hasValidators, let held {
            if job.record.state == .upToDate || held.etag != nil || held.lastModified != nil {
                request.currentValidators = Validators(etag: held.etag, lastModified: held.lastModified)
            }
        }
        if let owner = job.spec.policy.owner {
            guard let resolved = self.resolvedOwners[owner] ?? OwnerResolver.resolve(owner) else {
                // Never write as the agent's own user what the manifest meant for another.
                job.record.state = .invalid
                job.record.reason = "owner '\(owner)' does not exist on this machine"
                self.table.replace(job)
                self.pending.records.append(job.record)
                return
            }
            request.owner = resolved
        }
        let transfer = self.engine.start(request, reportingTo: self.reporter)
        self.live[id] = LiveTransfer(
            transfer: transfer,
            received: job.record.offset,
            startOffset: job.record.offset,
            interface: request.interface,
            yields: request.yields && request.interface != nil,
            direction: job.spec.isUpload ? .sending : .receiving
        )
        job.isRunning = true
        job.isAdmitted = false
        job.record.state = .queued
        job.record.reason = "waiting for a connection to \(job.spec.host)"
        job.record.lastStartedAt = now
        self.byTransfer[transfer] = id
        self.table.replace(job)
        self.pending.records.append(job.record)
    }

    /// Keeps exactly one timer, for the next due instant.
    private func schedule(_ instant: Double?) {
        guard instant != self.wakeAt else { return }
        self.timer?.cancel()
        self.wakeAt = instant
        guard let instant else { return }
        let delay = max(0, instant - Date().timeIntervalSince1970)
        let inbox = self.inbox
        self.timer = Task {
            try? await Task.sleep(for: .milliseconds(Int(delay * 1000) + 5))
            guard !Task.isCancelled else { return }
            inbox.post(.timer)
        }
    }

    // MARK: Transfer reports

    /// Applies the engine's reports to the jobs; returns whether a transfer ended (which frees a slot).
    @discardableResult
    private func apply(_ batch: [TransferReport]) -> Bool {
        var ended = false
        let now = Date().timeIntervalSince1970
        for report in batch {
            guard let id = self.byTransfer[report.id], var running = self.live[id], var job = self.table[id] else {
                continue
            }
            switch report.event {
            case .started:
                // The engine gave it a connection (it waited there since it was handed over).
                if !job.isAdmitted {
                    job.isAdmitted = true
                    running.admitted = true
                    // Not written: a restart makes every running state `queued` again.
                    if !running.stopping, running.pausedSince == nil {
                        job.record.state = .connecting
                        job.record.reason = "connecting to \(job.spec.host)"
                    }
                }
            case .response(let response):
                if !running.stopping, running.pausedSince == nil {
                    job.record.state = .transferring
                    job.record.reason = "\(job.spec.isUpload ? "uploading to" : "transferring from") \(job.spec.host)"
                }
                job.record.totalBytes = response.totalSize ?? job.record.totalBytes
                running.received = response.offset
                // Started over (a changed file, a server without ranges): an older round's checkpoint is void, and
                // the store must know. The rest of a response is the running state a restart resets anyway.
                if response.offset < job.record.offset {
                    job.record.offset = response.offset
                    self.pending.records.append(job.record)
                }
            case .progress(let progress):
                if progress.received > running.received {
                    self.countBytes(progress.received - running.received, of: running, host: job.spec.host)
                }
                running.received = progress.received
                running.bytesPerSecond = progress.bytesPerSecond
                if let total = progress.total { job.record.totalBytes = total }
            case .checkpoint(let offset):
                job.record.offset = offset
                self.pending.records.append(job.record)
            case .uploadSession(let session):
                // Kept for the next run: it resumes at the server's offset instead of sending everything again.
                self.pending.uploadSessions.append((id, session?.encoded))
                if session != nil { job.record.hasValidators = true }
            case .finished(let outcome):
                ended = true
                switch outcome {
                case .completed(let completed) where completed.size > running.received:
                    self.countBytes(completed.size - running.received, of: running, host: job.spec.host)
                case .failed(let failure): self.metrics.transferFailed(failure.kind)
                default: break
                }
                self.byTransfer.removeValue(forKey: report.id)
                job.isRunning = false
                job.isAdmitted = false
                // Progress: the transfer ended further on than it began (its last checkpoint is applied by now).
                let progressed = job.record.offset > running.startOffset
                self.finish(
                    &job,
                    outcome,
                    wasStopping: running.stopping,
                    progressed: progressed,
                    now: now,
                    interface: running.interface ?? self.interfaceByHost[job.spec.host]
                )
                self.pending.records.append(job.record)
            }
            if job.isRunning { self.live[id] = running } else { self.live.removeValue(forKey: id) }
            self.table.replace(job)
        }
        return ended
    }

    /// A job's log metadata: its id, manifest, origin host and the uplink its transfer went by.
    static func logMetadata(_ job: JobView, interface: String? = nil) -> Logger.Metadata {
        var metadata: Logger.Metadata = ["job": "\(job.record.id)", "host": "\(job.spec.host)"]
        if let manifest = job.spec.manifest { metadata["manifest"] = "\(manifest)" }
        if let interface { metadata["uplink"] = "\(interface)" }
        return metadata
    }

    private func finish(
        _ job: inout JobView,
        _ outcome: TransferOutcome,
        wasStopping: Bool,
        progressed: Bool,
        now: Double,
        interface: String?
    ) {
        let effects = JobOutcome(
            applying: outcome,
            to: &job,
            wasStopping: wasStopping,
            progressed: progressed,
            now: now,
            jitter: (Double.random(in: 0..<1), Double.random(in: 0..<1))
        )
        let id = job.record.id
        let metadata = Self.logMetadata(job, interface: interface)
        switch outcome {
        case .completed(let done):
            Log.info(
                "\(job.spec.isUpload ? "uploaded" : "downloaded") \(job.spec.destination)",
                metadata.merging(["bytes": "\(done.transferred)"]) { $1 }
            )
        case .notModified: Log.debug("not modified: \(job.spec.destination)", metadata)
        case .failed(let failure) where failure.kind == .transient:
            Log.warning("\(job.spec.destination): \(Log.withoutURLPaths(job.record.reason))", metadata)
        case .failed: Log.error("\(job.spec.destination): \(Log.withoutURLPaths(job.record.reason))", metadata)
        case .cancelled: break
        }
        // A transient failure soon after a network change or while there is no uplink, without a server's
        // Retry-After, most likely came from the network (a connection the old network carried): the next change
        // retries it at once, once.
        let window: Double = max(Double(self.config.linkGrace.seconds), 2)
        var byTheNetwork = false
        if case .failed(let failure) = outcome, failure.kind == .transient, failure.retryAfter == nil,
            job.record.state == .transientError, let changed = self.lastNetworkChangeAt
        {
            let sinceChange: Double = now - changed
            let offline = self.uplinks?.uplinks.isEmpty ?? false
            byTheNetwork = offline || sinceChange <= window
        }
        if byTheNetwork {
            self.failedWithTheNetwork.insert(id)
        } else {
            self.failedWithTheNetwork.remove(id)
        }
        if let uploaded = effects.uploaded, case .completed(let done) = outcome {
            self.pending.specs.append((id, job.spec))  // the stamp sent: a later change is sent again
            self.pending.uploadSessions.append((id, nil))
            if let reply = uploaded.reply, job.spec.upload?.replyLimit ?? 0 > 0 {
                self.pending.replies.append((id, reply))
            }
            if uploaded.after != .keep, let stamp = done.stamp {
                // Only now that the server confirmed the whole file.
                do {
                    let done = try UploadedFiles.finish(job.spec.destination, uploaded: stamp, after: uploaded.after)
                    job.record.reason += "; \(done)"
                } catch {
                    job.record.reason += "; cannot \(uploaded.after == .delete ? "delete" : "move") it: \(error)"
                    Log.error("\(job.spec.destination): \(Log.withoutURLPaths(job.record.reason))", metadata)
                }
            }
        }
        if let validators = effects.validators { self.pending.validators.append((id, validators)) }
        if let refreshed = effects.refreshedValidators {
            self.pending.refreshedValidators.append((id, refreshed.etag, refreshed.lastModified))
        }
        if let history = effects.history { self.pending.history.append((id, history)) }
        if let hook = effects.hook { self.runHooks(for: job, complete: hook.complete, reason: hook.reason) }
    }

    private func runHooks(for job: JobView, complete: Bool, reason: String) {
        var commands: [[String]] = []
        let manifest = job.spec.manifest.flatMap { self.manifests[$0] }
        let agentHook = complete ? self.config.hooks.onComplete : self.config.hooks.onError
        let manifestHook = complete ? manifest?.hooks.onComplete : manifest?.hooks.onError
        if let agentHook { commands.append(agentHook) }
        if let manifestHook { commands.append(manifestHook) }
        guard !commands.isEmpty else { return }
        let environment = [
            "BARGE_JOB": String(job.record.id),
            "BARGE_MANIFEST": job.spec.manifest ?? "",
            "BARGE_URL": job.spec.url,
            "BARGE_DEST": job.spec.destination,
            "BARGE_STATE": job.record.state.rawValue,
            "BARGE_REASON": reason,
            "BARGE_BYTES": String(job.record.totalBytes ?? 0),
        ]
        // A manifest's hooks run as the manifest's owner; a one-shot job added by a local user runs them as that user
        // (its URL and destination are theirs to choose); the agent's own jobs as the agent.
        let owner = manifest?.owner ?? job.spec.policy.owner.flatMap(Self.numericOwner) ?? (geteuid(), getegid())
        for command in commands { self.hooks.run(command, environment: environment, as: owner) }
    }

    /// Starts writing what changed since the last write, in one transaction, unless a write is under way (whose end
    /// starts the next): batches reach the store one at a time, in order, while the supervisor goes on.
    private func writeBehind() {
        guard self.storeWrite == nil, !self.pending.isEmpty else { return }
        let batch = self.pending
        self.pending = JobStore.Batch()
        self.storeWrite = Task {
            await self.write(batch)
            self.storeWrite = nil
            self.writeBehind()
        }
    }

    /// Writes everything that changed so far, and returns once it is stored.
    private func flush() async {
        self.writeBehind()
        while let current = self.storeWrite { await current.value }
    }

    /// The id for a new job: the next after the highest ever given (the store keeps that across restarts).
    private func nextJobID() -> Int64 {
        self.lastJobID += 1
        return self.lastJobID
    }

    /// Writes one batch, trying again a few times over some seconds (a busy or briefly full disk); a store that
    /// still refuses it stops the agent loudly (exit status 75) rather than run on with state it cannot keep.
    /// The store and the partials are crash-safe, so a restart resumes from the last write that held. A change the
    /// store refuses alone (a bug, not a disk) is logged with its job; the rest of the batch is stored.
    @discardableResult
    private func write(_ batch: JobStore.Batch) async -> [Int64] {
        var delay = Self.storeRetryDelay
        for attempt in 1...Self.storeAttempts {
            do {
                let applied = try await self.store.apply(batch)
                if attempt > 1 { Log.info("the state database took the changes on try \(attempt)") }
                for refused in applied.refused { Log.error("the state database refused a change: \(refused)") }
                return applied.ids
            } catch {
                guard attempt < Self.storeAttempts else {
                    Log.critical(
                        "cannot write the state database after \(attempt) tries; stopping (it resumes from its last good state when restarted): \(error)"
                    )
                    self.notifier?.send("STATUS=cannot write the state database: \(error)")
                    exit(75)  // EX_TEMPFAIL: systemd's Restart=on-failure brings it back
                }
                Log.error("cannot write the state database (try \(attempt) of \(Self.storeAttempts)): \(error)")
                try? await Task.sleep(for: delay)
                delay *= 4
            }
        }
        return []
    }

    /// How often a batch is tried before the agent stops, and the first wait between tries (then 4 times longer
    /// each: about 8.5 s in all).
    static let storeAttempts = 5
    static let storeRetryDelay: Duration = .milliseconds(100)

    // MARK: Commands

    /// What the control API's selectors name: job ids, or every job of a manifest.
    public enum Selection: Sendable {
        case jobs([Int64])
        case manifest(String)
    }

    /// The jobs `selection` names that `caller` may control, or the refusal: a job that does not exist, another
    /// user's job, or a whole manifest for a caller who does not administer the agent.
    private func select(_ selection: Selection, by caller: ControlCaller) -> (ids: [Int64], refusal: CommandReply?) {
        JobSelection.select(selection, by: caller, in: self.table)
    }

    /// Runs `body` on the jobs that `selection` names once `caller` may control them (the plan follows).
    private func command(
        _ selection: Selection,
        by caller: ControlCaller,
        done: String,
        _ body: (Int64) -> Void
    ) -> CommandReply {
        let (ids, refusal) = self.select(selection, by: caller)
        if let refusal { return refusal }
        for id in ids { body(id) }
        return CommandReply(ok: true, message: "\(done) \(ids.count) job(s)", jobs: ids)
    }

    /// Suspends jobs until resumed.
    public nonisolated func suspend(_ selection: Selection, by caller: ControlCaller = .agent) async -> CommandReply {
        await self.send(.suspend(selection), by: caller)
    }

    private func suspendJobs(_ selection: Selection, by caller: ControlCaller) -> CommandReply {
        self.command(selection, by: caller, done: "suspended") { id in
            self.table.modify(id) { job in
                job.record.userSuspended = true
                self.pending.records.append(job.record)
            }
        }
    }

    /// Resumes suspended jobs.
    public nonisolated func resume(_ selection: Selection, by caller: ControlCaller = .agent) async -> CommandReply {
        await self.send(.resume(selection), by: caller)
    }

    private func resumeJobs(_ selection: Selection, by caller: ControlCaller) -> CommandReply {
        self.command(selection, by: caller, done: "resumed") { id in
            self.table.modify(id) { job in
                job.record.userSuspended = false
                self.pending.records.append(job.record)
            }
        }
    }

    /// Cancels jobs: the transfer stops and its partial is removed; a mirrored job stays cancelled until retried
    /// or its manifest entry changes.
    public nonisolated func cancel(_ selection: Selection, by caller: ControlCaller = .agent) async -> CommandReply {
        await self.send(.cancel(selection), by: caller)
    }

    private func cancelJobs(_ selection: Selection, by caller: ControlCaller) -> CommandReply {
        self.command(selection, by: caller, done: "cancelled") { id in
            let isUpload = self.table[id]?.spec.isUpload == true  // an upload has no partial: its file is the user's
            if let running = self.live[id] {
                self.live[id]!.stopping = true
                self.engine.cancel(running.transfer, discardPartial: !isUpload)
            }
            self.table.modify(id) { job in
                if !job.isRunning, !isUpload {
                    let destination = job.spec.destination
                    Self.cleanup.async { PartialFiles.remove(for: destination) }
                }
                job.record.state = .cancelled
                job.record.reason = "cancelled by user"
                job.record.offset = 0
                job.record.dueAt = nil
                self.pending.records.append(job.record)
            }
        }
    }

    /// Makes jobs due now: failed, cancelled, waiting for a retry or up to date alike.
    public nonisolated func retry(_ selection: Selection, by caller: ControlCaller = .agent) async -> CommandReply {
        await self.send(.retry(selection), by: caller)
    }

    private func retryJobs(_ selection: Selection, by caller: ControlCaller) -> CommandReply {
        if !caller.isAdministrator {
            // A retry makes finished jobs unfinished again: it stays within the user's number, as an add does.
            let (ids, refusal) = self.select(selection, by: caller)
            if let refusal { return refusal }
            let reopened = ids.count { self.table[$0]?.record.state.isTerminal == true }
            let theirs = self.unfinishedJobs(of: caller)
            if reopened > 0, theirs + reopened > Self.jobsPerUser {
                return .refused(
                    .forbidden,
                    "uid \(caller.uid) has \(theirs) unfinished jobs; retrying \(reopened) more would pass "
                        + "\(Self.jobsPerUser)"
                )
            }
        }
        return self.command(selection, by: caller, done: "retrying") { id in
            guard self.live[id] == nil else { return }
            self.table.modify(id) { job in
                job.record.state = .queued
                job.record.reason = "retry requested"
                job.record.attempts = 0
                job.record.firstFailureAt = nil
                job.record.dueAt = nil
                self.pending.records.append(job.record)
            }
        }
    }

    /// How many one-shot jobs a local user added that are not finished.
    private func unfinishedJobs(of caller: ControlCaller) -> Int {
        self.table.views.count { $0.spec.isOneShot && caller.mayControl($0) && !$0.record.state.isTerminal }
    }

    /// Adds a one-shot download (`barge get` through the agent). Its destination passes the rules of a manifest
    /// entry (an allowed root, never inside the agent's state or manifest directory); a caller other than root and
    /// the agent's user gets a file of their own, and only where they may create one.
    public nonisolated func add(_ request: NewJobRequest, by caller: ControlCaller = .agent) async -> CommandReply {
        await self.send(.add(request), by: caller)
    }

    /// Sets (or with both `auto`, clears) the verdict on an interface by hand (`barge net set`); administrators
    /// only.
    public nonisolated func setUplink(
        _ interface: String,
        _ change: UplinkOverrideChange,
        by caller: ControlCaller = .agent
    ) async -> CommandReply {
        await self.send(.setUplink(interface, change), by: caller)
    }

    private func addJob(_ request: NewJobRequest, by caller: ControlCaller) async -> CommandReply {
        let destination = request.destination
        guard case .success(let normal) = PathRules.normalize(destination), normal == destination else {
            return .refused(.invalidRequest, "the destination must be an absolute path without . or ..")
        }
        if let problem = self.config.fileProblem(destination) {
            return .refused(.invalidRequest, problem.message(path: destination))
        }
        // Another local user's job reads with the agent's identity: only from the network (never file://, nor a
        // share or server the agent's own keys open), and by the rules of a manifest entry's URL.
        let schemes =
            caller.isAdministrator && caller.writesAsAgent
            ? self.config.allowedSchemes : self.config.allowedSchemes.filter { $0 == "http" || $0 == "https" }
        if let problem = URLRules.problem(with: request.url, allowedSchemes: schemes) {
            return .refused(.invalidRequest, problem)
        }
        if !caller.isAdministrator {
            let theirs = self.unfinishedJobs(of: caller)
            guard theirs < Self.jobsPerUser else {
                return .refused(
                    .forbidden,
                    "uid \(caller.uid) already has \(theirs) unfinished jobs (at most \(Self.jobsPerUser))"
                )
            }
        }
        if !caller.writesAsAgent {
            guard geteuid() == 0 else {
                return .refused(
                    .forbidden,
                    "this agent does not run as root and cannot write files for uid \(caller.uid)"
                )
            }
            let directory = PathRules.directory(of: destination)
            let name = PathRules.fileName(of: destination)
            let (uid, gid) = (caller.uid, caller.gid)
            let status = await offThePool { CBargeLinux_may_create_as(directory, name, uid, gid) }
            guard status == 0 else {
                return .refused(
                    .forbidden,
                    "uid \(caller.uid) may not create \(destination): \(String(cString: strerror(status)))"
                )
            }
        }
        if let existing = self.table.id(forDestination: destination) {
            return .refused(.conflict, "\(destination) already belongs to job \(existing)", jobs: [existing])
        }
        guard self.destinationsBeingAdded.insert(destination).inserted else {
            return .refused(.conflict, "\(destination) is being added by another request")
        }
        defer { self.destinationsBeingAdded.remove(destination) }
        var policy = TransferPolicy()
        policy.priority = request.priority.flatMap(Priority.init(rawValue:)) ?? .foreground
        policy.network = .any
        policy.owner = caller.fileOwner
        if let rate = request.maxRate { policy.maxRate = .limited(ByteRate(bytesPerSecond: rate)) }
        let spec = JobSpec(
            manifest: nil,
            urls: [request.url],
            destination: destination,
            sha256: request.sha256,
            policy: policy
        )
        var batch = JobStore.Batch()
        var record = JobRecord(id: self.nextJobID())
        record.reason = "new"
        batch.inserts = [StoredJob(spec: spec, record: record)]
        await self.flush()
        guard let id = await self.write(batch).first else { return .refused(.failed, "cannot store the job") }
        self.table.insert(JobView(spec: spec, record: record, isRunning: false))
        self.hostsNeedViews = true
        return CommandReply(ok: true, message: "job \(id) added", jobs: [id])
    }

    // MARK: Status

    /// Everything `barge status` shows; `job` or `manifest` narrows the jobs (and manifests) reported.
    public func status(job: Int64? = nil, manifest: String? = nil, for viewer: ControlCaller = .agent) -> StatusReport {
        self.statusSnapshot(job: job, manifest: manifest, for: viewer).report
    }

    /// The status at this instant, to be turned into JSON off the actor a page at a time (the job array is
    /// shared with the table until the table changes).
    ///
    /// A `viewer` who does not administer the agent sees other users' and the manifests' URLs without their user
    /// information, query and fragment (where tokens hide).
    public func statusSnapshot(
        job: Int64? = nil,
        manifest: String? = nil,
        for viewer: ControlCaller = .agent
    ) -> StatusSnapshot {
        let now = Date().timeIntervalSince1970
        var perManifest: [String: Int] = [:]
        for job in self.table.views { if let manifest = job.spec.manifest { perManifest[manifest, default: 0] += 1 } }
        let manifests = self.manifests.sorted { $0.value.path < $1.value.path }
            .filter { id, _ in manifest == nil || manifest == id }
            .filter { id, _ in job == nil || self.table[job!]?.spec.manifest == id }
            .map { id, known in
                ManifestStatus(
                    id: id,
                    path: known.path,
                    state: known.errors.isEmpty ? "valid" : "invalid",
                    errors: known.errors,
                    runningLastGoodVersion: !known.errors.isEmpty && known.hasGoodVersion,
                    lastGoodVersionStoredAt: known.errors.isEmpty ? nil : known.goodVersionStoredAt,
                    jobs: perManifest[id] ?? 0
                )
            }
        let selected: [JobView]
        if let job {
            selected = self.table[job].map { [$0] } ?? []
        } else if let manifest {
            selected = self.table.views.filter { $0.spec.manifest == manifest }
        } else {
            selected = self.table.views
        }
        return StatusSnapshot(
            agent: self.agentStatus(now: now),
            manifests: manifests,
            views: selected,
            live: self.live,
            limits: self.limitsInForce(now: now),
            now: now,
            viewer: viewer
        )
    }

    /// Each running transfer's tightest cap and why, with the yield note of those held back by other traffic.
    private func limitsInForce(now: Double) -> [Int64: RateNote] {
        lazy var span = self.timetableSpan(now: now)  // read only when a timetable's cap is shown
        var yieldingPerLink: [String: Int] = [:]  // by direction and link
        for running in self.live.values where running.yields && running.admitted && running.pausedSince == nil {
            if let link = running.interface { yieldingPerLink["\(running.direction) \(link)", default: 0] += 1 }
        }
        var notes: [Int64: RateNote] = [:]
        for (id, running) in self.live {
            var caps: [(rate: UInt64, why: String)] = []
            if let cap = running.rate?.rate, let job = self.table[id] {
                let own = job.spec.policy.maxRate == running.rate
                caps.append((cap.bytesPerSecond, own ? "max-rate" : span.map { "timetable \($0)" } ?? "timetable"))
            }
            var yieldNote: String?
            let yielding = self.yielding[running.direction]!
            if running.yields, running.admitted, running.pausedSince == nil, let link = running.interface,
                let note = yielding.note(for: link)
            {
                yieldNote = note
                if let budget = yielding.controllers[link]?.budget.rate {
                    let sharing = max(1, yieldingPerLink["\(running.direction) \(link)"] ?? 1)
                    caps.append(
                        (budget.bytesPerSecond / UInt64(sharing), note + (sharing > 1 ? "; shared by \(sharing)" : ""))
                    )
                }
            }
            guard let tightest = caps.min(by: { $0.rate < $1.rate }) else { continue }
            let rate = ByteCount(max(1, tightest.rate)).humanReadable + "/s"
            notes[id] = RateNote(limit: "\(rate) (\(tightest.why))", yielding: yieldNote)
        }
        return notes
    }

    /// The bandwidth timetable's row in force as `08:00–18:00` (its start to the next row's); nil without one.
    private func timetableSpan(now: Double) -> String? {
        var offset = tm()
        var seconds = time_t(now)
        localtime_r(&seconds, &offset)
        let local = LocalTime(epochSeconds: now, utcOffset: offset.tm_gmtoff)
        let timetable = BandwidthTimetable(self.config.bandwidth)
        guard let rule = timetable.rule(at: local) else { return nil }
        func clock(_ minutes: Int) -> String {
            let hours = String(minutes / 60 % 24)
            let rest = String(minutes % 60)
            return String(repeating: "0", count: 2 - hours.count) + hours + ":"
                + String(repeating: "0", count: 2 - rest.count) + rest
        }
        guard let next = timetable.nextChange(after: local) else { return "from \(clock(rule.at))" }
        let nextMinutes = Int((next + Double(offset.tm_gmtoff)).truncatingRemainder(dividingBy: 86_400) / 60)
        // A row that is the next one too (the only one) holds on: "from 08:00".
        return nextMinutes == rule.at ? "from \(clock(rule.at))" : "\(clock(rule.at))–\(clock(nextMinutes))"
    }

    /// An upload job's last reply from its server, as stored (after what waits to be written); nil: none kept.
    public func reply(of id: Int64) async -> [UInt8]? {
        guard self.table[id]?.spec.isUpload == true else { return nil }
        await self.flush()
        return try? await self.store.reply(of: id)
    }

    /// Counts `bytes` of a transfer in the metrics, by its direction, its interface (the one it is bound to, else its
    /// origin's path; `none` when not known) and that uplink's cost class (`none` for an interface that is not an
    /// uplink, such as `lo`).
    private func countBytes(_ bytes: UInt64, of running: LiveTransfer, host: String) {
        let interface = running.interface ?? self.interfaceByHost[host]
        let verdict = interface.flatMap { name in self.uplinks?.uplinks.first { $0.facts.name == name }?.verdict }
        let cost = verdict.map { $0.roaming ? "roaming" : $0.cost.rawValue } ?? "none"
        self.metrics.transferred(
            bytes,
            running.direction == .sending ? .sent : .received,
            uplink: interface ?? "none",
            cost: cost
        )
    }

    /// The metrics in Prometheus's text format (`GET /metrics`).
    public func metricsExposition() -> [UInt8] {
        if let monitor = self.monitor { self.metrics.netlinkEventsRead(monitor.eventsRead) }
        var byState: [JobState: Int] = [:]
        for view in self.table.views { byState[view.record.state, default: 0] += 1 }
        return self.metrics.exposition(jobsByState: byState)
    }

    /// The agent's own state (the header of `barge status`), without the jobs.
    public func agentStatus(now: Double? = nil) -> AgentStatus {
        let now = now ?? Date().timeIntervalSince1970
        return AgentStatus(
            pid: getpid(),
            startedAt: self.startedAt,
            now: now,
            configPath: self.configPath,
            manifestDirectory: self.config.manifestDirectory,
            network: self.networkSummary,
            maxTransfers: self.config.concurrency.total,
            maxPerHost: self.config.concurrency.perHost,
            globalRate: self.globalRate.description
                + (self.globalRate == .off ? "" : self.timetableSpan(now: now).map { " (timetable \($0))" } ?? ""),
            running: self.live.values.count { $0.admitted },
            nextWake: self.wakeAt,
            lastReconcileSeconds: self.lastReconcileSeconds,
            manifestDirectoryProblem: self.directoryProblem
        )
    }

    fileprivate static func jobStatus(
        _ job: JobView,
        live: [Int64: LiveTransfer],
        limits: [Int64: RateNote],
        now: Double,
        viewer: ControlCaller
    ) -> JobStatus {
        let running = job.isRunning ? live[job.record.id] : nil
        let mirrored =
            job.record.state == .upToDate || job.record.state == .complete
            || (job.record.completedAt != nil && job.record.offset == 0)
        let bytes = running?.received ?? (mirrored ? job.record.totalBytes ?? 0 : job.record.offset)
        let total = job.record.totalBytes ?? job.spec.size
        let rate = running.map { $0.bytesPerSecond.isFinite ? $0.bytesPerSecond : 0 }
        let eta: Double? =
            (rate ?? 0) > 0 && total != nil && total! > bytes ? Double(total! - bytes) / rate! : nil
        let mayControl = viewer.mayControl(job)
        let note = running == nil ? nil : limits[job.record.id]
        let reason = job.record.statusReason(now: now) + (note?.yielding.map { ", \($0)" } ?? "")
        return JobStatus(
            id: job.record.id,
            manifest: job.spec.manifest,
            destination: job.spec.destination,
            url: mayControl ? job.spec.url : Self.redacted(job.spec.url),
            state: job.record.state.rawValue,
            reason: mayControl ? reason : Self.redactingURLs(in: reason),
            priority: job.spec.policy.priority.rawValue,
            bytes: bytes,
            total: total,
            bytesPerSecond: rate,
            eta: eta,
            dueAt: job.record.dueAt,
            completedAt: job.record.completedAt,
            attempts: job.record.attempts,
            userSuspended: job.record.userSuspended,
            transfer: running.map { $0.pausedSince != nil ? "paused" : $0.admitted ? "connected" : "waiting" },
            limit: note?.limit,
            direction: job.spec.isUpload ? "upload" : "download"
        )
    }

    /// The uplinks in a line for `barge status`: `wired0 unmetered (ethernet: ARPHRD_ETHER), wwan0 metered (rule 1
    /// 'wwan*')`; without a monitor, the general view.
    private var networkSummary: String {
        guard self.monitor != nil, let uplinks = self.uplinks else { return self.network.description }
        guard !uplinks.uplinks.isEmpty else { return "no uplink" }
        return uplinks.uplinks.map { uplink in
            let verdict = uplink.verdict
            let roaming = verdict.roaming ? ", roaming (\(verdict.roamingSource))" : ""
            return "\(uplink.facts.name) \(verdict.cost.rawValue) (\(verdict.costSource))\(roaming)"
        }.joined(separator: ", ")
    }

    /// One line for systemd's status: "3 transferring, 120 up to date, 1 error".
    private var summary: String {
        var counts: [JobState: Int] = [:]
        for job in self.table.views { counts[job.record.state, default: 0] += 1 }
        let parts = JobState.allCases.compactMap { state in counts[state].map { "\($0) \(state.rawValue)" } }
        return parts.isEmpty ? "no jobs" : parts.joined(separator: ", ")
    }

    /// A URL without user information, query and fragment: `https://host/path`.
    static func redacted(_ url: String) -> String {
        guard let start = URLRules.authorityStart(of: url) else { return url }
        let rest = url[start...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let host = authority.lastIndex(of: "@").map { authority[authority.index(after: $0)...] } ?? authority
        let path = rest[authorityEnd...].prefix { $0 != "?" && $0 != "#" }
        return String(url[..<start]) + String(host) + String(path)
    }

    /// `text` with every URL in it ``redacted(_:)``: a reason names the URL that failed, or where a redirect led.
    static func redactingURLs(in text: String) -> String {
        guard text.contains("://") else { return text }
        // A URL runs to the next white space whatever it holds (a quote is legal in a path, user or query): taking
        // too much hides more of the sentence, taking too little would show a secret.
        return text.replacing(/[A-Za-z][A-Za-z0-9+.\-]*:\/\/\S+/) { match in
            // Punctuation or a quote that ends the sentence is not part of the URL.
            let url = match.output
            let end = url.lastIndex { !".,;:)'\"".contains($0) }.map(url.index(after:)) ?? url.startIndex
            return Self.redacted(String(url[..<end])) + url[end...]
        }
    }

    /// A one-shot job's owner as written by the control socket (`uid:gid`), without a user database look-up.
    static func numericOwner(_ owner: FileOwner) -> (uid: UInt32, gid: UInt32)? {
        guard let uid = UInt32(owner.user) else { return nil }
        return (uid, owner.group.flatMap(UInt32.init) ?? uid)
    }

}

/// The agent's status at one instant: the header and manifests, and the selected jobs, each turned into a
/// ``JobStatus`` only when asked for (a full status of 100,000s of jobs is written a page at a time).
public struct StatusSnapshot: Sendable {
    /// The agent itself.
    public let agent: AgentStatus
    /// The manifests reported.
    public let manifests: [ManifestStatus]
    fileprivate let views: [JobView]
    fileprivate let live: [Int64: LiveTransfer]
    fileprivate let limits: [Int64: RateNote]
    fileprivate let now: Double
    fileprivate let viewer: ControlCaller

    /// How many jobs.
    public var count: Int { self.views.count }

    /// The status of the jobs in `range`.
    public func jobs(_ range: Range<Int>) -> [JobStatus] {
        self.views[range].map {
            Supervisor.jobStatus($0, live: self.live, limits: self.limits, now: self.now, viewer: self.viewer)
        }
    }

    /// The whole report.
    public var report: StatusReport {
        StatusReport(agent: self.agent, manifests: self.manifests, jobs: self.jobs(0..<self.count))
    }
}
