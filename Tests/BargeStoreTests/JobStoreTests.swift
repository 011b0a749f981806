import BargeCore
import BargeStore
import BargeTestSupport
import Foundation
import GRDB
import Testing

@Suite("Job store") struct JobStoreTests {
    let scratch: ScratchDirectory

    init() throws { self.scratch = try ScratchDirectory() }

    func spec(_ name: String, manifest: String? = "models") -> JobSpec {
        var policy = TransferPolicy()
        policy.priority = .high
        policy.maxRate = .limited(ByteRate(bytesPerSecond: 1_000_000))
        return JobSpec(
            manifest: manifest,
            urls: ["https://a.test/\(name)", "https://b.test/\(name)"],
            destination: "/srv/\(name)",
            sha256: String(repeating: "a", count: 64),
            size: 42,
            policy: policy
        )
    }

    @Test func jobsSurviveReopeningWithEveryField() async throws {
        let path = self.scratch.path + "/state"
        var ids: [Int64] = []
        do {
            let store = try JobStore(directory: path)
            var batch = JobStore.Batch()
            batch.inserts = [
                StoredJob(spec: spec("a"), record: JobRecord(id: 0)),
                StoredJob(spec: spec("b", manifest: nil), record: JobRecord(id: 0)),
            ]
            ids = try await store.apply(batch).ids
            #expect(ids.count == 2 && ids[0] != ids[1])
            var record = JobRecord(id: ids[0])
            record.state = .transientError
            record.reason = "retry in 4m: connection reset by 127.0.0.1"
            record.userSuspended = true
            record.attempts = 3
            record.firstFailureAt = 100
            record.dueAt = 340
            record.lastStartedAt = 90
            record.completedAt = 50
            record.offset = 1 << 40
            record.totalBytes = 1 << 41
            record.hasValidators = true
            var update = JobStore.Batch()
            update.records = [record]
            update.validators = [
                (
                    ids[0],
                    MirrorValidators(
                        etag: "\"abc\"",
                        lastModified: "Wed, 25 Nov 2026 10:00:00 GMT",
                        contentSHA256: String(repeating: "b", count: 64)
                    )
                )
            ]
            update.history = [(ids[0], JobHistoryEntry(at: 120, state: "transient-error", detail: "reset", bytes: 7))]
            try await store.apply(update)
        }
        let reopened = try JobStore(directory: path)
        let jobs = try await reopened.jobs()
        #expect(jobs.map(\.record.id) == ids)
        #expect(jobs[0].spec == spec("a").withPolicyKeptByTheStore())
        #expect(jobs[1].spec.manifest == nil)
        let record = jobs[0].record
        #expect(record.state == .transientError && record.reason.hasPrefix("retry in 4m"))
        #expect(record.userSuspended && record.attempts == 3 && record.firstFailureAt == 100 && record.dueAt == 340)
        #expect(record.lastStartedAt == 90 && record.completedAt == 50)
        #expect(record.offset == 1 << 40 && record.totalBytes == 1 << 41)
        #expect(record.hasValidators && !jobs[1].record.hasValidators)
        let validators = try reopened.validators(of: ids[0])
        #expect(validators.etag == "\"abc\"" && validators.lastModified?.hasPrefix("Wed") == true)
        #expect(validators.contentSHA256 == String(repeating: "b", count: 64))
        #expect(try await reopened.history(of: ids[0]).map(\.detail) == ["reset"])
    }

    @Test func historyIsBoundedAndGoesWithItsJob() async throws {
        let store = try JobStore(directory: self.scratch.path + "/state")
        var batch = JobStore.Batch()
        batch.inserts = [StoredJob(spec: spec("a"), record: JobRecord(id: 0))]
        let id = try #require(try await store.apply(batch).ids.first)
        var lines = JobStore.Batch()
        for index in 0..<(JobStore.historyLength + 5) {
            lines.history.append(
                (id, JobHistoryEntry(at: Double(index), state: "complete", detail: "#\(index)", bytes: 1))
            )
        }
        try await store.apply(lines)
        let history = try await store.history(of: id)
        #expect(history.count == JobStore.historyLength)
        #expect(history.first?.detail == "#\(JobStore.historyLength + 4)")
        var removal = JobStore.Batch()
        removal.deletions = [id]
        try await store.apply(removal)
        #expect(try await store.jobs().isEmpty)
        #expect(try await store.history(of: id).isEmpty)
    }

