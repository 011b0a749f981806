public import BargeCore
import CBargeLinux
import Glibc

/// An open directory reached from `/` one component at a time without following symbolic links, so a link
/// planted anywhere on the way cannot redirect a write. Files are then created and renamed relative to it.
///
/// Immutable (a path and a descriptor), so partials on different threads may share it.
final class SafeDirectory: Sendable {
    /// The directory's path, for messages.
    let path: String
    /// The open directory (`O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC`).
    let descriptor: Int32
    /// The file system and inode it is on (nil when `fstat` failed): what a sync groups by and a cache checks.
    let identity: (device: UInt64, inode: UInt64)?

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
        var info = stat()
        self.identity = fstat(descriptor, &info) == 0 ? (UInt64(info.st_dev), UInt64(info.st_ino)) : nil
    }

    deinit { close(self.descriptor) }

    /// Opens `path` (absolute), creating missing components with mode 0755 when `create` is set.
    ///
    /// - Throws: ``BargeSystemError``; `ELOOP` or `ENOTDIR` when a component is a symbolic link or a file.
    static func open(_ path: String, create: Bool) throws(BargeSystemError) -> SafeDirectory {
        let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
        var current = try systemCall("open", "/") { Glibc.open("/", flags) }
        var walked = ""
        for component in path.split(separator: "/") {
            walked += "/" + component
            let name = String(component)
            var next = Glibc.openat(current, name, flags)
            if next == -1, errno == ENOENT, create {
                if mkdirat(current, name, 0o755) == -1, errno != EEXIST {
                    let error = BargeSystemError(errno: errno, function: "mkdir", subject: walked)
                    close(current)
                    throw error
                }
                next = Glibc.openat(current, name, flags)
            }
            if next == -1 {
                var error = BargeSystemError(errno: errno, function: "open", subject: walked)
                var info = stat()
                if error.errno == ENOTDIR || error.errno == ELOOP,
                    fstatat(current, name, &info, AT_SYMLINK_NOFOLLOW) == 0, info.st_mode & S_IFMT == S_IFLNK
                {
                    error = BargeSystemError(
                        errno: ELOOP,
                        function: "open",
                        subject: walked,
                        explanation: "is a symbolic link; barge does not follow links on the way to a destination"
                    )
                }
                close(current)
                throw error
            }
            close(current)
            current = next
        }
        return SafeDirectory(path: path, descriptor: current)
    }

    /// Opens (creating if needed) a regular file in this directory for reading and writing, never through a
    /// symbolic link: a link at `name` is removed and a fresh file made in its place.
    ///
    /// - Returns: the open file and its size.
    func openFile(_ name: String, mode: mode_t = 0o600) throws(BargeSystemError) -> (descriptor: Int32, size: UInt64) {
        let flags = O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC
        let descriptor = Glibc.openat(self.descriptor, name, flags, mode)
        if descriptor >= 0 {
            var info = stat()
            if fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG {
                return (descriptor, UInt64(info.st_size))
            }
            close(descriptor)
            throw BargeSystemError(errno: EISDIR, function: "open", subject: self.path + "/" + name)
        }
        guard errno == ELOOP else {
            throw BargeSystemError(errno: errno, function: "open", subject: self.path + "/" + name)
        }
        try self.remove(name)
        let fresh = try systemCall("open", self.path + "/" + name) {
            Glibc.openat(self.descriptor, name, flags | O_EXCL, mode)
        }
        return (fresh, 0)
    }

    /// Opens the regular file `name` here for reading, never through a symbolic link; nil when there is none.
    func openExisting(_ name: String) -> (descriptor: Int32, info: stat)? {
        let descriptor = Glibc.openat(self.descriptor, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        var info = stat()
        guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            close(descriptor)
            return nil
        }
        return (descriptor, info)
    }

    /// A new file without a name in this directory (O_TMPFILE); nil when the file system makes none.
    func openUnnamedFile(mode: mode_t = 0o600) -> Int32? {
        let descriptor = CBargeLinux_open_unnamed(self.descriptor, UInt32(mode))
        return descriptor >= 0 ? descriptor : nil
    }

    /// Whether nothing (no file, no link) is called `name` here.
    func isFree(_ name: String) -> Bool {
        var info = stat()
        return fstatat(self.descriptor, name, &info, AT_SYMLINK_NOFOLLOW) == -1 && errno == ENOENT
    }

    /// The file system this directory is on.
    var device: UInt64? { self.identity?.device }

    /// Gives an unnamed file (``openUnnamedFile(mode:)``) the name `name`; never replaces what is
    /// there. Returns 0 or the errno (EEXIST: the name is taken).
    func link(_ descriptor: Int32, as name: String) -> Int32 {
        CBargeLinux_link_open_file(descriptor, self.descriptor, name) == 0 ? 0 : errno
    }

    /// Takes the lock of an open partial: an exclusive `flock` on its open file, never waiting. One destination
    /// has at most one transfer: another transfer (in this process or another, a `barge get --foreground` beside
    /// the agent, a second agent) that opens the same partial finds it taken and neither writes nor removes it.
    /// The lock goes with the descriptor (close-on-exec, so hooks never inherit it).
    ///
    /// A lock found taken is asked for again a few times, `whileBusy` (a short sleep) before each, before giving
    /// up: a process being spawned at that instant (by this process, or by a library in it) holds a copy of every
    /// descriptor until its `exec` closes them, the partial's of a transfer that has just ended among them.
    ///
    /// - Throws: `EBUSY` ("another transfer is writing it") when another open file holds it.
    static func lock(
        _ descriptor: Int32,
        path: String,
        whileBusy: () -> Void = { usleep(10_000) }
    ) throws(BargeSystemError) {
        var retries = 5
        while flock(descriptor, LOCK_EX | LOCK_NB) == -1 {
            let error = errno
            if error == EINTR { continue }
            if error == EWOULDBLOCK, retries > 0 {
                retries -= 1
                whileBusy()
                continue
            }
            if error == EWOULDBLOCK {
                throw BargeSystemError(
                    errno: EBUSY,
                    function: "lock",
                    subject: path,
                    explanation: "another transfer is writing it"
                )
            }
            throw BargeSystemError(errno: error, function: "lock", subject: path)
        }
    }

    /// Removes the partial `name` unless another transfer holds its lock (``lock(_:path:)``); returns whether it
    /// is gone. Its lock is taken first and held while it is unlinked.
    @discardableResult
    func removePartial(_ name: String) -> Bool {
        let descriptor = Glibc.openat(self.descriptor, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { return errno == ENOENT || (try? self.remove(name)) != nil }
        defer { close(descriptor) }
        guard (try? Self.lock(descriptor, path: self.path + "/" + name)) != nil else { return false }
        return (try? self.remove(name)) != nil
    }

    /// Removes `name` if it exists.
    func remove(_ name: String) throws(BargeSystemError) {
        if unlinkat(self.descriptor, name, 0) == -1, errno != ENOENT {
            throw BargeSystemError(errno: errno, function: "unlink", subject: self.path + "/" + name)
        }
    }

    /// Renames `from` over `to` atomically (a link at `to` is replaced, not followed).
    func rename(_ from: String, to: String) throws(BargeSystemError) {
        try systemCall("rename", self.path + "/" + to) { renameat(self.descriptor, from, self.descriptor, to) }
    }

    /// Flushes the directory entry changes (a rename) to disk.
    func sync() throws(BargeSystemError) {
        try systemCall("fsync", self.path) { fsync(self.descriptor) }
    }
}

