public import BargeCore
import BargeLoader
import BargeStore
import BargeTransfer
import CBargeLinux
import Foundation
import Glibc

/// A job while the agent runs: what it transfers, its persistent record, and its live transfer.
struct AgentJob {
    var spec: JobSpec
    var record: JobRecord
    /// The engine's transfer while one runs (kept until its `finished` event, even after a stop was asked).
    var transfer: TransferID?
    /// A stop was asked; the state the plan gave it stands when the transfer ends.
    var stopping = false
    var received: UInt64 = 0
    var bytesPerSecond: Double = 0
    var rate: RateLimit?
    /// The spec came from a manifest in this run (not only from the store, which keeps part of the policy).
    var specFromManifest = false
}

/// A manifest file as the agent knows it: its last good version runs while a bad edit is shown as invalid.
struct KnownManifest {
    var path: String
    /// Whether a valid version was loaded (the current one, or an earlier one whose jobs keep running).
    var hasGoodVersion: Bool
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
    let store: JobStore
    let engine: TransferEngine
    private let reporter: TransferReporter
    private let reports: AsyncStream<[TransferReport]>
    private var jobs: [Int64: AgentJob] = [:]
    private var byDestination: [String: Int64] = [:]
    private var byTransfer: [TransferID: Int64] = [:]
    private var manifests: [String: KnownManifest] = [:]
    private var pending = JobStore.Batch()
    private var timer: Task<Void, Never>?
    private var wakeAt: Double?
    private var globalRate: RateLimit = .off
    private var lastReconcileSeconds: Double?
    private let startedAt = Date().timeIntervalSince1970
    private let hooks: HookRunner
    /// Told of state changes (systemd's STATUS=).
    private let notifier: SystemdNotifier?
    var network: NetworkView = .unmonitored
    /// Bytes between checkpoints: the most a killed agent fetches again.
    public static let checkpointInterval: UInt64 = 8 << 20

    /// Opens the store and starts the engine; call ``start()`` next.
    public init(config: AgentConfig, configPath: String?, notifier: SystemdNotifier? = nil) throws {
        self.config = config
        self.configPath = configPath
        self.store = try JobStore(directory: config.stateDirectory)
        self.engine = TransferEngine(limits: config.concurrency)
        (self.reports, self.reporter) = self.engine.makeReportStream()
        self.hooks = HookRunner()
        self.notifier = notifier
    }

    /// Loads the stored jobs and the manifests, starts what is due, and consumes the engine's reports until
    /// ``stop()``.
    public func start() async throws {
        let stored = try await self.store.jobs()
        self.jobs.reserveCapacity(stored.count)
        self.byDestination.reserveCapacity(stored.count)
        for stored in stored {
            var record = stored.record
            if record.state.isRunning {
                // The agent stopped (or was killed) while it ran: it resumes from its last checkpoint.
                record.state = .queued
                record.reason = "resuming after a restart"
            }
            self.jobs[record.id] = AgentJob(spec: stored.spec, record: record)
            self.byDestination[stored.spec.destination] = record.id
        }
        await self.reloadManifests()
        let reports = self.reports
        Task { [weak self] in
            for await batch in reports { await self?.handle(batch) }
        }
    }

    /// Stops every transfer (each checkpoints its partial), writes the last state, and ends the engine.
    public func stop() async {
        self.timer?.cancel()
        self.notifier?.send("STOPPING=1")
        for job in self.jobs.values where job.transfer != nil { self.engine.cancel(job.transfer!) }
        await self.engine.shutdown()
        // The engine has delivered its last reports (checkpoints, cancellations) to the stream; take them now.
        self.reporter.finish()
        for await batch in self.reports { self.apply(batch) }
        for id in self.jobs.keys where self.jobs[id]!.record.state.isRunning {
            self.jobs[id]!.record.state = .queued
            self.jobs[id]!.record.reason = "agent stopped"
            self.pending.records.append(self.jobs[id]!.record)
        }
        await self.flush()
        self.hooks.terminateAll()
    }

