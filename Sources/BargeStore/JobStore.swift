public import BargeCore
import Foundation
import GRDB

/// A job as stored: what it transfers (as far as the store needs to know it) and its persistent state.
public struct StoredJob: Hashable, Sendable {
    /// What to transfer. For a manifest's job the manifest is the truth and the stored copy is what was last
    /// loaded; a one-shot job (`barge get`) lives only here.
    public var spec: JobSpec
    /// Its persistent state.
    public var record: JobRecord
    /// The mirrored copy's validators, written with an insert (read back with ``JobStore/validators(of:)``).
    public var validators: MirrorValidators?

    /// Creates a stored job.
    public init(spec: JobSpec, record: JobRecord, validators: MirrorValidators? = nil) {
        self.spec = spec
        self.record = record
        self.validators = validators
    }
}

/// The last valid version of a manifest, kept so that a manifest found invalid when the agent starts keeps running
/// what it last said.
public struct ManifestVersion: Hashable, Sendable {
    /// The manifest's id.
    public var id: String
    /// Its path when it was stored.
    public var path: String
    /// Its text.
    public var text: String
    /// A digest of the text (to tell whether it changed without reading it back).
    public var digest: String
    /// When it was stored (epoch seconds).
    public var storedAt: Double

    /// Creates a version.
    public init(id: String, path: String, text: String, digest: String, storedAt: Double) {
        self.id = id
        self.path = path
        self.text = text
        self.digest = digest
        self.storedAt = storedAt
    }
}

/// One line of a job's history: a completion or a failure.
public struct JobHistoryEntry: Hashable, Sendable, Codable {
    /// When (epoch seconds).
    public var at: Double
    /// The state the job reached: complete, up-to-date, error, transient-error, cancelled.
    public var state: String
    /// What happened, for people.
    public var detail: String
    /// Bytes transferred by the run.
    public var bytes: UInt64

    /// Creates an entry.
    public init(at: Double, state: String, detail: String, bytes: UInt64) {
        self.at = at
        self.state = state
        self.detail = detail
        self.bytes = bytes
    }
}

/// A stored uplink override names a cost this build does not know.
public struct UnreadableOverride: Error, CustomStringConvertible {
    /// The interface it is for.
    public var interface: String
    /// What the store holds.
    public var cost: String
    public var description: String { "the override of \(self.interface) has an unknown cost '\(self.cost)'" }
}

/// The agent's persistent state: jobs, their offsets, validators, attempts, due times, states and reasons, and a
/// short history of each. SQLite through GRDB, in WAL mode, with versioned migrations.
///
/// The store is the truth after a crash: the agent writes a job's offset only after the partial's bytes were
/// fsynced (the engine's checkpoint event), so a stored offset never claims bytes that are not on disk. Writes
/// come in batches, one transaction each (the agent's supervisor gathers the events of a moment).
public final class JobStore: Sendable {
    private let pool: DatabasePool
    /// The store's file in its directory.
    public static let fileName = "barge.sqlite"
    /// History lines kept per job.
    public static let historyLength = 20

