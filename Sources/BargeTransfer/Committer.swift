/// A received file on its way into place, with what it must match.
struct FileToCommit: Sendable {
    let partial: PartialFile
    let mode: UInt32
    let owner: (uid: UInt32, gid: UInt32)?
    let expectedSize: UInt64?
    let expectedSHA256: String?
    /// Where it came from, after redirects.
    let url: String
    /// The response's validators (empty when the response had none; the partial's own are used then).
    let validators: Validators
    /// Bytes this run transferred.
    let transferred: UInt64
}

/// What the commit queue did with one written file of a batch.
enum CommitResult: Sendable {
    /// In place; durable once the report of a later sync says so (``CommitReport/earlier``).
    case placed(CompletedTransfer)
    /// Not in place: its sync or its placing failed.
    case failed(TransferFailure)
}

/// What one job of the commit queue did.
struct CommitReport: Sendable {
    /// Whether the files placed by earlier jobs are durable now: nil when none were waiting, else the outcome of
    /// the sync that covered them.
    var earlier: Result<Void, BargeSystemError>?
    /// What became of each file of this job's batch, in order (none for a sync alone).
    var results: [CommitResult] = []
}

/// Puts received files in place, in batches, with as few syncs as the crash guarantee allows: a batch's bytes
/// are made durable before its files are linked or renamed into place (sync 1), and the links before the files
/// are reported done (sync 2). A batch's sync 2 is the next batch's sync 1 when the engine has one ready (one sync
/// covers both); otherwise the engine asks for it alone (``syncPlaced()``). For each file a crash at any instant
/// leaves the old destination or the new one, never a mix.
///
/// Two stages on two queues, so that waiting for the disk never holds up the writing: ``write(_:)`` writes out
/// and checks each file of a batch (on the write queue) while the batch before it waits for its sync and is
/// placed (``commit(_:)``, on the commit queue).
///
/// `@unchecked Sendable`: its state is used only on the commit queue (one job at a time).
final class Committer: @unchecked Sendable {
    /// The directories of files placed but not yet made durable, one entry per file.
    private var placedDirectories: [SafeDirectory] = []

    /// Writes out and checks each file: its last bytes, its size and its SHA-256 (wrong content is discarded).
    static func write(_ files: [FileToCommit]) -> [Result<CompletedTransfer, TransferFailure>] {
        files.map(Self.verify)
    }

    /// Makes the bytes of written files (``write(_:)``) durable together with the files placed before, and places
    /// them.
    func commit(_ files: [(file: FileToCommit, done: CompletedTransfer)]) -> CommitReport {
        let earlier = self.placedDirectories
        self.placedDirectories = []
        let syncError = PartialFile.syncBytes(of: files.map(\.file.partial), andLinksIn: earlier)
        var report = CommitReport(earlier: earlier.isEmpty ? nil : syncError.map { .failure($0) } ?? .success(()))
        report.results = files.map { file, done in
            do throws(BargeSystemError) {
                if let syncError { throw syncError }
                try file.partial.place(mode: file.mode, owner: file.owner)
                file.partial.closeWhenPlaced()
                self.placedDirectories.append(file.partial.directory)
                return .placed(done)
            } catch {
                return .failed(
                    TransferFailure(
                        error.isTransient ? .transient : .permanent,
                        "cannot put the file in place: \(error)"
                    )
                )
            }
        }
        return report
    }

    /// Makes the files placed before durable (when no batch follows them to share its sync).
    func syncPlaced() -> CommitReport {
        let placed = self.placedDirectories
        self.placedDirectories = []
        guard !placed.isEmpty else { return CommitReport() }
        return CommitReport(earlier: PartialFile.syncLinks(in: placed).map { .failure($0) } ?? .success(()))
    }

    /// Writes out the file's last bytes and checks its size and SHA-256; wrong content is discarded.
    private static func verify(_ file: FileToCommit) -> Result<CompletedTransfer, TransferFailure> {
        let partial = file.partial
        do throws(BargeSystemError) {
            try partial.finishWriting(mode: file.mode)
        } catch {
            return .failure(TransferFailure(error.isTransient ? .transient : .permanent, "cannot write: \(error)"))
        }
        let size = partial.length
        if let expected = file.expectedSize, size != expected {
            partial.discard()
            return .failure(TransferFailure(.permanent, "size mismatch: expected \(expected) bytes, got \(size)"))
        }
        let digest = partial.digest()
        if let expected = file.expectedSHA256, expected != digest {
            partial.discard()
            return .failure(
                TransferFailure(
                    .permanent,
                    "hash mismatch: expected \(expected.prefix(8))…, got \((digest ?? "").prefix(8))…"
                )
            )
        }
        partial.recordVerifiedContent(sha256: digest)
        let validators =
            file.validators.isEmpty
            ? (partial.validator.flatMap(Validators.init(encoded:)) ?? Validators()) : file.validators
        return .success(
            CompletedTransfer(
                url: file.url,
                size: size,
                sha256: digest,
                validators: validators,
                transferred: file.transferred
            )
        )
    }
}