    // MARK: Manifests

    /// Reads the drop-in directory again and brings the jobs in line: new entries become jobs, changed ones are
    /// updated, removed ones are cancelled (their partials removed, finished files left in place). A manifest
    /// that turned invalid keeps its last good version.
    public func reloadManifests() async {
        let loader = ManifestLoader(config: self.config)
        let directory = self.config.manifestDirectory
        let parsed = await Task.detached { () -> [ParsedManifest] in
            (try? loader.load(paths: [directory])) ?? []
        }.value
        var next: [String: KnownManifest] = [:]
        var desired: [String: JobSpec] = [:]
        for manifest in parsed {
            var info = stat()
            let owner = stat(manifest.path, &info) == 0 ? (info.st_uid, info.st_gid) : (geteuid(), getegid())
            let errors = manifest.diagnostics.filter { $0.severity == .error }.map(\.description)
            let previous = self.manifests[manifest.id]
            if let good = manifest.manifest {
                for entry in good.downloads {
                    desired[entry.destination] = JobSpec(manifest: manifest.id, entry: entry)
                }
            } else if previous?.hasGoodVersion == true {
                // Invalid now: its jobs are its last good version, and they keep running.
                for job in self.jobs.values where job.spec.manifest == manifest.id {
                    desired[job.spec.destination] = job.spec
                }
            }
            next[manifest.id] = KnownManifest(
                path: manifest.path,
                hasGoodVersion: manifest.manifest != nil || previous?.hasGoodVersion == true,
                hooks: manifest.manifest?.hooks ?? previous?.hooks ?? Hooks(),
                prune: manifest.manifest?.prune ?? previous?.prune ?? false,
                errors: errors,
                owner: owner
            )
        }
        let before = self.manifests
        self.manifests = next

        var removed: [Int64] = []
        for (id, job) in self.jobs where job.spec.manifest != nil && desired[job.spec.destination] == nil {
            removed.append(id)
        }
        for id in removed {
            // A manifest that said `prune` (its current version, or its last one when it was deleted) takes the
            // mirrored files of removed entries with it.
            let manifest = self.jobs[id]?.spec.manifest
            let prune = manifest.flatMap { next[$0]?.prune ?? before[$0]?.prune } ?? false
            self.remove(id, pruneFile: prune)
        }
        var inserts: [StoredJob] = []
        for (destination, spec) in desired.sorted(by: { $0.key < $1.key }) {
            if let id = self.byDestination[destination] {
                self.update(id, to: spec)
            } else {
                var record = JobRecord(id: 0)
                record.reason = "new"
                inserts.append(StoredJob(spec: spec, record: record))
            }
        }
        if !inserts.isEmpty {
            var batch = JobStore.Batch()
            batch.inserts = inserts
            await self.flush()
            do {
                let ids = try await self.store.apply(batch)
                for (id, stored) in zip(ids, inserts) {
                    var record = stored.record
                    record.id = id
                    self.jobs[id] = AgentJob(spec: stored.spec, record: record, specFromManifest: true)
                    self.byDestination[stored.spec.destination] = id
                }
            } catch {
                Log.error("cannot store new jobs: \(error)")
            }
        }
        await self.reconcile()
        // Parsing left freed memory in every allocator arena: give it back to the system.
        _ = CBargeLinux_malloc_trim()
    }

