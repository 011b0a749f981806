import Glibc

/// A pipe that wakes a thread asleep in `poll(2)`: the thread polls ``readEnd``; ``wake()`` writes a byte to it from
/// any thread. Both ends are close-on-exec and closed when the pipe goes. The network monitor's and the D-Bus
/// watcher's threads stop through one.
final class WakeupPipe: Sendable {
    /// The end the sleeping thread polls for `POLLIN`.
    let readEnd: Int32
    private let writeEnd: Int32

    /// A new pipe; nil with `errno` set when the system gives none.
    init?() {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { return nil }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        (self.readEnd, self.writeEnd) = (ends[0], ends[1])
    }

    deinit {
        close(self.readEnd)
        close(self.writeEnd)
    }

    /// Wakes the thread (a byte it reads with ``drain()``).
    func wake() {
        var one: UInt8 = 1
        _ = write(self.writeEnd, &one, 1)
    }

    /// Reads what ``wake()`` wrote.
    func drain() {
        var drained = [UInt8](repeating: 0, count: 64)
        _ = read(self.readEnd, &drained, drained.count)
    }
}