/// Open destination directories by path, so a burst of files into one directory walks the path once.
///
/// A cached directory is used only while `lstat` of its path still names the same directory (device and inode);
/// otherwise (moved, replaced, a link put in its place) it is reopened by the strict walk. The check is made once
/// per pass of the engine's loop (``startPass()``), not for every file of a burst: a replacement between two
/// files of one pass is no different from one between the check and the open. Confined to the engine thread.
final class DirectoryCache {
    private var entries: [String: (directory: SafeDirectory, checkedInPass: UInt64)] = [:]
    private let capacity = 64
    private var pass: UInt64 = 1

    /// Begins a pass: every cached directory is checked again at its next use.
    func startPass() { self.pass &+= 1 }

    func open(_ path: String) throws(BargeSystemError) -> SafeDirectory {
        if let cached = self.entries[path] {
            if cached.checkedInPass == self.pass { return cached.directory }
            var info = stat()
            if let identity = cached.directory.identity, lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR,
                UInt64(info.st_dev) == identity.device, UInt64(info.st_ino) == identity.inode
            {
                self.entries[path]!.checkedInPass = self.pass
                return cached.directory
            }
        }
        let directory = try SafeDirectory.open(path, create: true)
        guard directory.identity != nil else { return directory }
        if self.entries.count >= self.capacity { self.entries.removeAll() }
        self.entries[path] = (directory, self.pass)
        return directory
    }
}