    private func update(_ id: Int64, to spec: JobSpec) {
        guard var job = self.jobs[id], job.spec != spec else { return }
        let previous = job.spec
        let contentChanged = previous.urls != spec.urls || previous.sha256 != spec.sha256 || previous.size != spec.size
        // An edit of the entry (not the first load after a restart, when the stored spec lacks the policy) is the
        // person's answer to its error or cancellation: try again.
        let edited = contentChanged || job.specFromManifest
        // Keep the strings already held (loaded from the store, compactly) rather than the parser's, which sit among
        // the parse's freed memory and would keep it resident.
        var merged = spec
        if merged.urls == previous.urls { merged.urls = previous.urls }
        if merged.destination == previous.destination { merged.destination = previous.destination }
        if merged.manifest == previous.manifest { merged.manifest = previous.manifest }
        if merged.sha256 == previous.sha256 { merged.sha256 = previous.sha256 }
        job.spec = merged
        job.specFromManifest = true
        if contentChanged, !job.record.state.isRunning {
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
        self.jobs[id] = job
        if !JobStore.storesSameSpec(previous, spec) { self.pending.specs.append((id, spec)) }
    }

    private func remove(_ id: Int64, pruneFile: Bool = false) {
        guard let job = self.jobs.removeValue(forKey: id) else { return }
        if pruneFile, job.record.completedAt != nil {
            PartialFiles.removeDestination(job.spec.destination)
        }
        self.byDestination.removeValue(forKey: job.spec.destination)
        if let transfer = job.transfer {
            self.byTransfer.removeValue(forKey: transfer)
            self.engine.cancel(transfer, discardPartial: true)
        } else {
            PartialFiles.remove(for: job.spec.destination)
        }
        self.pending.deletions.append(id)
    }

    // MARK: Reconciling

    /// Runs the reconciler on the current jobs and facts and applies its plan.
    func reconcile() async {
        let clock = ContinuousClock()
        let began = clock.now
        defer {
            let elapsed = clock.now - began
            self.lastReconcileSeconds =
                Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        }
        let now = Date().timeIntervalSince1970
        let ordered = self.jobs.values.sorted { $0.record.id < $1.record.id }
        let views = ordered.map { JobView(spec: $0.spec, record: $0.record, isRunning: $0.transfer != nil) }
        var offset = tm()
        var seconds = time_t(now)
        localtime_r(&seconds, &offset)
        let facts = ReconcileFacts(
            now: LocalTime(epochSeconds: now, utcOffset: offset.tm_gmtoff),
            network: self.network,
            limits: self.config.concurrency,
            bandwidth: BandwidthTimetable(self.config.bandwidth)
        )
        let plan = Reconciler.plan(views, facts: facts)
        for id in plan.stop {
            guard let transfer = self.jobs[id]?.transfer, self.jobs[id]?.stopping == false else { continue }
            self.jobs[id]!.stopping = true
            self.engine.cancel(transfer)
        }
        for change in plan.changes {
            guard var job = self.jobs[change.id] else { continue }
            job.record.state = change.state
            job.record.reason = change.reason
            self.jobs[change.id] = job
            self.pending.records.append(job.record)
        }
        if plan.globalRate != self.globalRate {
            self.globalRate = plan.globalRate
            self.engine.setGlobalRate(plan.globalRate)
        }
        for id in plan.start { self.begin(id, now: now) }
        for (id, rate) in plan.rates {
            guard let job = self.jobs[id], let transfer = job.transfer, job.rate != rate else { continue }
            self.jobs[id]!.rate = rate
            self.engine.setRate(transfer, rate)
        }
        self.schedule(plan.wakeAt)
        await self.flush()
        self.notifier?.send("STATUS=\(self.summary)")
    }

    private func begin(_ id: Int64, now: Double) {
        guard var job = self.jobs[id] else { return }
        var request = TransferRequest(spec: job.spec, config: self.config)
        request.resumeOffset = job.record.offset
        request.checkpointInterval = Self.checkpointInterval
        if job.record.state == .upToDate || job.record.etag != nil || job.record.lastModified != nil,
            job.record.contentSHA256 != nil
        {
            request.currentValidators = Validators(etag: job.record.etag, lastModified: job.record.lastModified)
        }
        if let owner = job.spec.policy.owner {
            guard let resolved = OwnerResolver.resolve(owner) else {
                // Never write as the agent's own user what the manifest meant for another.
                job.record.state = .invalid
                job.record.reason = "owner '\(owner)' does not exist on this machine"
                self.jobs[id] = job
                self.pending.records.append(job.record)
                return
            }
            request.owner = resolved
        }
        if let rate = job.rate { request.maxRate = rate }
        let transfer = self.engine.start(request, reportingTo: self.reporter)
        job.transfer = transfer
        job.stopping = false
        job.received = job.record.offset
        job.record.state = .connecting
        job.record.reason = "connecting to \(Self.host(of: job.spec.urls.first ?? ""))"
        job.record.lastStartedAt = now
        self.byTransfer[transfer] = id
        self.jobs[id] = job
        self.pending.records.append(job.record)
    }

    /// Keeps exactly one timer, for the next due instant.
    private func schedule(_ instant: Double?) {
        guard instant != self.wakeAt else { return }
        self.timer?.cancel()
        self.wakeAt = instant
        guard let instant else { return }
        let delay = max(0, instant - Date().timeIntervalSince1970)
        self.timer = Task { [weak self] in
            try? await Task.sleep(for: .milliseconds(Int(delay * 1000) + 5))
            guard !Task.isCancelled else { return }
            await self?.timerFired()
        }
    }

    private func timerFired() async {
        self.wakeAt = nil
        await self.reconcile()
    }

    // MARK: Transfer reports

    private func handle(_ batch: [TransferReport]) async {
        if self.apply(batch) { await self.reconcile() } else { await self.flush() }
    }

    /// Applies the engine's reports to the jobs; returns whether a transfer ended (which frees a slot).
    @discardableResult
    private func apply(_ batch: [TransferReport]) -> Bool {
        var ended = false
        let now = Date().timeIntervalSince1970
        for report in batch {
            guard let id = self.byTransfer[report.id], var job = self.jobs[id] else { continue }
            switch report.event {
            case .started:
                break
            case .response(let response):
                if !job.stopping {
                    job.record.state = .transferring
                    job.record.reason = "transferring from \(Self.host(of: job.spec.urls.first ?? ""))"
                }
                job.record.totalBytes = response.totalSize ?? job.record.totalBytes
                job.received = response.offset
                self.pending.records.append(job.record)
            case .progress(let progress):
                job.received = progress.received
                job.bytesPerSecond = progress.bytesPerSecond
                if let total = progress.total { job.record.totalBytes = total }
            case .checkpoint(let offset):
                job.record.offset = offset
                self.pending.records.append(job.record)
            case .finished(let outcome):
                ended = true
                self.byTransfer.removeValue(forKey: report.id)
                job.transfer = nil
                job.rate = nil
                job.bytesPerSecond = 0
                self.finish(&job, outcome, now: now)
                self.pending.records.append(job.record)
            }
            self.jobs[id] = job
        }
        return ended
    }

    private func finish(_ job: inout AgentJob, _ outcome: TransferOutcome, now: Double) {
        let wasStopping = job.stopping
        job.stopping = false
        switch outcome {
        case .completed(let done):
            job.record.offset = 0
            job.record.attempts = 0
            job.record.firstFailureAt = nil
            job.record.completedAt = now
            job.record.etag = done.validators.etag
            job.record.lastModified = done.validators.lastModified
            job.record.contentSHA256 = done.sha256
            job.record.totalBytes = done.size
            job.received = done.size
            let detail = "fetched \(ByteCount(done.transferred).humanReadable) from \(Self.host(of: done.url))"
            if job.spec.isOneShot {
                job.record.state = .complete
                job.record.reason = detail
            } else {
                self.scheduleRefresh(&job, now: now, detail: detail)
            }
            self.pending.history.append(
                (
                    job.record.id,
                    JobHistoryEntry(at: now, state: job.record.state.rawValue, detail: detail, bytes: done.transferred)
                )
            )
            self.runHooks(for: job, complete: true)
        case .notModified(let validators):
            job.record.attempts = 0
            job.record.firstFailureAt = nil
            job.record.etag = validators.etag ?? job.record.etag
            job.record.lastModified = validators.lastModified ?? job.record.lastModified
            self.scheduleRefresh(&job, now: now, detail: "unchanged at the origin")
        case .failed(let failure):
            job.record.attempts += 1
            let first = job.record.firstFailureAt ?? now
            job.record.firstFailureAt = first
            let policy = job.spec.policy.retry
            if failure.kind == .permanent || now - first >= Double(policy.giveUpAfter.seconds) {
                job.record.state = .error
                job.record.reason =
                    failure.kind == .permanent
                    ? failure.reason : "gave up after \(policy.giveUpAfter): \(failure.reason)"
                job.record.dueAt = nil
                self.runHooks(for: job, complete: false)
            } else {
                let delay = RetrySchedule(minimumDelay: policy.minDelay).delay(
                    attempt: job.record.attempts,
                    retryAfter: failure.retryAfter.map { TimeSpan(seconds: Int64($0.rounded(.up))) },
                    jitter: Double.random(in: 0..<1)
                )
                job.record.state = .transientError
                job.record.dueAt = now + delay
                job.record.reason = "retry in \(TimeSpan(seconds: Int64(delay.rounded()))): \(failure.reason)"
            }
            self.pending.history.append(
                (
                    job.record.id,
                    JobHistoryEntry(at: now, state: job.record.state.rawValue, detail: failure.reason, bytes: 0)
                )
            )
        case .cancelled:
            // Stopped by a plan (its new state is already set) or by the agent stopping.
            if !wasStopping, job.record.state.isRunning {
                job.record.state = .queued
                job.record.reason = "interrupted"
            }
        }
    }

    private func scheduleRefresh(_ job: inout AgentJob, now: Double, detail: String) {
        job.record.state = .upToDate
        switch job.spec.policy.refresh {
        case .never:
            job.record.dueAt = nil
            job.record.reason = "\(detail); never re-checked"
        case .every(let interval):
            // ±10 % jitter, so a fleet that synced together does not come back together.
            let seconds = Double(interval.seconds) * Double.random(in: 0.9...1.1)
            job.record.dueAt = now + seconds
            job.record.reason = "\(detail); next check in \(TimeSpan(seconds: Int64(seconds.rounded())))"
        }
    }

    private func runHooks(for job: AgentJob, complete: Bool) {
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
            "BARGE_URL": job.spec.urls.first ?? "",
            "BARGE_DEST": job.spec.destination,
            "BARGE_STATE": job.record.state.rawValue,
            "BARGE_REASON": job.record.reason,
            "BARGE_BYTES": String(job.record.totalBytes ?? 0),
        ]
        let owner = manifest?.owner ?? (geteuid(), getegid())
        for command in commands { self.hooks.run(command, environment: environment, as: owner) }
    }