    /// Opens (creating and migrating) the store `barge.sqlite` in `directory`, which is created with mode 0700.
    public init(directory: String) throws {
        try FileManager.default.createDirectory(
            atPath: directory,
            withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700]
        )
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in
            // WAL with NORMAL sync: a power cut may lose the last checkpoints (resuming from an older offset is
            // always safe), never consistency.
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        self.pool = try DatabasePool(path: directory + "/" + Self.fileName, configuration: configuration)
        try Self.migrator.migrate(self.pool)
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: jobs and history") { db in
            try db.create(table: "job") { table in
                table.autoIncrementedPrimaryKey("id")
                table.column("destination", .text).notNull().unique()
                table.column("manifest", .text).indexed()
                table.column("urls", .text).notNull()  // JSON array
                table.column("sha256", .text)
                table.column("size", .integer)
                table.column("priority", .text).notNull()
                table.column("max_rate", .integer)
                table.column("state", .text).notNull()
                table.column("reason", .text).notNull()
                table.column("user_suspended", .boolean).notNull().defaults(to: false)
                table.column("attempts", .integer).notNull().defaults(to: 0)
                table.column("first_failure_at", .double)
                table.column("due_at", .double)
                table.column("last_started_at", .double)
                table.column("completed_at", .double)
                table.column("offset", .integer).notNull().defaults(to: 0)
                table.column("total_bytes", .integer)
                table.column("etag", .text)
                table.column("last_modified", .text)
                table.column("content_sha256", .text)
            }
            try db.create(table: "history") { table in
                table.autoIncrementedPrimaryKey("id")
                table.column("job_id", .integer).notNull().indexed()
                    .references("job", onDelete: .cascade)
                table.column("at", .double).notNull()
                table.column("state", .text).notNull()
                table.column("detail", .text).notNull()
                table.column("bytes", .integer).notNull()
            }
        }
        migrator.registerMigration("v2: last good manifests") { db in
            // The text of each manifest's last valid version: a manifest that is invalid when the agent starts
            // keeps running what it said before, as it does within one run.
            try db.create(table: "manifest_version") { table in
                table.primaryKey("id", .text)
                table.column("path", .text).notNull()
                table.column("text", .text).notNull()
                table.column("digest", .text).notNull()
                table.column("stored_at", .double).notNull()
            }
            // A one-shot job's owner (`uid:gid` of the local user who added it through the control socket): its
            // file is theirs, and they may control it.
            try db.alter(table: "job") { table in table.add(column: "owner", .text) }
        }
        migrator.registerMigration("v3: uplink overrides") { db in
            // `barge net set IFACE --cost … --roaming …`: a verdict set by hand, kept across restarts; a column is
            // null for `auto`.
            try db.create(table: "uplink_override") { table in
                table.primaryKey("interface", .text)
                table.column("cost", .text)
                table.column("roaming", .boolean)
            }
        }
        migrator.registerMigration("v4: uploads") { db in
            // An upload job's protocol, after-action and file as last found (JSON, ``StoredUpload``; null: a
            // download), its tus session's URL, and the server's last reply body (bounded by its entry).
            try db.alter(table: "job") { table in
                table.add(column: "upload", .text)
                table.add(column: "upload_session", .text)
                table.add(column: "reply", .blob)
            }
        }
        return migrator
    }

    // MARK: Reading

    /// Every job.
    public func jobs() async throws -> [StoredJob] {
        try await self.pool.read { db in
            var jobs: [StoredJob] = []
            let rows = try Row.fetchCursor(db, sql: "SELECT * FROM job ORDER BY id")
            while let row = try rows.next() { jobs.append(try Self.job(from: row)) }
            return jobs
        }
    }

    /// The highest job id ever given (ids are never used twice, even after their jobs are deleted): the agent gives
    /// the next ones itself, so that a job can start before the batch that inserts it is written.
    public func lastJobID() async throws -> Int64 {
        try await self.pool.read { db in
            let given = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'job'") ?? 0
            let held = try Int64.fetchOne(db, sql: "SELECT max(id) FROM job") ?? 0
            return max(given, held)
        }
    }

    /// The digests of the stored last good manifest versions, by manifest id (their texts stay on disk until one
    /// is needed).
    public func manifestDigests() async throws -> [String: String] {
        try await self.pool.read { db in
            var digests: [String: String] = [:]
            let rows = try Row.fetchCursor(db, sql: "SELECT id, digest FROM manifest_version")
            while let row = try rows.next() { digests[row[0]] = row[1] }
            return digests
        }
    }

    /// The stored last good version of a manifest, if any.
    public func manifestVersion(_ id: String) async throws -> ManifestVersion? {
        try await self.pool.read { db in
            try Row.fetchOne(
                db,
                sql: "SELECT id, path, text, digest, stored_at FROM manifest_version WHERE id = ?",
                arguments: [id]
            ).map { row in
                ManifestVersion(id: row[0], path: row[1], text: row[2], digest: row[3], storedAt: row[4])
            }
        }
    }

    /// The uplink verdicts set by hand, by interface name. A stored cost this build does not know is an error, not
    /// `auto`: an override that said "metered" must not turn into "any network will do".
    public func uplinkOverrides() async throws -> [String: UplinkOverride] {
        try await self.pool.read { db in
            var overrides: [String: UplinkOverride] = [:]
            let rows = try Row.fetchCursor(db, sql: "SELECT interface, cost, roaming FROM uplink_override")
            while let row = try rows.next() {
                let name: String = row[0]
                var cost: NetworkCost?
                if let text: String = row[1] {
                    guard let known = NetworkCost(rawValue: text) else {
                        throw UnreadableOverride(interface: name, cost: text)
                    }
                    cost = known
                }
                overrides[name] = UplinkOverride(cost: cost, roaming: row[2])
            }
            return overrides
        }
    }

    /// Sets the verdict on an interface by hand; an override with neither cost nor roaming (both `auto`) removes
    /// it.
    public func setUplinkOverride(_ override: UplinkOverride, for interface: String) async throws {
        try await self.pool.write { db in
            if override.cost == nil, override.roaming == nil {
                try db.execute(sql: "DELETE FROM uplink_override WHERE interface = ?", arguments: [interface])
            } else {
                try db.execute(
                    sql: "INSERT OR REPLACE INTO uplink_override (interface, cost, roaming) VALUES (?, ?, ?)",
                    arguments: [interface, override.cost?.rawValue, override.roaming]
                )
            }
        }
    }

    /// Frees the database connections' caches (after the start's full read, which filled them).
    public func releaseMemory() { self.pool.releaseMemory() }

    /// A job's mirrored copy's validators (read when a refresh starts; not held in memory).
    public func validators(of id: Int64) throws -> MirrorValidators {
        try self.pool.read { db in
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: "SELECT etag, last_modified, content_sha256, upload_session FROM job WHERE id = ?",
                    arguments: [id]
                )
            else { return MirrorValidators() }
            return MirrorValidators(etag: row[0], lastModified: row[1], contentSHA256: row[2], uploadSession: row[3])
        }
    }

    /// The mirrored copies' validators of several jobs, in one read (on GRDB's own threads).
    public func validators(of ids: [Int64]) async throws -> [Int64: MirrorValidators] {
        try await self.pool.read { db in
            var found: [Int64: MirrorValidators] = [:]
            let statement = try db.cachedStatement(
                sql: "SELECT etag, last_modified, content_sha256, upload_session FROM job WHERE id = ?"
            )
            for id in ids {
                guard let row = try Row.fetchOne(statement, arguments: [id]) else { continue }
                found[id] = MirrorValidators(
                    etag: row[0],
                    lastModified: row[1],
                    contentSHA256: row[2],
                    uploadSession: row[3]
                )
            }
            return found
        }
    }

    /// A job's history, newest first.
    public func history(of id: Int64) async throws -> [JobHistoryEntry] {
        try await self.pool.read { db in
            try Row.fetchAll(
                db,
                sql: "SELECT at, state, detail, bytes FROM history WHERE job_id = ? ORDER BY id DESC",
                arguments: [id]
            ).map { row in
                JobHistoryEntry(at: row["at"], state: row["state"], detail: row["detail"], bytes: row["bytes"])
            }
        }
    }

    private static func job(from row: Row) throws(UnreadableJob) -> StoredJob {
        var policy = TransferPolicy()
        policy.priority = Priority(rawValue: row["priority"]) ?? .normal
        if let rate: Int64 = row["max_rate"] { policy.maxRate = .limited(ByteRate(bytesPerSecond: UInt64(rate))) }
        if let owner: String = row["owner"], !owner.isEmpty {
            let parts = owner.split(separator: ":", maxSplits: 1).map(String.init)
            policy.owner = FileOwner(user: parts[0], group: parts.count > 1 ? parts[1] : nil)
        }
        let urlsJSON: String = row["urls"]
        let isUpload = (row["upload"] as String?) != nil
        // Fail closed: a job whose sources cannot be read is not a job without sources. An upload's are an object
        // (`{"upload": [URL]}`), which a version of Barge from before uploads cannot read: it stops rather than
        // fetch the upload's URL over the user's file.
        let decoded =
            isUpload
            ? (try? JSONDecoder().decode([String: [String]].self, from: Data(urlsJSON.utf8)))?["upload"]
            : try? JSONDecoder().decode([String].self, from: Data(urlsJSON.utf8))
        guard let urls = decoded, !urls.isEmpty else {
            throw UnreadableJob(id: row["id"], column: "urls", value: urlsJSON)
        }
        var upload: UploadDetails?
        if let uploadJSON: String = row["upload"] {
            // Fail closed: an upload that cannot be read must never run as a download of its own file.
            guard let stored = try? JSONDecoder().decode(StoredUpload.self, from: Data(uploadJSON.utf8)),
                let details = stored.details
            else { throw UnreadableJob(id: row["id"], column: "upload", value: uploadJSON) }
            upload = details
        }
        let spec = JobSpec(
            manifest: row["manifest"],
            urls: urls,
            destination: row["destination"],
            sha256: row["sha256"],
            size: (row["size"] as Int64?).map(UInt64.init),
            policy: policy,
            upload: upload
        )
        var record = JobRecord(id: row["id"])
        record.state = JobState(rawValue: row["state"]) ?? .queued
        record.reason = row["reason"]
        record.userSuspended = row["user_suspended"]
        record.attempts = row["attempts"]
        record.firstFailureAt = row["first_failure_at"]
        record.dueAt = row["due_at"]
        record.lastStartedAt = row["last_started_at"]
        record.completedAt = row["completed_at"]
        record.offset = UInt64(row["offset"] as Int64)
        record.totalBytes = (row["total_bytes"] as Int64?).map(UInt64.init)
        // Any of them set means the mirrored copy has a record (a file fetched without a hash has only validators).
        record.hasValidators =
            (row["etag"] as String?) != nil || (row["last_modified"] as String?) != nil
            || (row["content_sha256"] as String?) != nil || (row["upload_session"] as String?) != nil
        return StoredJob(spec: spec, record: record)
    }

    /// A stored job that cannot be read as one; the agent stops rather than run without it.
    public struct UnreadableJob: Error, CustomStringConvertible {
        /// The job's id.
        public var id: Int64
        /// The column that cannot be read.
        public var column: String
        /// What that column holds.
        public var value: String

        public var description: String {
            "job \(self.id) in the state database has an unreadable \(self.column) (\(self.value.prefix(80))); "
                + "restore the database from a backup or delete that row"
        }
    }

    // MARK: Writing

    /// One batch of changes, applied in one transaction.
    public struct Batch: Sendable {
        /// New jobs: their specs and initial states (ids are assigned by the store).
        public var inserts: [StoredJob] = []
        /// Changed specs of existing jobs (a manifest entry edited).
        public var specs: [(id: Int64, spec: JobSpec)] = []
        /// Changed records.
        public var records: [JobRecord] = []
        /// New validators of mirrored copies.
        public var validators: [(id: Int64, validators: MirrorValidators)] = []
        /// Validators a server sent again with a `304 Not Modified`: each replaces the stored one of its kind, the
        /// rest (the content's hash) stays.
        public var refreshedValidators: [(id: Int64, etag: String?, lastModified: String?)] = []
        /// Jobs removed (their manifest entry is gone).
        public var deletions: [Int64] = []
        /// History lines.
        public var history: [(id: Int64, entry: JobHistoryEntry)] = []
        /// Manifests' new last good versions (replacing the stored ones).
        public var manifestVersions: [ManifestVersion] = []
        /// Manifests whose stored versions go (their files were removed).
        public var manifestRemovals: [String] = []
        /// Uploads' resumable sessions (nil: void).
        public var uploadSessions: [(id: Int64, session: String?)] = []
        /// Uploads' reply bodies.
        public var replies: [(id: Int64, reply: [UInt8])] = []

        /// An empty batch.
        public init() {}

        /// Whether there is nothing to write.
        public var isEmpty: Bool {
            self.inserts.isEmpty && self.specs.isEmpty && self.records.isEmpty && self.deletions.isEmpty
                && self.history.isEmpty && self.validators.isEmpty && self.refreshedValidators.isEmpty
                && self.manifestVersions.isEmpty
                && self.manifestRemovals.isEmpty && self.uploadSessions.isEmpty && self.replies.isEmpty
        }
    }

    /// A change the store refused (a destination already stored, a line for a job that is gone): a bug in the
    /// caller, not a disk. The rest of its batch is stored all the same.
    public struct RefusedChange: Sendable, CustomStringConvertible {
        /// What the change was ("insert", "record", "history" …).
        public var kind: String
        /// The job it was for.
        public var id: Int64
        /// What SQLite said.
        public var error: String

        public var description: String { "\(self.kind) of job \(self.id): \(self.error)" }
    }

    /// What a batch did: the ids given to its inserts (in order, the refused ones left out) and the changes refused.
    public struct AppliedBatch: Sendable {
        /// The ids of the jobs inserted.
        public var ids: [Int64] = []
        /// The changes refused, each alone; everything else in the batch is stored.
        public var refused: [RefusedChange] = []

        /// Nothing applied yet.
        public init() {}
    }

    /// Applies a batch in one transaction: first the deletions, then the rest, leaving out every change to a job the
    /// batch deletes (a job added and removed, or a line written for it, before the write). A change the store
    /// refuses is left out alone and reported, never the whole batch: a bug in one row never loses the others.
    /// Throws only when the database cannot take the batch at all (then none of it is stored).
    @discardableResult
    public func apply(_ batch: Batch) async throws -> AppliedBatch {
        guard !batch.isEmpty else { return AppliedBatch() }
        return try await self.pool.write { db in
            var applied = AppliedBatch()
            /// Runs one statement whose SQL leaves out (`OR IGNORE`, `WHERE EXISTS`) a row it may not write, rather
            /// than fail: a failed statement cannot be run again (SQLite keeps its error until reset). A statement
            /// that changed nothing is reported as refused.
            func run(
                _ statement: Statement,
                _ arguments: StatementArguments,
                _ kind: String,
                _ id: Int64,
                _ why: String
            ) throws -> Bool {
                try statement.execute(arguments: arguments)
                guard db.changesCount == 0 else { return true }
                applied.refused.append(RefusedChange(kind: kind, id: id, error: why))
                return false
            }
            // Jobs nothing more is written for: deleted by the batch, or whose insert was refused.
            var skipped = Set(batch.deletions)
            let delete = try db.cachedStatement(sql: "DELETE FROM job WHERE id = ?")
            for id in batch.deletions { try delete.execute(arguments: [id]) }
            // A job with an id keeps it (the agent gave it); one with id 0 gets the next.
            let insert = try db.cachedStatement(
                sql: """
                    INSERT OR IGNORE INTO job (id, destination, manifest, urls, sha256, size, priority, max_rate, upload,
                    state, reason, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """
            )
            let updateValidators = try db.cachedStatement(
                sql: "UPDATE job SET etag = ?, last_modified = ?, content_sha256 = ? WHERE id = ?"
            )
            for job in batch.inserts where job.record.id == 0 || !skipped.contains(job.record.id) {
                let arguments: StatementArguments =
                    [job.record.id == 0 ? nil : job.record.id] + Self.specArguments(job.spec)
                    + [job.record.state.rawValue, job.record.reason, job.spec.policy.owner?.description]
                let why = "its id or destination is stored already"
                guard try run(insert, arguments, "insert", job.record.id, why) else {
                    skipped.insert(job.record.id)
                    continue
                }
                let id = db.lastInsertedRowID
                applied.ids.append(id)
                if let validators = job.validators {
                    try updateValidators.execute(arguments: [
                        validators.etag, validators.lastModified, validators.contentSHA256, id,
                    ])
                }
            }
            let updateSpec = try db.cachedStatement(
                sql: """
                    UPDATE OR IGNORE job SET destination = ?, manifest = ?, urls = ?, sha256 = ?, size = ?,
                    priority = ?, max_rate = ?, upload = ? WHERE id = ?
                    """
            )
            for (id, spec) in batch.specs where !skipped.contains(id) {
                let why = "no such job, or its new destination is another job's"
                _ = try run(updateSpec, Self.specArguments(spec) + [id], "spec", id, why)
            }
            let updateRecord = try db.cachedStatement(
                sql: """
                    UPDATE job SET state = ?, reason = ?, user_suspended = ?, attempts = ?, first_failure_at = ?,
                    due_at = ?, last_started_at = ?, completed_at = ?, offset = ?, total_bytes = ? WHERE id = ?
                    """
            )
            // A job changes several times in a batch (queued, connecting, transferring, done): its last record
            // holds every column, so only that one is written.
            var written = Set<Int64>(minimumCapacity: batch.records.count)
            for record in batch.records.reversed() where !skipped.contains(record.id) {
                guard written.insert(record.id).inserted else { continue }
                try updateRecord.execute(arguments: [
                    record.state.rawValue, record.reason, record.userSuspended, record.attempts,
                    record.firstFailureAt, record.dueAt, record.lastStartedAt, record.completedAt,
                    Int64(clamping: record.offset), record.totalBytes.map { Int64(clamping: $0) }, record.id,
                ])
            }
            for (id, validators) in batch.validators where !skipped.contains(id) {
                try updateValidators.execute(arguments: [
                    validators.etag, validators.lastModified, validators.contentSHA256, id,
                ])
            }
            let refresh = try db.cachedStatement(
                sql: "UPDATE job SET etag = COALESCE(?, etag), last_modified = COALESCE(?, last_modified) WHERE id = ?"
            )
            for (id, etag, lastModified) in batch.refreshedValidators where !skipped.contains(id) {
                try refresh.execute(arguments: [etag, lastModified, id])
            }
            let addHistory = try db.cachedStatement(
                sql: """
                    INSERT INTO history (job_id, at, state, detail, bytes) SELECT ?, ?, ?, ?, ?
                    WHERE EXISTS (SELECT 1 FROM job WHERE id = ?)
                    """
            )
            let trimHistory = try db.cachedStatement(
                sql: """
                    DELETE FROM history WHERE job_id = ? AND id NOT IN
                    (SELECT id FROM history WHERE job_id = ? ORDER BY id DESC LIMIT \(Self.historyLength))
                    """
            )
            for (id, entry) in batch.history where !skipped.contains(id) {
                let arguments: StatementArguments = [
                    id, entry.at, entry.state, entry.detail, Int64(clamping: entry.bytes), id,
                ]
                guard try run(addHistory, arguments, "history", id, "no such job") else { continue }
                try trimHistory.execute(arguments: [id, id])
            }
            for version in batch.manifestVersions {
                try db.execute(
                    sql: """
                        INSERT OR REPLACE INTO manifest_version (id, path, text, digest, stored_at)
                        VALUES (?, ?, ?, ?, ?)
                        """,
                    arguments: [version.id, version.path, version.text, version.digest, version.storedAt]
                )
            }
            for id in batch.manifestRemovals {
                try db.execute(sql: "DELETE FROM manifest_version WHERE id = ?", arguments: [id])
            }
            let setSession = try db.cachedStatement(sql: "UPDATE job SET upload_session = ? WHERE id = ?")
            for (id, session) in batch.uploadSessions where !skipped.contains(id) {
                try setSession.execute(arguments: [session, id])
            }
            let setReply = try db.cachedStatement(sql: "UPDATE job SET reply = ? WHERE id = ?")
            for (id, reply) in batch.replies where !skipped.contains(id) {
                try setReply.execute(arguments: [Data(reply), id])
            }
            return applied
        }
    }

    /// `strings` as a JSON array, written directly: `JSONEncoder` made most of the cost of inserting a burst of jobs.
    static func jsonArray(_ strings: [String]) -> String {
        var json = "["
        for (index, string) in strings.enumerated() {
            if index > 0 { json += "," }
            json += "\""
            guard string.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") })
            else {
                json += string  // a URL as a manifest allows it: nothing to escape
                json += "\""
                continue
            }
            for scalar in string.unicodeScalars {
                switch scalar {
                case "\"": json += "\\\""
                case "\\": json += "\\\\"
                case _ where scalar.value < 0x20:
                    let hex = String(scalar.value, radix: 16)
                    json += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                default: json.unicodeScalars.append(scalar)
                }
            }
            json += "\""
        }
        return json + "]"
    }

    /// Whether two specs differ in nothing the store keeps (the rest of a manifest job's policy comes from its
    /// manifest on every load).
    public static func storesSameSpec(_ a: JobSpec, _ b: JobSpec) -> Bool {
        a.manifest == b.manifest && a.urls == b.urls && a.destination == b.destination && a.sha256 == b.sha256
            && a.size == b.size && a.policy.priority == b.policy.priority && a.policy.maxRate == b.policy.maxRate
            && a.upload.map(StoredUpload.init) == b.upload.map(StoredUpload.init)
    }

    /// The spec's columns.
    private static func specArguments(_ spec: JobSpec) -> StatementArguments {
        let urls = spec.isUpload ? "{\"upload\":" + Self.jsonArray(spec.urls) + "}" : Self.jsonArray(spec.urls)
        return [
            spec.destination, spec.manifest, urls, spec.sha256, spec.size.map { Int64(clamping: $0) },
            spec.policy.priority.rawValue, spec.policy.maxRate.rate.map { Int64(clamping: $0.bytesPerSecond) },
            spec.upload.map { StoredUpload($0).json },
        ]
    }

    /// An upload job's reply body as last stored (nil: none kept).
    public func reply(of id: Int64) async throws -> [UInt8]? {
        try await self.pool.read { db in
            let data = try Data.fetchOne(db, sql: "SELECT reply FROM job WHERE id = ?", arguments: [id])
            return data.map { [UInt8]($0) }
        }
    }
}

