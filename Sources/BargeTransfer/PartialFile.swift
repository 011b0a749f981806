import BargeCore
import CBargeLinux
import Crypto
import Dispatch
import Glibc
import Synchronization

/// The hidden file a download is written into (`.NAME.barge-partial`, beside the destination) until it is
/// verified and renamed into place.
///
/// A new partial is not even created until its first bytes go to disk: then it is made without a name
/// (O_TMPFILE), and named when those bytes go to disk before the commit (a checkpoint, a stop that keeps it, a
/// file that outgrows its first buffer). A small file that arrives whole is created and written by the write
/// queue and linked straight to its destination by the commit queue, off the engine thread, with no partial name
/// made and renamed.
///
/// Writes are buffered and handed off a MiB at a time to a shared disk queue, which hashes and writes them while
/// the engine thread receives the next bytes: hashing and the kernel's copy into the page cache then run on the
/// other core instead of stalling the network. The partial also carries the response's validator in an extended
/// attribute, so a later run can resume it with `If-Range` even without the agent's store.
///
/// `@unchecked Sendable`: owned by one transfer on the engine thread; the hasher and the write offset are only
/// touched by blocks on `diskQueue`, and the engine thread reads them after `drain()`; the first disk error is
/// behind a lock (the sync queue sets it too).
final class PartialFile: @unchecked Sendable {
    /// Where the partial lives.
    let directory: SafeDirectory
    /// The destination's file name.
    let name: String
    /// The open partial; -1 while a new one is not created yet.
    private(set) var descriptor: Int32
    /// Its size when it was opened: what an earlier run left (0 for a new partial).
    let sizeWhenOpened: UInt64
    /// Not linked into its directory yet (see the type's note).
    private(set) var isUnnamed = false
    /// Whether new partials start unnamed: where /proc/self/fd is there to name them by, and until naming one
    /// failed for another reason than a taken name.
    static let startUnnamed = Atomic<Bool>(access("/proc/self/fd", X_OK) == 0)
    /// Content bytes so far, buffered ones included.
    private(set) var length: UInt64 = 0
    /// The content's SHA-256 so far; nil when the transfer needs no hash (none expected, none asked for).
    private var hasher: SHA256?
    /// Where received bytes gather; empty (`count` 0) once a file written for its commit gave it back.
    private var buffer: UnsafeMutableRawBufferPointer
    private var buffered = 0
    /// The buffer's first bytes already hashed as they arrived: a file's first buffer is hashed by `append`,
    /// while its bytes are in the cache, and a small file's hash is done when it completes; later buffers are
    /// hashed on the disk queue, so a large file's hashing stays off the network thread.
    private var bufferHashed = 0
    /// Bytes handed to the disk queue so far (the file offset of the buffer's first byte).
    private var handedOff: UInt64 = 0
    /// The first error a queued write met; reported by the next append, flush or sync.
    private var diskError: BargeSystemError? {
        get { self.firstDiskError.withLock { $0 } }
        set { self.firstDiskError.withLock { $0 = newValue } }
    }
    /// Written by the disk and sync queues, read by the engine thread.
    private let firstDiskError = Mutex<BargeSystemError?>(nil)
    private let inFlight = DispatchGroup()
    /// At most this many buffers wait on the disk queue per file: back-pressure when the disk is slower.
    private let slots = DispatchSemaphore(value: 4)

    static let bufferSize = 1 << 20
    /// Small files never need more; a file that outgrows it moves on to `bufferSize` buffers.
    static let firstBufferSize = 64 << 10
    /// One queue for all partials: the disk is one resource, and small files never wait on it.
    static let diskQueue = DispatchQueue(label: "barge.disk", qos: .utility)
    /// Where background checkpoints wait for their `fsync`, apart from the writes.
    static let syncQueue = DispatchQueue(label: "barge.sync", qos: .utility, attributes: .concurrent)
    static let validatorAttribute = "user.barge.validator"
    /// Set on a resumable partial once its content is verified, before it is placed: `size=N sha256=HEX` (the
    /// hash only when the transfer kept one). The file in place keeps it (and its validator), so a run that finds
    /// its partial gone can tell that the destination is that finished file (``finishedEarlier(for:)``).
    static let contentAttribute = "user.barge.content"

    /// The user a placed file goes to (a job added by a local user), whose partials may be theirs.
    private let owner: UInt32?