    /// Writes what changed since the last write, in one transaction.
    private func flush() async {
        guard !self.pending.isEmpty else { return }
        let batch = self.pending
        self.pending = JobStore.Batch()
        do {
            try await self.store.apply(batch)
        } catch {
            Log.error("cannot write the store: \(error)")
        }
    }

    // MARK: Commands

    /// What the control API's selectors name: job ids, or every job of a manifest.
    public enum Selection: Sendable {
        case jobs([Int64])
        case manifest(String)
    }

    private func select(_ selection: Selection) -> [Int64] {
        switch selection {
        case .jobs(let ids): ids.filter { self.jobs[$0] != nil }
        case .manifest(let name): self.jobs.values.filter { $0.spec.manifest == name }.map(\.record.id).sorted()
        }
    }

    /// Suspends jobs until resumed.
    public func suspend(_ selection: Selection) async -> CommandReply {
        let ids = self.select(selection)
        for id in ids {
            self.jobs[id]!.record.userSuspended = true
            self.pending.records.append(self.jobs[id]!.record)
        }
        await self.reconcile()
        return Self.reply(ids, "suspended")
    }

    /// Resumes suspended jobs.
    public func resume(_ selection: Selection) async -> CommandReply {
        let ids = self.select(selection)
        for id in ids {
            self.jobs[id]!.record.userSuspended = false
            self.pending.records.append(self.jobs[id]!.record)
        }
        await self.reconcile()
        return Self.reply(ids, "resumed")
    }

