import BargeCore
import CBargeLinux
import Crypto
import Glibc

/// The hidden file a download is written into (`.NAME.barge-partial`, beside the destination) until it is
/// verified and renamed into place.
///
/// Writes are buffered (one `write(2)` per MiB) and hashed as they arrive. The partial also carries the
/// response's validator in an extended attribute, so a later run can resume it with `If-Range` even without the
/// agent's store. Not thread-safe: owned by one transfer on the engine thread.
final class PartialFile {
    /// Where the partial lives.
    let directory: SafeDirectory
    /// The destination's file name.
    let name: String
    /// The open partial.
    let descriptor: Int32
    /// Content bytes so far, buffered ones included.
    private(set) var length: UInt64 = 0
    private var hasher = SHA256()
    private let buffer: UnsafeMutableRawBufferPointer
    private var buffered = 0

    static let bufferSize = 1 << 20
    static let validatorAttribute = "user.barge.validator"

    /// The partial's name for a destination file name.
    static func partialName(for name: String) -> String { ".\(name).barge-partial" }

    var partialName: String { Self.partialName(for: self.name) }
    var destinationPath: String { (self.directory.path == "/" ? "" : self.directory.path) + "/" + self.name }

    /// Opens (creating if needed) the partial for `destination`, creating missing directories.
    init(destination: String) throws(BargeSystemError) {
        let directoryPath = PathRules.directory(of: destination)
        self.name = PathRules.fileName(of: destination)
        self.directory = try SafeDirectory.open(directoryPath, create: true)
        self.descriptor = try self.directory.openFile(Self.partialName(for: self.name))
        self.buffer = .allocate(byteCount: Self.bufferSize, alignment: 4096)
    }

    deinit {
        close(self.descriptor)
        self.buffer.deallocate()
    }

    /// The bytes already on disk.
    func sizeOnDisk() throws(BargeSystemError) -> UInt64 {
        var info = stat()
        try systemCall("stat", self.partialName) { fstat(self.descriptor, &info) }
        return UInt64(info.st_size)
    }

    /// Prepares to resume: keeps the first `limit` bytes at most (all when nil), re-hashes them, and returns
    /// the offset to resume from.
    func prepareResume(keepingAtMost limit: UInt64?) throws(BargeSystemError) -> UInt64 {
        let onDisk = try self.sizeOnDisk()
        let keep = min(onDisk, limit ?? onDisk)
        if keep < onDisk {
            try systemCall("truncate", self.partialName) { ftruncate(self.descriptor, off_t(keep)) }
        }
        self.hasher = SHA256()
        var offset: UInt64 = 0
        while offset < keep {
            let want = Int(min(UInt64(Self.bufferSize), keep - offset))
            let got = try systemCall("read", self.partialName) {
                pread(self.descriptor, self.buffer.baseAddress, want, off_t(offset))
            }
            if got == 0 { break }
            self.hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: self.buffer[0..<got]))
            offset += UInt64(got)
        }
        self.length = offset
        self.buffered = 0
        return offset
    }

    /// Empties the partial to start over.
    func reset() throws(BargeSystemError) {
        self.buffered = 0
        try systemCall("truncate", self.partialName) { ftruncate(self.descriptor, 0) }
        self.length = 0
        self.hasher = SHA256()
        self.validator = nil
    }

    /// Appends received bytes (buffered, hashed).
    func append(_ bytes: UnsafeRawBufferPointer) throws(BargeSystemError) {
        self.hasher.update(bufferPointer: bytes)
        var rest = bytes
        while !rest.isEmpty {
            let room = Self.bufferSize - self.buffered
            let take = min(room, rest.count)
            (self.buffer.baseAddress! + self.buffered).copyMemory(from: rest.baseAddress!, byteCount: take)
            self.buffered += take
            self.length += UInt64(take)
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
            if self.buffered == Self.bufferSize { try self.flush() }
        }
    }

    /// Writes buffered bytes to the file.
    func flush() throws(BargeSystemError) {
        var written = 0
        let fileOffset = self.length - UInt64(self.buffered)
        while written < self.buffered {
            let result = try systemCall("write", self.destinationPath) {
                pwrite(
                    self.descriptor,
                    self.buffer.baseAddress! + written,
                    self.buffered - written,
                    off_t(fileOffset + UInt64(written))
                )
            }
            written += result
        }
        self.buffered = 0
    }

    /// Flushes and `fsync`s, so the bytes counted in ``length`` are on disk.
    func sync() throws(BargeSystemError) {
        try self.flush()
        try systemCall("fsync", self.destinationPath) { fsync(self.descriptor) }
    }

    /// The SHA-256 of the content so far, lowercase hex.
    func digest() -> String {
        self.hasher.finalize().map { byte in
            let digits = Array("0123456789abcdef")
            return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
        }.joined()
    }

    /// The validator of the response the content came from (`etag:"…"` or `last-modified:…`), kept in an
    /// extended attribute; nil when unknown or when the file system keeps no extended attributes.
    var validator: String? {
        get {
            var storage = [UInt8](repeating: 0, count: 1024)
            let count = CBargeLinux_fgetxattr(self.descriptor, Self.validatorAttribute, &storage, storage.count)
            guard count > 0 else { return nil }
            return String(decoding: storage[0..<count], as: UTF8.self)
        }
        set {
            if let newValue {
                _ = CBargeLinux_fsetxattr(self.descriptor, Self.validatorAttribute, newValue, newValue.utf8.count)
            } else {
                _ = CBargeLinux_fremovexattr(self.descriptor, Self.validatorAttribute)
            }
        }
    }

    /// Makes the partial the destination: `fsync`, mode and owner, atomic rename, directory `fsync`.
    ///
    /// A crash at any instant leaves either the old destination or the new one, never a mix.
    func commit(mode: UInt32, owner: (uid: UInt32, gid: UInt32)?) throws(BargeSystemError) {
        try self.sync()
        self.validator = nil
        try systemCall("chmod", self.destinationPath) { fchmod(self.descriptor, mode_t(mode)) }
        if let owner {
            try systemCall("chown", self.destinationPath) { fchown(self.descriptor, owner.uid, owner.gid) }
        }
        try self.directory.rename(self.partialName, to: self.name)
        try self.directory.sync()
    }

    /// Removes the partial.
    func discard() {
        try? self.directory.remove(self.partialName)
        self.length = 0
        self.buffered = 0
    }
}
