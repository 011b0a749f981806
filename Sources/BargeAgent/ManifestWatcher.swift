import Dispatch
import Glibc

/// Watches the drop-in directory with inotify and calls back when a manifest may have changed: a file written
/// and closed, renamed in or out, or deleted (and everything on a queue overflow). Events of one burst (an editor's
/// save, a configuration tool dropping many files) are gathered for a moment into one callback.
///
/// Dot-files are ignored: producers write `.x.yaml.tmp` and rename it into place, which arrives as a move.
final class ManifestWatcher: @unchecked Sendable {
    private let descriptor: Int32
    private let source: any DispatchSourceRead
    private let queue = DispatchQueue(label: "barge.manifest-watcher")
    private var pendingFlush = false
    /// How long a burst of events is gathered.
    static let settleDelay: DispatchTimeInterval = .milliseconds(50)

    /// Starts watching `directory` (created if missing); `changed` runs on a private queue.
    init(directory: String, changed: @escaping @Sendable () -> Void) throws {
        let descriptor = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard descriptor >= 0 else { throw WatchError(reason: "inotify_init1: \(String(cString: strerror(errno)))") }
        let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE)
        guard inotify_add_watch(descriptor, directory, mask) >= 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw WatchError(reason: "cannot watch \(directory): \(reason)")
        }
        self.descriptor = descriptor
        self.source = DispatchSource.makeReadSource(fileDescriptor: descriptor, queue: self.queue)
        let buffer = UnsafeMutableRawPointer.allocate(
            byteCount: 64 * 1024,
            alignment: MemoryLayout<inotify_event>.alignment
        )
        self.source.setEventHandler { [unowned self] in
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
                    let overflow = event.mask & UInt32(IN_Q_OVERFLOW) != 0
                    let directoryEvent = event.mask & UInt32(IN_ISDIR) != 0
                    if overflow || (!name.hasPrefix(".") && !directoryEvent) { relevant = true }
                }
            }
            guard relevant, !self.pendingFlush else { return }
            self.pendingFlush = true
            self.queue.asyncAfter(deadline: .now() + Self.settleDelay) {
                self.pendingFlush = false
                changed()
            }
        }
        self.source.setCancelHandler {
            close(descriptor)
            buffer.deallocate()
        }
        self.source.resume()
    }

    /// Stops watching.
    func cancel() { self.source.cancel() }
}

/// The drop-in directory cannot be watched.
struct WatchError: Error, CustomStringConvertible {
    var reason: String
    var description: String { self.reason }
}