    /// Refuses a partial that barge did not make for this job: one with other names (a hard link someone planted
    /// to make the agent truncate, write and hand over another file) or of another owner than the agent's user or
    /// the job's (someone else's file in a shared directory).
    static func checkOwnPartial(_ descriptor: Int32, path: String, owner: UInt32?) throws(BargeSystemError) {
        var info = stat()
        try systemCall("fstat", path) { fstat(descriptor, &info) }
        // The owner only of a partial that holds bytes: an empty one was made just now, and file systems that set
        // owners themselves (CIFS, vfat, NFS with root squashed, FUSE) give a new file theirs.
        guard info.st_nlink <= 1, info.st_size == 0 || info.st_uid == geteuid() || info.st_uid == owner else {
            throw BargeSystemError(
                errno: EPERM,
                function: "open",
                subject: path,
                explanation: "not a partial barge made (owner uid \(info.st_uid), \(info.st_nlink) links): remove it"
            )
        }
    }

    /// The partial's name for a destination file name.
    static func partialName(for name: String) -> String { ".\(name).barge-partial" }

    var partialName: String { Self.partialName(for: self.name) }
    var destinationPath: String { (self.directory.path == "/" ? "" : self.directory.path) + "/" + self.name }

    /// Opens (creating if needed) the partial for `destination`, creating missing directories. `hashing`: keep
    /// the content's SHA-256. `resumable`: look for a partial an earlier run left (see
    /// ``TransferRequest/mayHaveEarlierPartial``).
    init(
        destination: String,
        directories: DirectoryCache,
        hashing: Bool,
        resumable: Bool,
        owner: UInt32? = nil
    ) throws(BargeSystemError) {
        self.owner = owner
        let directoryPath = PathRules.directory(of: destination)
        self.name = PathRules.fileName(of: destination)
        self.directory = try directories.open(directoryPath)
        self.hasher = hashing ? SHA256() : nil
        let partialName = Self.partialName(for: self.name)
        if Self.startUnnamed.load(ordering: .relaxed), !resumable || self.directory.isFree(partialName) {
            (self.descriptor, self.sizeWhenOpened, self.isUnnamed) = (-1, 0, true)
        } else {
            var (descriptor, size) = try self.directory.openFile(partialName)
            do {
                try SafeDirectory.lock(descriptor, path: self.directory.path + "/" + partialName)
                try Self.checkOwnPartial(descriptor, path: self.directory.path + "/" + partialName, owner: owner)
            } catch {
                close(descriptor)
                throw error
            }
            if !resumable, size > 0 {
                // Not this transfer's to resume: start it over.
                guard ftruncate(descriptor, 0) == 0 else {
                    let error = BargeSystemError(errno: errno, function: "truncate", subject: partialName)
                    close(descriptor)
                    throw error
                }
                size = 0
            }
            (self.descriptor, self.sizeWhenOpened) = (descriptor, size)
        }
        self.buffer = BufferPool.first.take()
    }

    deinit {
        self.inFlight.wait()
        if self.descriptor >= 0 { close(self.descriptor) }
        BufferPool.giveBack(self.buffer)
    }

    /// The buffer, taken again if ``finishWriting(mode:)`` gave it back (a commit that failed, then a resume).
    private func takeBufferIfGiven() {
        if self.buffer.count == 0 { self.buffer = BufferPool.first.take() }
    }

    /// The bytes already on disk.
    func sizeOnDisk() throws(BargeSystemError) -> UInt64 {
        guard self.descriptor >= 0 else { return 0 }
        var info = stat()
        try systemCall("stat", self.partialName) { fstat(self.descriptor, &info) }
        return UInt64(info.st_size)
    }

    /// Prepares to resume: keeps the first `limit` bytes at most (all when nil), re-hashes them, and returns
    /// the offset to resume from.
    func prepareResume(keepingAtMost limit: UInt64?) throws(BargeSystemError) -> UInt64 {
        try self.flush()
        try self.drain()
        self.takeBufferIfGiven()
        let onDisk = try self.sizeOnDisk()
        let keep = min(onDisk, limit ?? onDisk)
        if keep < onDisk {
            try systemCall("truncate", self.partialName) { ftruncate(self.descriptor, off_t(keep)) }
        }
        var offset = keep  // without a hash to keep, the bytes on disk stand as they are
        if self.hasher != nil {
            var hasher = SHA256()
            offset = try Self.hash(self.descriptor, upTo: keep, into: &hasher, using: self.buffer, self.partialName)
            self.hasher = hasher
            // Reading them brought those bytes into the page cache: they are on disk, let them go.
            _ = posix_fadvise(self.descriptor, 0, off_t(offset), POSIX_FADV_DONTNEED)
        }
        (self.length, self.handedOff, self.buffered, self.bufferHashed) = (offset, offset, 0, 0)
        self.droppedUpTo = offset
        return offset
    }

