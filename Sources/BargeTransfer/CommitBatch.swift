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

/// What the commit queue did with one file.
enum CommitResult: Sendable {
    /// Verified, durable and in place.
    case committed(CompletedTransfer)
    /// Not in place: a write error, or wrong content (whose partial is then discarded).
    case failed(TransferFailure)
}

/// Received files that the commit queue verifies and puts in place together, off the engine thread.
///
/// Each file's buffered bytes are written and its size and SHA-256 checked; then one file alone is committed with
/// `fsync`s, several share two file-system syncs (``PartialFile/commit(_:)``). The crash guarantee is the same
/// either way: the old destination or the new one, never a mix.
struct CommitBatch: Sendable {
    let files: [FileToCommit]

    func commit() -> [CommitResult] {
        var results = [CommitResult?](repeating: nil, count: self.files.count)
        var verified: [(index: Int, done: CompletedTransfer)] = []
        for (index, file) in self.files.enumerated() {
            switch Self.verify(file) {
            case .success(let done): verified.append((index, done))
            case .failure(let failure): results[index] = .failed(failure)
            }
        }
        let errors: [BargeSystemError?]
        if verified.count == 1 {
            let file = self.files[verified[0].index]
            do throws(BargeSystemError) {
                try file.partial.commit(mode: file.mode, owner: file.owner)
                errors = [nil]
            } catch {
                errors = [error]
            }
        } else {
            errors = PartialFile.commit(
                verified.map { (self.files[$0.index].partial, self.files[$0.index].mode, self.files[$0.index].owner) }
            )
        }
        for ((index, done), error) in zip(verified, errors) {
            if let error {
                results[index] = .failed(
                    TransferFailure(
                        error.isTransient ? .transient : .permanent,
                        "cannot put the file in place: \(error)"
                    )
                )
            } else {
                results[index] = .committed(done)
            }
        }
        return results.map { $0! }
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
                TransferFailure(.permanent, "hash mismatch: expected \(expected.prefix(8))…, got \(digest.prefix(8))…")
            )
        }
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