    /// Cancels jobs: the transfer stops and its partial is removed; a mirrored job stays cancelled until retried
    /// or its manifest entry changes.
    public func cancel(_ selection: Selection) async -> CommandReply {
        let ids = self.select(selection)
        for id in ids {
            var job = self.jobs[id]!
            if let transfer = job.transfer {
                job.stopping = true
                self.engine.cancel(transfer, discardPartial: true)
            } else {
                PartialFiles.remove(for: job.spec.destination)
            }
            job.record.state = .cancelled
            job.record.reason = "cancelled by user"
            job.record.offset = 0
            job.record.dueAt = nil
            self.jobs[id] = job
            self.pending.records.append(job.record)
        }
        await self.reconcile()
        return Self.reply(ids, "cancelled")
    }

    /// Makes jobs due now: failed, cancelled, waiting for a retry or up to date alike.
    public func retry(_ selection: Selection) async -> CommandReply {
        let ids = self.select(selection)
        for id in ids where self.jobs[id]!.transfer == nil {
            var job = self.jobs[id]!
            job.record.state = .queued
            job.record.reason = "retry requested"
            job.record.attempts = 0
            job.record.firstFailureAt = nil
            job.record.dueAt = nil
            self.jobs[id] = job
            self.pending.records.append(job.record)
        }
        await self.reconcile()
        return Self.reply(ids, "retrying")
    }