    /// Empties the partial to start over.
    func reset() throws(BargeSystemError) {
        self.inFlight.wait()
        self.diskError = nil
        self.buffered = 0
        self.bufferHashed = 0
        if self.descriptor >= 0 {
            try systemCall("truncate", self.partialName) { ftruncate(self.descriptor, 0) }
        }
        self.length = 0
        self.handedOff = 0
        self.droppedUpTo = 0
        if self.hasher != nil { self.hasher = SHA256() }
        self.pendingValidator = nil
        self.validator = nil
        self.resets += 1
    }

    /// Appends received bytes (buffered, hashed).
    func append(_ bytes: UnsafeRawBufferPointer) throws(BargeSystemError) {
        if let error = self.diskError { throw error }
        self.takeBufferIfGiven()
        var rest = bytes
        while !rest.isEmpty {
            let room = self.buffer.count - self.buffered
            let take = min(room, rest.count)
            (self.buffer.baseAddress! + self.buffered).copyMemory(from: rest.baseAddress!, byteCount: take)
            if self.handedOff == 0, self.bufferHashed == self.buffered, self.hasher != nil {
                // Nothing handed to the disk queue yet: the hasher is this thread's alone.
                self.hasher!.update(bufferPointer: UnsafeRawBufferPointer(start: rest.baseAddress!, count: take))
                self.bufferHashed += take
            }
            self.buffered += take
            self.length += UInt64(take)
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
            if self.buffered == self.buffer.count { try self.flush() }
        }
    }

    /// Hands the buffered bytes to the disk queue (hashed, then written there) and starts a fresh buffer; or,
    /// for a small file whose bytes all fit the first buffer, hashes and writes them here, which is cheaper than a
    /// hop to another thread.
    /// Bytes written before the commit name the partial first, so a later run can resume it; `forCommit` writes
    /// an unnamed one's last bytes without naming it.
    func flush(forCommit: Bool = false, mode: UInt32? = nil) throws(BargeSystemError) {
        if let error = self.diskError { throw error }
        guard self.buffered > 0 else { return }
        try self.create(finalMode: forCommit ? mode : nil)
        if !forCommit { try self.giveName(self.partialName) }
        if self.handedOff == 0, self.buffered < self.buffer.count {
            self.inFlight.wait()
            let chunk = UnsafeRawBufferPointer(rebasing: self.buffer[0..<self.buffered])
            self.hasher?.update(bufferPointer: UnsafeRawBufferPointer(rebasing: chunk[self.bufferHashed...]))
            try self.write(chunk, at: 0, startWriteback: false)
            self.handedOff = UInt64(self.buffered)
            self.buffered = 0
            self.bufferHashed = 0
            return
        }
        self.writePendingValidator()
        let owned = HandedOffBuffer(memory: self.buffer, count: self.buffered)
        let hashed = self.bufferHashed
        let offset = self.handedOff
        self.handedOff += UInt64(self.buffered)
        self.buffer = BufferPool.large.take()
        self.buffered = 0
        self.bufferHashed = 0
        self.slots.wait()
        self.inFlight.enter()
        Self.diskQueue.async {
            let chunk = UnsafeRawBufferPointer(rebasing: owned.memory[0..<owned.count])
            defer {
                BufferPool.giveBack(owned.memory)
                self.slots.signal()
                self.inFlight.leave()
            }
            self.hasher?.update(bufferPointer: UnsafeRawBufferPointer(rebasing: chunk[hashed...]))
            guard self.diskError == nil else { return }
            do throws(BargeSystemError) {
                try self.write(chunk, at: offset)
            } catch {
                self.diskError = error
            }
        }
    }

    /// Waits until every handed-off buffer is written; throws the first write error.
    func drain() throws(BargeSystemError) {
        self.inFlight.wait()
        if let error = self.diskError { throw error }
    }

