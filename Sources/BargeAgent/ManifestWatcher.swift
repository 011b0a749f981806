import BargeCore
import Dispatch
import Glibc

/// Watches the drop-in directory with inotify and calls back when a manifest may have changed: a file written
/// and closed, renamed in or out, deleted, or its mode or owner changed (a `chmod go-w` that makes it trusted), and
/// everything on a queue overflow. Events of one burst (an editor's save, a configuration tool dropping many files)
/// are gathered for a moment into one callback.
///
/// The directory itself may be removed, made unreadable or replaced by a rename (a configuration tool swapping it):
/// its parent is watched for its name too, and the watch moves to whatever directory has the name now.
///
/// Dot-files are ignored: producers write `.x.yaml.tmp` and rename it into place, which arrives as a move.
final class ManifestWatcher: @unchecked Sendable {
    private let descriptor: Int32
    private let source: any DispatchSourceRead
    /// Owns the mutable state below: every access runs on it.
    private let queue = DispatchQueue(label: "barge.manifest-watcher")
    private var pendingFlush = false
    private let directory: String
    private let name: String
    /// The watch on the directory now at `directory` (-1: none, it is missing).
    private var directoryWatch: Int32 = -1
    private var parentWatch: Int32 = -1
    /// While the parent is missing too (nothing to watch), the watches are tried again on this timer.
    private var retry: (any DispatchSourceTimer)?
    /// Set by ``cancel()``: nothing is watched or reported after it.
    private var cancelled = false
    private let changed: @Sendable () -> Void
    /// How often watches are tried again while the directory's parent is missing.
    static let retryInterval: DispatchTimeInterval = .seconds(5)
    /// How long a burst of events is gathered.
    static let settleDelay: DispatchTimeInterval = .milliseconds(50)
    private static let directoryMask = UInt32(
        IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_ATTRIB | IN_DELETE_SELF
            | IN_MOVE_SELF
    )
    private static let parentMask = UInt32(
        IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF
    )

    /// Starts watching `directory`, which may be missing now (its parent is watched for it; the agent also reads
    /// it again every few seconds while it cannot), and so may its parent (the watches are tried again every few
    /// seconds until they hold); `changed` runs on a private queue.
    init(directory: String, changed: @escaping @Sendable () -> Void) throws {
        let descriptor = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard descriptor >= 0 else { throw WatchError(reason: "inotify_init1: \(String(cString: strerror(errno)))") }
        let trimmed = directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        self.directory = trimmed
        self.name = PathRules.fileName(of: trimmed)
        self.descriptor = descriptor
        self.changed = changed
        self.source = DispatchSource.makeReadSource(fileDescriptor: descriptor, queue: self.queue)
        let buffer = UnsafeMutableRawPointer.allocate(
            byteCount: 64 * 1024,
            alignment: MemoryLayout<inotify_event>.alignment
        )
        self.source.setEventHandler { [unowned self] in
            guard !self.cancelled else { return }
            var relevant = false
            while true {
                let count = read(descriptor, buffer, 64 * 1024)
                if count <= 0 { break }
                var offset = 0
                while offset < count {
                    let event = buffer.load(fromByteOffset: offset, as: inotify_event.self)
                    let namePointer = (buffer + offset + MemoryLayout<inotify_event>.size)
                        .assumingMemoryBound(to: CChar.self)
                    let name = event.len > 0 ? String(cString: namePointer) : ""
                    offset += MemoryLayout<inotify_event>.size + Int(event.len)
                    if self.isRelevant(event, name: name) { relevant = true }
                }
            }
            guard relevant, !self.pendingFlush else { return }
            self.pendingFlush = true
            self.queue.asyncAfter(deadline: .now() + Self.settleDelay) {
                self.pendingFlush = false
                if !self.cancelled { changed() }
            }
        }
        self.source.setCancelHandler {
            close(descriptor)
            buffer.deallocate()
        }
        self.queue.sync { _ = self.watch() }
        self.source.resume()
    }