    /// The answer to a job command: what it did, or that it named no job.
    private static func reply(_ ids: [Int64], _ done: String) -> CommandReply {
        CommandReply(ok: !ids.isEmpty, message: ids.isEmpty ? "no such job" : "\(done) \(ids.count) job(s)", jobs: ids)
    }

    /// Adds a one-shot download (`barge get` through the agent).
    public func add(_ request: NewJobRequest) async -> CommandReply {
        let destination = request.destination
        guard case .success(let normal) = PathRules.normalize(destination), normal == destination else {
            return CommandReply(ok: false, message: "the destination must be an absolute path without . or ..")
        }
        guard self.config.isAllowed(path: destination) else {
            return CommandReply(
                ok: false,
                message:
                    "\(destination) is outside the allowed roots (\(self.config.allowedRoots.joined(separator: ", ")))"
            )
        }
        let scheme = request.url.prefix { $0 != ":" }.lowercased()
        guard self.config.allowedSchemes.contains(scheme) else {
            return CommandReply(ok: false, message: "the scheme '\(scheme)' is not allowed by the agent config")
        }
        if let existing = self.byDestination[destination] {
            return CommandReply(
                ok: false,
                message: "\(destination) already belongs to job \(existing)",
                jobs: [existing]
            )
        }
        var policy = TransferPolicy()
        policy.priority = request.priority.flatMap(Priority.init(rawValue:)) ?? .foreground
        policy.network = .any
        if let rate = request.maxRate { policy.maxRate = .limited(ByteRate(bytesPerSecond: rate)) }
        let spec = JobSpec(
            manifest: nil,
            urls: [request.url],
            destination: destination,
            sha256: request.sha256,
            policy: policy
        )
        var batch = JobStore.Batch()
        var record = JobRecord(id: 0)
        record.reason = "new"
        batch.inserts = [StoredJob(spec: spec, record: record)]
        await self.flush()
        do {
            guard let id = try await self.store.apply(batch).first else { throw CancellationError() }
            record.id = id
            self.jobs[id] = AgentJob(spec: spec, record: record)
            self.byDestination[destination] = id
            await self.reconcile()
            return CommandReply(ok: true, message: "job \(id) added", jobs: [id])
        } catch {
            return CommandReply(ok: false, message: "cannot store the job: \(error)")
        }
    }