    private func write(
        _ chunk: UnsafeRawBufferPointer,
        at offset: UInt64,
        startWriteback: Bool = true
    ) throws(BargeSystemError) {
        var written = 0
        while written < chunk.count {
            let result = try systemCall("write", self.destinationPath) {
                pwrite(
                    self.descriptor,
                    chunk.baseAddress! + written,
                    chunk.count - written,
                    off_t(offset + UInt64(written))
                )
            }
            written += result
        }
        guard startWriteback else { return }
        // Start writing this range to disk now, so the final fsync finds little left to do.
        _ = CBargeLinux_start_writeback(self.descriptor, off_t(offset), off_t(chunk.count))
        // And drop what is on disk from the page cache, `writeBehind` back (see there), in whole pages.
        let end = offset + UInt64(chunk.count)
        guard end >= self.droppedUpTo + Self.writeBehind + UInt64(Self.bufferSize) else { return }
        let from = self.droppedUpTo & ~Self.pageMask
        let upTo = (end - Self.writeBehind) & ~Self.pageMask
        self.droppedUpTo = upTo
        self.inFlight.enter()
        Self.dropQueue.async {
            defer { self.inFlight.leave() }
            if CBargeLinux_drop_written(self.descriptor, off_t(from), off_t(upTo - from)) != 0 {
                // The wait took the file's only report of a lost write-back: keep it (see `lostWriteBack`).
                self.diskError = BargeSystemError(
                    errno: errno,
                    function: "sync_file_range",
                    subject: self.destinationPath
                )
            }
        }
    }

    private static let pageMask = UInt64(max(4096, sysconf(Int32(_SC_PAGESIZE)))) - 1
    /// Where ranges wait for their write-back before they leave the page cache: not on the disk queue, whose next
    /// writes (and, when its slots are full, the engine thread) would wait with them on a disk slower than the
    /// network.
    private static let dropQueue = DispatchQueue(label: "barge.drop-behind", qos: .utility)

    /// Whether a write-back of this partial failed (an `fsync` or a wait for it reported it): the kernel reports
    /// that once, the bytes on disk are not what was written, and no later sync would say so. The partial is then
    /// discarded, not kept for a resume.
    var lostWriteBack: Bool {
        guard let function = self.diskError?.function else { return false }
        return function == "fsync" || function == "sync_file_range"
    }

    /// How far behind its newest write a large file is dropped from the page cache: its ranges further back are
    /// waited on until they are on disk (their write-back started when they were written), then dropped. While the
    /// disk keeps up, a download therefore holds about this much of the page cache, not the whole file (a slower
    /// disk holds it back as before, through the kernel's limits on dirty pages): it does not push the
    /// machine's own working set out of memory, and the pages it frees are the ones its next writes reuse, where
    /// fresh memory costs more than the write (on this project's VM, writing 1 GiB into new page cache took 2.0 s,
    /// and 0.6 s with the cache dropped behind; docs/transfers.md). The final `fsync` is still what makes the
    /// file durable.
    static let writeBehind: UInt64 = 8 << 20
    /// Where the file is dropped from the page cache up to (the disk queue's, like the writes; page-aligned once
    /// a drop was made).
    private var droppedUpTo: UInt64 = 0

    /// Flushes and `fsync`s, so the bytes counted in ``length`` are on disk.
    func sync() throws(BargeSystemError) {
        try self.keepForResume()
        guard self.descriptor >= 0 else { return }  // nothing was ever written
        try systemCall("fsync", self.destinationPath) { fsync(self.descriptor) }
    }

    /// Makes the bytes so far durable without waiting: they are handed to the disk queue with an `fsync` after
    /// them, and `durable` runs there with the offset once it holds (not at all when a write or the sync failed).
    /// The engine thread goes on receiving meanwhile. Returns the offset the sync will cover.
    @discardableResult
    func syncInBackground(
        _ durable: @escaping @Sendable (_ offset: UInt64, _ resets: Int) -> Void
    ) throws(BargeSystemError) -> UInt64 {
        try self.handOffForKeeping()
        let offset = self.length
        let resets = self.resets
        guard self.descriptor >= 0 else { return offset }
        self.inFlight.enter()
        Self.diskQueue.async {
            // Here every write handed off before is done (one serial queue); the fsync itself runs on the sync
            // queue, so other files' writes go on meanwhile.
            guard self.diskError == nil else {
                self.inFlight.leave()
                return
            }
            Self.syncQueue.async {
                defer { self.inFlight.leave() }
                guard fsync(self.descriptor) == 0 else {
                    // Linux reports a lost write-back once: keep it, so no later sync claims those bytes.
                    self.diskError = BargeSystemError(errno: errno, function: "fsync", subject: self.destinationPath)
                    return
                }
                durable(offset, resets)
            }
        }
        return offset
    }

    /// How many times the partial was emptied to start over (a checkpoint of an earlier round is stale).
    private(set) var resets = 0

    /// Where the content ends, when the response says and the file outgrows its first buffer: the blocks up to it
    /// are reserved in one allocation when the file is created (or at once for a partial already there).
    private var reservedEnd: UInt64?

