import BargeCore
import CBargeLinux
import Crypto
import Glibc
import Synchronization

/// Finds the files an upload entry's `src` names and makes a job spec of each.
///
/// The glob's components are matched with `fnmatch` (`*`, `?`, `[…]`; a leading dot only by a pattern that starts
/// with one, so producers' `.x.tmp` files are never taken); `**` matches any number of directories. Symbolic links
/// are never followed, as files or as directories. A file changed within the entry's settle time, or open for
/// writing by any process (a read lease is refused), is found as settling: not uploaded until it settles.
enum UploadScanner {
    /// What one scan of an entry found.
    struct Found {
        var specs: [JobSpec] = []
        /// When the earliest settling file will have been unchanged for the settle time (scan again then).
        var nextScan: Double?
        /// Directories whose changes may bring new files (the glob's fixed directory).
        var directories: [String] = []
        /// What could not be read now, for another reason than not being there (a directory ends with `/`): the
        /// jobs of files there are kept as they are (fail closed), not removed as gone.
        var unreadable: [String] = []
    }

    /// The machine's host name, for `{hostname}`.
    static let hostname: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }()

    /// The specs of `entry`'s files in manifest `manifest`, as of `now` (epoch seconds).
    static func scan(_ entry: UploadEntry, manifest: String, now: Double) -> Found {
        var found = Found()
        let base = PathRules.literalPrefix(ofGlob: entry.source)
        found.directories = [base == entry.source ? PathRules.directory(of: base) : base]
        let rest =
            entry.source == base ? [] : Array(entry.source.dropFirst(base.count).split(separator: "/").map(String.init))
        var matches: [(path: String, relative: String)] = []
        if rest.isEmpty {
            matches = [(entry.source, PathRules.fileName(of: entry.source))]
        } else {
            Self.walk(base, relative: "", patterns: rest[...], into: &matches, unreadable: &found.unreadable)
        }
        for match in matches {
            let descriptor = open(match.path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            guard descriptor >= 0 else {
                // Gone or a link: nothing to upload. Anything else (no permission now, out of descriptors): unknown.
                if errno != ENOENT, errno != ELOOP { found.unreadable.append(match.path) }
                continue
            }
            defer { close(descriptor) }
            var info = stat()
            guard fstat(descriptor, &info) == 0 else {
                found.unreadable.append(match.path)
                continue
            }
            guard info.st_mode & S_IFMT == S_IFREG else { continue }
            let stamp = SourceStamp(
                size: UInt64(info.st_size),
                modified: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec),
                inode: UInt64(info.st_ino)
            )
            let modifiedAt = Double(stamp.modified) / 1e9
            let settledAt = modifiedAt + Double(entry.settle.seconds)
            var settling = settledAt > now
            if !settling, CBargeLinux_is_open_for_writing(descriptor) == 1 {
                settling = true  // a writer has it open: look again after a settle time
            }
            if settling {
                let next = max(settledAt, now + Double(max(entry.settle.seconds, 1)))
                found.nextScan = min(found.nextScan ?? next, next)
            }
            let sha256 = entry.needsSHA256 && !settling ? Self.sha256(match.path, descriptor, stamp) : nil
            if entry.needsSHA256, !settling, sha256 == nil {
                found.unreadable.append(match.path)  // unreadable now: its job stays, the next scan tries again
                continue
            }
            let url = entry.url(
                name: PathRules.fileName(of: match.path),
                relativePath: match.relative,
                hostname: Self.hostname,
                sha256: sha256
            )
            let details = UploadDetails(
                uploadProtocol: entry.uploadProtocol,
                after: entry.after,
                chunkSize: entry.chunkSize.bytes,
                replyLimit: entry.replyLimit?.bytes ?? 0,
                stamp: stamp,
                isSettling: settling
            )
            found.specs.append(
                JobSpec(
                    manifest: manifest,
                    urls: [url],
                    destination: match.path,
                    size: stamp.size,
                    policy: entry.policy,
                    upload: details
                )
            )
        }
        return found
    }

    /// Collects the regular files below `directory` that match `patterns`, never through a symbolic link.
    private static func walk(
        _ directory: String,
        relative: String,
        patterns: ArraySlice<String>,
        into matches: inout [(path: String, relative: String)],
        unreadable: inout [String]
    ) {
        guard let pattern = patterns.first else { return }
        guard let stream = opendir(directory) else {
            if errno != ENOENT, errno != ENOTDIR { unreadable.append(directory + "/") }
            return
        }
        defer { closedir(stream) }
        let last = patterns.count == 1
        let separator = directory == "/" ? "" : "/"
        if pattern == "**" {
            // Zero directories: the rest of the patterns here.
            Self.walk(
                directory,
                relative: relative,
                patterns: patterns.dropFirst(),
                into: &matches,
                unreadable: &unreadable
            )
        }
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name == "." || name == ".." { continue }
            var kind = entry.pointee.d_type
            let path = directory + separator + name
            if kind == UInt8(DT_UNKNOWN) {
                var info = stat()
                guard lstat(path, &info) == 0 else { continue }
                kind =
                    info.st_mode & S_IFMT == S_IFDIR
                    ? UInt8(DT_DIR) : info.st_mode & S_IFMT == S_IFREG ? UInt8(DT_REG) : 0
            }
            let relativePath = relative.isEmpty ? name : relative + "/" + name
            if pattern == "**" {
                if kind == UInt8(DT_DIR), !name.hasPrefix(".") {
                    Self.walk(path, relative: relativePath, patterns: patterns, into: &matches, unreadable: &unreadable)
                }
                continue
            }
            guard fnmatch(pattern, name, FNM_PERIOD) == 0 else { continue }
            if last {
                if kind == UInt8(DT_REG) { matches.append((path, relativePath)) }
            } else if kind == UInt8(DT_DIR) {
                Self.walk(
                    path,
                    relative: relativePath,
                    patterns: patterns.dropFirst(),
                    into: &matches,
                    unreadable: &unreadable
                )
            }
        }
    }

    /// Hashes already made, by path and stamp: a file is hashed once while it stays as it is.
    private static let hashes = Mutex<[String: (SourceStamp, String)]>([:])

    private static func sha256(_ path: String, _ descriptor: Int32, _ stamp: SourceStamp) -> String? {
        if let (known, hash) = Self.hashes.withLock({ $0[path] }), known == stamp { return hash }
        var hasher = SHA256()
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var offset: off_t = 0
        while true {
            let read = pread(descriptor, buffer, 1 << 20, offset)
            if read < 0, errno == EINTR { continue }
            if read < 0 { return nil }
            if read == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(start: buffer, count: read))
            offset += off_t(read)
        }
        let hash = hasher.finalize().map { byte in
            let hex = Array("0123456789abcdef")
            return String([hex[Int(byte >> 4)], hex[Int(byte & 0x0f)]])
        }.joined()
        Self.hashes.withLock { hashes in
            if hashes.count >= 65_536 { hashes.removeAll() }  // a bound
            hashes[path] = (stamp, hash)
        }
        return hash
    }
}