    // MARK: Status

    /// Everything `barge status` shows; `job` or `manifest` narrows the jobs (and manifests) reported.
    public func status(job: Int64? = nil, manifest: String? = nil) -> StatusReport {
        let now = Date().timeIntervalSince1970
        var perManifest: [String: Int] = [:]
        for job in self.jobs.values { if let manifest = job.spec.manifest { perManifest[manifest, default: 0] += 1 } }
        let manifests = self.manifests.sorted { $0.value.path < $1.value.path }
            .filter { id, _ in manifest == nil || manifest == id }
            .filter { id, _ in job == nil || self.jobs[job!]?.spec.manifest == id }
            .map { id, known in
                ManifestStatus(
                    id: id,
                    path: known.path,
                    state: known.errors.isEmpty ? "valid" : "invalid",
                    errors: known.errors,
                    runningLastGoodVersion: !known.errors.isEmpty && known.hasGoodVersion,
                    jobs: perManifest[id] ?? 0
                )
            }
        let selected: [AgentJob]
        if let job {
            selected = self.jobs[job].map { [$0] } ?? []
        } else {
            selected = self.jobs.values.filter { manifest == nil || $0.spec.manifest == manifest }
                .sorted { $0.record.id < $1.record.id }
        }
        return StatusReport(agent: self.agentStatus(now: now), manifests: manifests, jobs: selected.map(Self.jobStatus))
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
            network: self.network.description,
            maxTransfers: self.config.concurrency.total,
            maxPerHost: self.config.concurrency.perHost,
            globalRate: self.globalRate.description,
            running: self.byTransfer.count,
            nextWake: self.wakeAt,
            lastReconcileSeconds: self.lastReconcileSeconds
        )
    }

    private static func jobStatus(_ job: AgentJob) -> JobStatus {
        let running = job.transfer != nil
        let mirrored =
            job.record.state == .upToDate || job.record.state == .complete
            || (job.record.completedAt != nil && job.record.offset == 0)
        let bytes = running ? job.received : (mirrored ? job.record.totalBytes ?? 0 : job.record.offset)
        let total = job.record.totalBytes ?? job.spec.size
        let eta: Double? =
            running && job.bytesPerSecond > 0 && total != nil && total! > bytes
            ? Double(total! - bytes) / job.bytesPerSecond : nil
        return JobStatus(
            id: job.record.id,
            manifest: job.spec.manifest,
            destination: job.spec.destination,
            url: job.spec.urls.first ?? "",
            state: job.record.state.rawValue,
            reason: job.record.reason,
            priority: job.spec.policy.priority.rawValue,
            bytes: bytes,
            total: total,
            bytesPerSecond: running ? job.bytesPerSecond : nil,
            eta: eta,
            dueAt: job.record.dueAt,
            completedAt: job.record.completedAt,
            attempts: job.record.attempts,
            userSuspended: job.record.userSuspended
        )
    }

    /// One line for systemd's status: "3 transferring, 120 up to date, 1 error".
    private var summary: String {
        var counts: [JobState: Int] = [:]
        for job in self.jobs.values { counts[job.record.state, default: 0] += 1 }
        let parts = JobState.allCases.compactMap { state in counts[state].map { "\($0) \(state.rawValue)" } }
        return parts.isEmpty ? "no jobs" : parts.joined(separator: ", ")
    }

    static func host(of url: String) -> String {
        guard let start = url.range(of: "://")?.upperBound else { return url }
        let rest = url[start...]
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        return String(authority.split(separator: "@").last ?? authority)
    }
}