    /// Reserves the disk blocks up to `end` bytes (`fallocate`, keeping the size) for a file larger than its
    /// first buffer: the file is laid out in a few long extents at once, instead of a block range allocated
    /// for every megabyte written back, which cost barge's disk thread the most system time on a crowded file
    /// system. A failure (no room, no support) changes nothing: the writes report a full disk as before.
    func reserve(upTo end: UInt64) {
        guard end > UInt64(Self.firstBufferSize) else { return }
        self.reservedEnd = end
        if self.descriptor >= 0 { self.applyReservation() }
    }

    private func applyReservation() {
        guard let end = self.reservedEnd else { return }
        self.reservedEnd = nil
        let start = self.handedOff
        guard end > start else { return }
        _ = CBargeLinux_reserve(self.descriptor, off_t(start), off_t(end - start))
    }

    /// Creates a new partial when its first bytes are about to be written: unnamed where the file system allows,
    /// else under its partial name. An unnamed one made just before its commit takes the destination's mode at
    /// once (nobody can open it before it is linked), which spares a `chmod`, unless the umask would strip it.
    private func create(finalMode: UInt32? = nil) throws(BargeSystemError) {
        guard self.descriptor < 0 else { return }
        let mode = finalMode.flatMap { Self.umaskKeeps($0) ? mode_t($0) : nil }
        if let unnamed = self.directory.openUnnamedFile(mode: mode ?? 0o600) {
            // Nobody else can open it yet: the lock is free, and is held once it has a name.
            _ = flock(unnamed, LOCK_EX | LOCK_NB)
            self.descriptor = unnamed
            self.createdMode = mode
            self.applyReservation()
            return
        }
        let (descriptor, size) = try self.directory.openFile(self.partialName)
        do {
            try SafeDirectory.lock(descriptor, path: self.directory.path + "/" + self.partialName)
            try Self.checkOwnPartial(descriptor, path: self.directory.path + "/" + self.partialName, owner: self.owner)
        } catch {
            close(descriptor)
            throw error
        }
        self.descriptor = descriptor
        self.isUnnamed = false
        if size > 0 {  // left by a run that is gone (its lock is free): start it over
            try systemCall("truncate", self.partialName) { ftruncate(descriptor, 0) }
        }
        self.applyReservation()
    }

    /// Writes out what is buffered and creates the file even when it is empty: what a commit needs. `mode` is the
    /// destination's, for a file created now.
    ///
    /// The buffer goes back to the pool: in a burst of small files, files wait for their commit by the hundred,
    /// and holding a buffer each made the pool run dry and every new file's buffer cost fresh pages.
    func finishWriting(mode: UInt32? = nil) throws(BargeSystemError) {
        try self.flush(forCommit: true, mode: mode)
        try self.create(finalMode: mode)
        try self.drain()
        BufferPool.giveBack(self.buffer)
        self.buffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    }

    /// The mode an unnamed partial was created with when that is already the destination's; nil otherwise.
    private var createdMode: mode_t?