/// The agent's handle on partial files it does not transfer right now.
public enum PartialFiles {
    /// Removes the partial of `destination` (a job cancelled or removed while not running), without following a
    /// symbolic link on the way; a missing partial or directory is not an error.
    public static func remove(for destination: String) {
        let name = PartialFile.partialName(for: PathRules.fileName(of: destination))
        guard let directory = try? SafeDirectory.open(PathRules.directory(of: destination), create: false) else {
            return
        }
        directory.removePartial(name)
    }

    /// Removes a mirrored file (its manifest said `prune`), without following a symbolic link on the way.
    public static func removeDestination(_ destination: String) {
        guard let directory = try? SafeDirectory.open(PathRules.directory(of: destination), create: false) else {
            return
        }
        try? directory.remove(PathRules.fileName(of: destination))
    }
}

/// What becomes of an upload's local file once the server has it.
public enum UploadedFiles {
    /// Deletes `path` or moves it into a directory (made if missing; a name taken there gets a `.1`, `.2` …
    /// suffix), never through a symbolic link, and only while it is still the file that was uploaded (`stamp`, its
    /// inode included) and no writer has it open: one written again since stays, to be sent again. The file is first
    /// renamed (to a private name beside it, or into the directory) and what was renamed is checked: a file put in
    /// its place between a check and the act is never the one deleted or moved. Returns what was done, or throws
    /// why not.
    public static func finish(
        _ path: String,
        uploaded stamp: SourceStamp,
        after: UploadEntry.AfterUpload
    ) throws(BargeSystemError) -> String {
        guard after != .keep else { return "kept \(path)" }
        let directory = try SafeDirectory.open(PathRules.directory(of: path), create: false)
        let name = PathRules.fileName(of: path)
        // Unchanged, but a writer that has it open again would lose what it writes next to a deleted or moved file.
        let descriptor = openat(directory.descriptor, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { throw BargeSystemError(errno: errno, function: "open", subject: path) }
        let writing = CBargeLinux_is_open_for_writing(descriptor) == 1
        close(descriptor)
        if writing { return "kept \(path): it is open for writing again" }
        // Where it goes: a private name beside it (then unlinked), or a free name in the target directory.
        let into: SafeDirectory
        var placed: String
        switch after {
        case .keep, .delete:
            into = directory
            placed = ".\(name).barge-uploaded"
            _ = try? directory.remove(placed)  // one an earlier, interrupted delete left
        case .moveTo(let target):
            into = try SafeDirectory.open(target, create: true)
            placed = name
        }
        var attempt = 0
        while true {
            let status = CBargeLinux_rename_noreplace(directory.descriptor, name, into.descriptor, placed)
            if status == 0 { break }
            attempt += 1
            guard status == EEXIST, case .moveTo = after, attempt <= 100 else {
                throw BargeSystemError(errno: status, function: "rename", subject: path)
            }
            placed = "\(name).\(attempt)"
        }
        var info = stat()
        let same =
            fstatat(into.descriptor, placed, &info, AT_SYMLINK_NOFOLLOW) == 0 && info.st_mode & S_IFMT == S_IFREG
            && SourceFile.stamp(info) == stamp
        guard same else {
            // Not the file that was sent (written again, or another put in its place): back where it was.
            _ = CBargeLinux_rename_noreplace(into.descriptor, placed, directory.descriptor, name)
            return "kept \(path): it changed after it was uploaded (it is sent again)"
        }
        switch after {
        case .keep, .delete:
            try directory.remove(placed)
            try? directory.sync()
            return "deleted \(path)"
        case .moveTo(let target):
            try? into.sync()
            try? directory.sync()
            return "moved \(path) to \(target)/\(placed)"
        }
    }
}