    /// The agent gives ids itself: the store keeps a given one, counts on from the highest ever given (a deleted
    /// job's id is never given again), and of several records of one job in a batch writes the last.
    @Test func givenIdsAreKeptAndNeverGivenTwice() async throws {
        let path = self.scratch.path + "/state"
        do {
            let store = try JobStore(directory: path)
            #expect(try await store.lastJobID() == 0)
            var batch = JobStore.Batch()
            batch.inserts = [
                StoredJob(spec: spec("a"), record: JobRecord(id: 7)),
                StoredJob(spec: spec("b"), record: JobRecord(id: 0)),
            ]
            #expect(try await store.apply(batch).ids == [7, 8])
            var changes = JobStore.Batch()
            for state in [JobState.connecting, .transferring, .upToDate] {
                var record = JobRecord(id: 7)
                record.state = state
                changes.records.append(record)
            }
            changes.deletions = [8]
            try await store.apply(changes)
        }
        let reopened = try JobStore(directory: path)
        #expect(try await reopened.lastJobID() == 8)
        #expect(try await reopened.jobs().map(\.record.state) == [.upToDate])
    }

    /// The URLs column is JSON the store writes itself: whatever a URL holds comes back as it was.
    @Test func urlsComeBackAsTheyWent() async throws {
        let urls = [
            "https://a.test/q?x=\"y\"", "https://b.test/back\\slash", "https://c.test/tab\there\u{1}\u{1f}",
            "https://d.test/é/😀", "https://e.test/plain",
        ]
        let store = try JobStore(directory: self.scratch.path + "/state")
        var batch = JobStore.Batch()
        batch.inserts = [
            StoredJob(spec: JobSpec(manifest: nil, urls: urls, destination: "/srv/u"), record: JobRecord(id: 0))
        ]
        try await store.apply(batch)
        #expect(try await store.jobs().first?.spec.urls == urls)
    }

    /// Fail closed: a row whose URLs cannot be read stops the read (and the agent), never becomes a job without
    /// sources.
    @Test func anUnreadableJobIsAnErrorNotAnEmptyOne() async throws {
        let path = self.scratch.path + "/state"
        do {
            let store = try JobStore(directory: path)
            var batch = JobStore.Batch()
            batch.inserts = [StoredJob(spec: spec("a"), record: JobRecord(id: 0))]
            try await store.apply(batch)
        }
        let database = try DatabaseQueue(path: path + "/barge.sqlite")
        try await database.write { db in try db.execute(sql: "UPDATE job SET urls = '[\"https://a.test/x\"'") }
        try database.close()
        let reopened = try JobStore(directory: path)
        await #expect(throws: JobStore.UnreadableJob.self) { try await reopened.jobs() }
    }

    /// An upload job keeps its protocol, after-action and stamp, its tus session and its reply; an upload column
    /// that cannot be read fails the read (it must never come back as a download of its own file).
    @Test func uploadJobsSurviveReopeningAndAnUnreadableOneIsAnError() async throws {
        let path = self.scratch.path + "/state"
        let details = UploadDetails(
            uploadProtocol: .tus,
            after: .moveTo("/srv/logs/shipped"),
            chunkSize: 1 << 20,
            replyLimit: 4096,
            stamp: SourceStamp(size: 42, modified: 1_765_000_000_123_456_789),
            isSettling: true
        )
        let upload = JobSpec(
            manifest: "logs",
            urls: ["https://logs.test/files/"],
            destination: "/srv/logs/a.gz",
            size: 42,
            upload: details
        )
        do {
            let store = try JobStore(directory: path)
            var batch = JobStore.Batch()
            batch.inserts = [StoredJob(spec: upload, record: JobRecord(id: 7))]
            try await store.apply(batch)
            var more = JobStore.Batch()
            more.uploadSessions = [(7, "https://logs.test/files/abc")]
            more.replies = [(7, Array("{\"id\": 1}".utf8))]
            try await store.apply(more)
        }
        do {
            let reopened = try JobStore(directory: path)
            let job = try #require(try await reopened.jobs().first)
            var stored = details
            stored.isSettling = false  // never stored: found anew by every scan
            #expect(job.spec.upload == stored)
            #expect(job.spec.isUpload)
            #expect(job.record.hasValidators, "a stored session is read when the job starts")
            #expect(try await reopened.validators(of: [7])[7]?.uploadSession == "https://logs.test/files/abc")
            #expect(try await reopened.reply(of: 7) == Array("{\"id\": 1}".utf8))
            #expect(JobStore.storesSameSpec(upload, job.spec), "settling alone is no change to store")
            var changed = job.spec
            changed.upload?.stamp.size = 43
            #expect(!JobStore.storesSameSpec(changed, job.spec))
        }
        let database = try DatabaseQueue(path: path + "/barge.sqlite")
        // A version from before uploads reads `urls` as an array: an upload's is not one.
        let urls = try await database.read { db in try String.fetchOne(db, sql: "SELECT urls FROM job") }
        #expect(urls == "{\"upload\":[\"https://logs.test/files/\"]}")
        #expect((try? JSONDecoder().decode([String].self, from: Data((urls ?? "").utf8))) == nil)
        try await database.write { db in
            try db.execute(sql: "UPDATE job SET upload = '{\"uploadProtocol\": \"ftp\"}'")
        }
        try database.close()
        await #expect(throws: JobStore.UnreadableJob.self) { try await JobStore(directory: path).jobs() }
    }