    /// The process's umask (`/proc/self/status`; reading it with umask(2) would change it for other threads).
    static let processUmask: mode_t? = {
        let descriptor = open("/proc/self/status", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = read(descriptor, &bytes, bytes.count)
        guard count > 0 else { return nil }
        let text = String(decoding: bytes[0..<count], as: UTF8.self)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Umask:") }) else { return nil }
        return mode_t(line.dropFirst("Umask:".count).filter { $0 != " " && $0 != "\t" }, radix: 8)
    }()

    /// Whether a file created with `mode` gets exactly that mode (no special bits, none the umask strips).
    static func umaskKeeps(_ mode: UInt32) -> Bool {
        guard let umask = Self.processUmask else { return false }
        return mode & 0o7000 == 0 && mode_t(mode) & umask == 0
    }

    /// The SHA-256 of the content so far, lowercase hex; call after ``drain()``.
    func digest() -> String? {
        self.inFlight.wait()
        return self.hasher.map { Self.hex($0.finalize()) }
    }

    /// A digest as lowercase hex.
    private static func hex(_ digest: SHA256.Digest) -> String {
        String(unsafeUninitializedCapacity: 64) { text in
            let digits: StaticString = "0123456789abcdef"
            var index = 0
            for byte in digest {
                text[index] = digits.utf8Start[Int(byte >> 4)]
                text[index + 1] = digits.utf8Start[Int(byte & 0xF)]
                index += 2
            }
            return index
        }
    }

    /// The validator to record with the first bytes that reach the disk (a file that completes within its first
    /// buffer never needs one written).
    var pendingValidator: String?
    private var validatorWritten = false

    /// Writes out everything received, with its validator, so a later run can resume from it (no `fsync`).
    func keepForResume() throws(BargeSystemError) {
        try self.handOffForKeeping()
        try self.drain()
    }

    /// Hands everything received to the disk queue under the partial's name, with its validator (no waiting). An
    /// unnamed partial whose bytes were written for a commit that did not happen is named too, so they survive.
    private func handOffForKeeping() throws(BargeSystemError) {
        try self.flush()
        if self.isUnnamed, self.descriptor >= 0 { try self.giveName(self.partialName) }
        self.writePendingValidator()
    }

    /// Records the pending validator once the file exists (until then it stays pending).
    private func writePendingValidator() {
        guard let pending = self.pendingValidator, self.descriptor >= 0 else { return }
        self.pendingValidator = nil
        self.validator = pending
    }

    /// The validator of the response the content came from (`etag:"…"` or `last-modified:…`), kept in an
    /// extended attribute; nil when unknown or when the file system keeps no extended attributes.
    var validator: String? {
        get { self.descriptor >= 0 ? Self.attribute(Self.validatorAttribute, of: self.descriptor) : nil }
        set {
            guard self.descriptor >= 0 else { return }
            if let newValue {
                _ = CBargeLinux_fsetxattr(self.descriptor, Self.validatorAttribute, newValue, newValue.utf8.count)
                self.validatorWritten = true
            } else if self.validatorWritten {
                _ = CBargeLinux_fremovexattr(self.descriptor, Self.validatorAttribute)
                self.validatorWritten = false
            }
        }
    }

    /// Records the verified content of a resumable partial (one that was named for resuming: a small file
    /// committed unnamed needs no record) in ``contentAttribute``, before its bytes are synced and it is placed.
    func recordVerifiedContent(sha256: String?) {
        guard !self.isUnnamed, self.descriptor >= 0 else { return }
        let value = "size=\(self.length)" + (sha256.map { " sha256=\($0)" } ?? "")
        _ = CBargeLinux_fsetxattr(self.descriptor, Self.contentAttribute, value, value.utf8.count)
    }

    /// The file at the destination, when it is the download this partial's transfer finished before (placed,
    /// but its completion not recorded: the agent was killed in between); nil otherwise. It must carry
    /// ``contentAttribute`` with its current size; have the request's mode and owner (the agent's user when none);
    /// match the expected size; and, when the request has the validators of the copy it replaces (a refresh), carry
    /// other ones: the old copy is never taken for the new. With an expected SHA-256 the content is hashed again
    /// (the attribute is only a hint: whoever may write the file may set it). Reads the whole file then: run it off
    /// the engine thread.
    func finishedEarlier(for request: TransferRequest) -> CompletedTransfer? {
        guard let (descriptor, info) = self.directory.openExisting(self.name) else { return nil }
        defer { close(descriptor) }
        guard info.st_mode & 0o7777 == mode_t(request.mode), info.st_uid == request.owner?.uid ?? geteuid(),
            request.owner.map({ info.st_gid == $0.gid }) ?? true,
            let record = Self.attribute(Self.contentAttribute, of: descriptor), record.hasPrefix("size="),
            let recordedSize = UInt64(record.dropFirst(5).prefix { $0 != " " }),
            recordedSize == UInt64(info.st_size), request.expectedSize.map({ $0 == recordedSize }) ?? true
        else { return nil }
        let validator = Self.attribute(Self.validatorAttribute, of: descriptor)
        if let current = request.currentValidators {
            guard let validator, validator != current.encoded else { return nil }
        }
        var sha256: String?
        if let expected = request.sha256 {
            // This partial's first buffer is free: nothing is received into it before this check is done.
            self.takeBufferIfGiven()
            var hasher = SHA256()
            guard
                (try? Self.hash(descriptor, upTo: nil, into: &hasher, using: self.buffer, self.destinationPath))
                    != nil, Self.hex(hasher.finalize()) == expected
            else { return nil }
            sha256 = expected
        }
        return CompletedTransfer(
            url: request.sources[0],
            size: recordedSize,
            sha256: sha256,
            validators: validator.flatMap(Validators.init(encoded:)) ?? Validators(),
            transferred: 0
        )
    }

    /// Feeds `hasher` an open file's content from its start, up to `limit` bytes (all when nil), read through
    /// `buffer`; returns the bytes read.
    private static func hash(
        _ descriptor: Int32,
        upTo limit: UInt64?,
        into hasher: inout SHA256,
        using buffer: UnsafeMutableRawBufferPointer,
        _ subject: @autoclosure () -> String
    ) throws(BargeSystemError) -> UInt64 {
        var offset: UInt64 = 0
        while offset < limit ?? .max {
            let want = Int(min(UInt64(buffer.count), (limit ?? .max) - offset))
            let got = try systemCall("read", subject()) { pread(descriptor, buffer.baseAddress, want, off_t(offset)) }
            if got == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<got]))
            offset += UInt64(got)
        }
        return offset
    }

    /// The extended attribute `name` of an open file (up to 1 KiB); nil when it has none.
    private static func attribute(_ name: String, of descriptor: Int32) -> String? {
        var storage = [UInt8](repeating: 0, count: 1024)
        let count = CBargeLinux_fgetxattr(descriptor, name, &storage, storage.count)
        return count > 0 ? String(decoding: storage[0..<count], as: UTF8.self) : nil
    }

    /// Makes the bytes of `partials` durable, and with them the links made in `linked` directories before: one
    /// `fsync` for a single file and nothing else, else one `syncfs` per file system (a directory of each stands
    /// for it). The partials' bytes must be written (``finishWriting(mode:)``).
    static func syncBytes(of partials: [PartialFile], andLinksIn linked: [SafeDirectory]) -> BargeSystemError? {
        if partials.count == 1, linked.isEmpty {
            let partial = partials[0]
            guard fsync(partial.descriptor) == 0 else {
                return BargeSystemError(errno: errno, function: "fsync", subject: partial.destinationPath)
            }
            return nil
        }
        return Self.syncFileSystems(of: partials.map(\.directory) + linked)
    }

    /// Makes the links made in `linked` directories durable (one entry per link): the directory's `fsync` for a
    /// single link, else one `syncfs` per file system.
    static func syncLinks(in linked: [SafeDirectory]) -> BargeSystemError? {
        if linked.count == 1 {
            do throws(BargeSystemError) { try linked[0].sync() } catch { return error }
            return nil
        }
        return Self.syncFileSystems(of: linked)
    }

    private static func syncFileSystems(of directories: [SafeDirectory]) -> BargeSystemError? {
        var fileSystems = Set<UInt64>()
        var seen = Set<ObjectIdentifier>()
        for directory in directories where seen.insert(ObjectIdentifier(directory)).inserted {
            let error: Int32
            if let device = directory.device {
                guard fileSystems.insert(device).inserted else { continue }
                error = SharedSync.shared.sync(device: device, through: directory.descriptor)
            } else {
                // A directory without a device number is synced on its own.
                error = CBargeLinux_syncfs(directory.descriptor) == 0 ? 0 : errno
            }
            guard error == 0 else { return BargeSystemError(errno: error, function: "syncfs", subject: directory.path) }
        }
        return nil
    }

    /// Puts the partial in place once its bytes are durable: applies mode and owner, then links or renames it to
    /// the destination atomically. The link is durable after ``syncLinks(in:)`` (or the next ``syncBytes``).
    func place(mode: UInt32, owner: (uid: UInt32, gid: UInt32)?) throws(BargeSystemError) {
        self.pendingValidator = nil
        if self.createdMode != mode_t(mode) {
            try systemCall("chmod", self.destinationPath) { fchmod(self.descriptor, mode_t(mode)) }
        }
        if let owner {
            try systemCall("chown", self.destinationPath) { fchown(self.descriptor, owner.uid, owner.gid) }
        }
        if self.isUnnamed {
            // No destination yet: the link is the whole commit. One there: name the partial, then rename over it.
            do throws(BargeSystemError) {
                try self.giveName(self.name)
                self.isPlaced = true
                return
            } catch  where error.errno == EEXIST {
                try self.giveName(self.partialName)
            }
        }
        try self.directory.rename(self.partialName, to: self.name)
        self.isPlaced = true
    }

    /// Closes the file once it is in place and durable data-wise (on the commit queue, which is done with it):
    /// the engine thread, which drops the partial later, then has no `close` to make per file. The content of a
    /// file larger than a first buffer, clean now, leaves the page cache first, as a large file's does while it is
    /// written (see ``writeBehind``). A small file's stays, for the kernel to reclaim like any clean page: dropping
    /// it cost about as much as writing it (`fadvise` 15-40 µs a file; 2,000 files of 16 KiB took 20 ms more
    /// system time with it), and its few pages are no burden.
    func closeWhenPlaced() {
        guard self.isPlaced, self.descriptor >= 0 else { return }
        if self.length > UInt64(Self.firstBufferSize) { _ = posix_fadvise(self.descriptor, 0, 0, POSIX_FADV_DONTNEED) }
        close(self.descriptor)
        self.descriptor = -1
    }

    /// In place at the destination (a later failure, a sync's, does not make it a partial again): a further
    /// attempt needs a new partial, never this file, which is the destination now.
    private(set) var isPlaced = false

    /// Whether a further attempt must open a new partial: this one was discarded, or is the destination now.
    var needsReplacing: Bool { self.isDiscarded || self.isPlaced }

    /// Links an unnamed partial as `name`; a partial name already taken (a file left there since the open) is
    /// replaced. A failure for any other reason stops new partials from starting unnamed.
    private func giveName(_ name: String) throws(BargeSystemError) {
        guard self.isUnnamed else { return }
        var error = self.directory.link(self.descriptor, as: name)
        if error == EEXIST, name == self.partialName {
            // A partial left there since the open: replaced if it is stale, never while another transfer holds it.
            guard self.directory.removePartial(name) else {
                throw BargeSystemError(
                    errno: EBUSY,
                    function: "lock",
                    subject: self.directory.path + "/" + name,
                    explanation: "another transfer is writing it"
                )
            }
            error = self.directory.link(self.descriptor, as: name)
        }
        guard error == 0 else {
            if error != EEXIST { Self.startUnnamed.store(false, ordering: .relaxed) }
            throw BargeSystemError(errno: error, function: "link", subject: self.directory.path + "/" + name)
        }
        self.isUnnamed = false
    }

    /// Closes the partial's file, and so gives up its lock, once no write is in flight: a transfer that stopped
    /// leaves the partial free for the next one, which may start as soon as it hears of the stop.
    func release() {
        self.inFlight.wait()
        guard self.descriptor >= 0 else { return }
        close(self.descriptor)
        self.descriptor = -1
    }

    /// Removed from its directory by ``discard()``: a further attempt needs a new partial.
    private(set) var isDiscarded = false

    /// Removes the partial.
    func discard() {
        self.inFlight.wait()
        self.isDiscarded = true
        if !self.isUnnamed, !self.isPlaced { try? self.directory.remove(self.partialName) }
        self.length = 0
        self.handedOff = 0
        self.buffered = 0
        self.bufferHashed = 0
    }
}