/// An upload job's details as the store keeps them (the `upload` column, JSON): everything but whether the file
/// was still settling.
struct StoredUpload: Codable, Equatable {
    var uploadProtocol: String
    var after: String
    var moveTo: String?
    var chunkSize: UInt64
    var replyLimit: UInt64
    var size: UInt64
    var modified: Int64
    var inode: UInt64?

    init(_ details: UploadDetails) {
        self.uploadProtocol = details.uploadProtocol.rawValue
        switch details.after {
        case .keep: self.after = "keep"
        case .delete: self.after = "delete"
        case .moveTo(let directory):
            self.after = "move-to"
            self.moveTo = directory
        }
        self.chunkSize = details.chunkSize
        self.replyLimit = details.replyLimit
        self.size = details.stamp.size
        self.modified = details.stamp.modified
        self.inode = details.stamp.inode
    }

    /// The details, or nil when a field holds what no version wrote.
    var details: UploadDetails? {
        guard let uploadProtocol = UploadEntry.UploadProtocol(rawValue: self.uploadProtocol) else { return nil }
        let after: UploadEntry.AfterUpload
        switch (self.after, self.moveTo) {
        case ("keep", _): after = .keep
        case ("delete", _): after = .delete
        case ("move-to", let directory?): after = .moveTo(directory)
        default: return nil
        }
        return UploadDetails(
            uploadProtocol: uploadProtocol,
            after: after,
            chunkSize: self.chunkSize,
            replyLimit: self.replyLimit,
            stamp: SourceStamp(size: self.size, modified: self.modified, inode: self.inode ?? 0)
        )
    }

    var json: String { String(decoding: (try? JSONEncoder().encode(self)) ?? Data("{}".utf8), as: UTF8.self) }
}