    /// Adds what watches are missing; while the parent cannot be watched (it is missing too), tries again on a
    /// timer, and tells `changed` once it can. Returns whether a watch was added. On the queue.
    private func watch() -> Bool {
        guard !self.cancelled else { return false }
        var added = false
        if self.parentWatch < 0 {
            // Without the parent's watch a missing or replaced directory is seen only by the agent's periodic retry.
            self.rewatchParent()
            added = self.parentWatch >= 0
            // A new parent (the old one renamed or removed) holds another directory under the name, or none: the
            // old directory's watch, if any, follows the old inode.
            if added { self.rewatchDirectory() }
        }
        if self.directoryWatch < 0 {
            self.rewatchDirectory()
            added = added || self.directoryWatch >= 0
        }
        if self.parentWatch >= 0 {
            self.retry?.cancel()
            self.retry = nil
        } else if self.retry == nil {
            let timer = DispatchSource.makeTimerSource(queue: self.queue)
            timer.schedule(deadline: .now() + Self.retryInterval, repeating: Self.retryInterval)
            timer.setEventHandler { [unowned self] in
                if self.watch() { self.changed() }
            }
            timer.resume()
            self.retry = timer
        }
        return added
    }

    /// Whether one event may change the manifests; moves the directory's watch when the directory was replaced.
    private func isRelevant(_ event: inotify_event, name: String) -> Bool {
        if event.mask & UInt32(IN_Q_OVERFLOW) != 0 {
            // Events were lost, a watch's end among them perhaps: watch whatever has the names now.
            self.rewatchParent()
            self.rewatchDirectory()
            _ = self.watch()
            return true
        }
        if event.wd == self.parentWatch {
            if event.mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED) != 0 {
                // The parent went (renamed or removed): watch whatever has its name now (the directory's watch
                // moves too), or again once it is back; either way the manifests may have changed.
                inotify_rm_watch(self.descriptor, self.parentWatch)
                self.parentWatch = -1
                self.rewatchDirectory()
                _ = self.watch()
                return true
            }
            guard name == self.name else { return false }
            // The directory's name was created, renamed, removed or its mode changed: watch what has the name now.
            self.rewatchDirectory()
            return true
        }
        guard event.wd == self.directoryWatch else { return false }  // a replaced directory's old watch
        if event.mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED) != 0 {
            self.rewatchDirectory()
            return true
        }
        if event.mask & UInt32(IN_ATTRIB) != 0, name.isEmpty { return true }  // the directory's own mode
        return !name.hasPrefix(".") && event.mask & UInt32(IN_ISDIR) == 0
    }

    /// Points the directory's watch at the directory that has its name now (none while it is missing).
    private func rewatchDirectory() {
        var watch = inotify_add_watch(self.descriptor, self.directory, Self.directoryMask | UInt32(IN_ONLYDIR))
        if watch >= 0, watch == self.parentWatch {
            // The name leads to the parent's own inode (a link swapped in): that is no drop-in directory to watch,
            // and sharing the parent's watch would take its events. The parent's mask is put back.
            self.rewatchParent()
            watch = -1
        }
        if self.directoryWatch >= 0, watch != self.directoryWatch, self.directoryWatch != self.parentWatch {
            inotify_rm_watch(self.descriptor, self.directoryWatch)
        }
        self.directoryWatch = watch
    }

    /// Points the parent's watch at the directory that has the parent's path now (after an overflow, its rename
    /// may have been lost).
    private func rewatchParent() {
        let parent = PathRules.directory(of: self.directory)
        let watch = inotify_add_watch(self.descriptor, parent, Self.parentMask | UInt32(IN_ONLYDIR))
        if self.parentWatch >= 0, watch != self.parentWatch { inotify_rm_watch(self.descriptor, self.parentWatch) }
        self.parentWatch = watch
    }

    /// Stops watching: no callback starts after it returns.
    func cancel() {
        self.queue.sync {
            self.cancelled = true
            self.retry?.cancel()
            self.retry = nil
            self.source.cancel()
        }
    }
}

/// The drop-in directory cannot be watched.
struct WatchError: Error, CustomStringConvertible {
    var reason: String
    var description: String { self.reason }
}