/// Buffers of one size kept for reuse: the first buffers of finished partials (a burst of small files then
/// allocates no memory per file), and the 1 MiB buffers the disk queue is done with (a long-running agent maps
/// large blocks on their own, so each new one would cost a mapping and 256 page faults). Bounded: what is kept
/// is at most `capacity` buffers.
///
/// `@unchecked Sendable`: the buffers are only reached under the lock, and a taken buffer has one owner.
private final class BufferPool: @unchecked Sendable {
    /// 64 KiB first buffers, up to 64 (4 MiB).
    static let first = BufferPool(size: PartialFile.firstBufferSize, capacity: 64)
    /// 1 MiB buffers, up to 8 (8 MiB).
    static let large = BufferPool(size: PartialFile.bufferSize, capacity: 8)

    private let free = Mutex<[HandedOffBuffer]>([])
    private let size: Int
    private let capacity: Int

    private init(size: Int, capacity: Int) {
        self.size = size
        self.capacity = capacity
    }

    func take() -> UnsafeMutableRawBufferPointer {
        self.free.withLock { $0.popLast() }?.memory ?? .allocate(byteCount: self.size, alignment: 4096)
    }

    /// Returns a buffer to the pool of its size (or frees it).
    static func giveBack(_ buffer: UnsafeMutableRawBufferPointer) {
        guard buffer.count > 0 else { return }  // the empty stand-in of a buffer given back before
        (buffer.count == PartialFile.firstBufferSize ? Self.first : Self.large).give(buffer)
    }

    private func give(_ buffer: UnsafeMutableRawBufferPointer) {
        guard buffer.count == self.size else {
            buffer.deallocate()
            return
        }
        let handed = HandedOffBuffer(memory: buffer, count: buffer.count)
        let kept = self.free.withLock { free in
            guard free.count < self.capacity else { return false }
            free.append(handed)
            return true
        }
        if !kept { buffer.deallocate() }
    }
}

/// A buffer whose ownership passes to another thread: a filled one to the disk queue, which frees it after
/// writing, or an empty one to the pool.
///
/// `@unchecked Sendable`: after the hand-off only the receiver touches the memory.
private struct HandedOffBuffer: @unchecked Sendable {
    let memory: UnsafeMutableRawBufferPointer
    let count: Int
}