    /// Overrides set by hand outlive the store being closed; both halves `auto` removes one; a cost the store does
    /// not know is an error, not "no override" (which could let a metered link be spent).
    @Test func uplinkOverridesSurviveReopeningAndAnUnknownCostIsAnError() async throws {
        let path = self.scratch.path + "/state"
        do {
            let store = try JobStore(directory: path)
            try await store.setUplinkOverride(UplinkOverride(cost: .metered), for: "wwan0")
            try await store.setUplinkOverride(UplinkOverride(roaming: true), for: "wwan1")
            try await store.setUplinkOverride(UplinkOverride(cost: .unmetered, roaming: false), for: "eth0")
            try await store.setUplinkOverride(UplinkOverride(), for: "eth0")
        }
        let reopened = try JobStore(directory: path)
        let overrides = try await reopened.uplinkOverrides()
        #expect(overrides == ["wwan0": UplinkOverride(cost: .metered), "wwan1": UplinkOverride(roaming: true)])
        let database = try DatabaseQueue(path: path + "/barge.sqlite")
        try await database.write { db in
            try db.execute(sql: "UPDATE uplink_override SET cost = 'free' WHERE interface = 'wwan1'")
        }
        try database.close()
        await #expect(throws: UnreadableOverride.self) { try await reopened.uplinkOverrides() }
    }

    /// One destination is one job: a second insert of it is refused alone, reported with its job, and the rest of
    /// the batch (the first insert, a history line) is stored all the same.
    @Test func oneDestinationIsOneJobAndARefusalLosesNothingElse() async throws {
        let store = try JobStore(directory: self.scratch.path + "/state")
        var batch = JobStore.Batch()
        batch.inserts = [
            StoredJob(spec: spec("a"), record: JobRecord(id: 1)), StoredJob(spec: spec("a"), record: JobRecord(id: 2)),
            StoredJob(spec: spec("b"), record: JobRecord(id: 3)), StoredJob(spec: spec("c"), record: JobRecord(id: 4)),
        ]
        var record = JobRecord(id: 2)
        record.state = .upToDate
        batch.records = [record]
        // Lines for jobs that do not exist, each before a good one.
        batch.history = [99, 1, 98, 1].map { ($0, JobHistoryEntry(at: 1, state: "done", detail: "fetched", bytes: 3)) }
        let applied = try await store.apply(batch)
        #expect(applied.ids == [1, 3, 4])
        #expect(applied.refused.map(\.id) == [2, 99, 98])
        #expect(applied.refused.map(\.kind) == ["insert", "history", "history"])
        let jobs = try await store.jobs()
        #expect(jobs.map(\.record.id) == [1, 3, 4])
        // The refused job's record did not land on the job that holds its destination.
        #expect(jobs.map(\.record.state) == [.queued, .queued, .queued])
        #expect(try await store.history(of: 1).count == 2)
    }

    /// A batch written behind the agent holds whatever happened since the last write, in any order: a destination
    /// removed and added again (a new job for it), a job added and removed, a history line of a job removed. The
    /// deletions go first and nothing is written for a job the batch deletes, so none of it is refused.
    @Test func aBatchWithRemovalsAndReAddsIsStoredWhole() async throws {
        let store = try JobStore(directory: self.scratch.path + "/state")
        var first = JobStore.Batch()
        first.inserts = [StoredJob(spec: spec("a"), record: JobRecord(id: 1))]
        try await store.apply(first)
        var batch = JobStore.Batch()
        batch.inserts = [
            StoredJob(spec: spec("a"), record: JobRecord(id: 2)), StoredJob(spec: spec("b"), record: JobRecord(id: 3)),
        ]
        var record = JobRecord(id: 1)
        record.state = .upToDate
        batch.records = [record]
        batch.history = [
            (1, JobHistoryEntry(at: 1, state: "done", detail: "fetched", bytes: 3)),
            (3, JobHistoryEntry(at: 2, state: "done", detail: "fetched", bytes: 3)),
        ]
        batch.deletions = [1, 3]
        let applied = try await store.apply(batch)
        #expect(applied.refused.isEmpty)
        #expect(applied.ids == [2])
        let jobs = try await store.jobs()
        #expect(jobs.map(\.record.id) == [2])
        #expect(jobs.map(\.spec.destination) == [spec("a").destination])
        #expect(try await store.lastJobID() == 2)
    }

    @Test func theStoreDirectoryIsPrivate() throws {
        let path = self.scratch.path + "/private-state"
        _ = try JobStore(directory: path)
        var info = stat()
        stat(path, &info)
        #expect(info.st_mode & 0o777 == 0o700)
    }
}

extension JobSpec {
    /// The store keeps priority and rate of the policy (a manifest's job takes the rest from its manifest).
    func withPolicyKeptByTheStore() -> JobSpec {
        var copy = self
        var policy = TransferPolicy()
        policy.priority = self.policy.priority
        policy.maxRate = self.policy.maxRate
        copy.policy = policy
        return copy
    }
}
