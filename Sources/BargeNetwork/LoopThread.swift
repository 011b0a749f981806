internal import CBargeLinux
import Foundation

/// The named thread a poll loop runs on (the netlink monitor's, the D-Bus watcher's). It holds its owner from
/// ``start(_:loop:)`` until ``stop(waking:)`` has waited for the loop to end, and lets go of it there, on the
/// stopping caller's thread: were the hold the thread's own (a closure Foundation frees as the thread ends), the
/// owner could be freed on a dying thread while the process exits, after C libraries' destructors (libnl's
/// address families, for one) have run. Used by its owner's `start` and `stop` only, which are not called
/// concurrently.
final class LoopThread: @unchecked Sendable {
    private let name: String
    private let ended = DispatchSemaphore(value: 0)
    /// Lets go of the owner; set while the loop runs.
    private var letGo: (() -> Void)?

    /// A thread that will be named `name` (at most 15 bytes, the kernel's limit) for `top -H` and perf.
    init(name: String) { self.name = name }

    /// Runs `loop` with `owner` on a new thread; the loop returns when asked to stop (``stop(waking:)``) or when
    /// it cannot go on.
    func start<Owner: AnyObject & Sendable>(_ owner: Owner, loop: @escaping @Sendable (Owner) -> Void) {
        let held = Unmanaged.passRetained(owner)
        self.letGo = { held.release() }
        let (name, ended) = (self.name, self.ended)
        let thread = Thread {
            // The kernel's name: Foundation does not set it on Linux.
            _ = CBargeLinux_name_this_thread(name)
            loop(held.takeUnretainedValue())
            ended.signal()
        }
        thread.name = name
        thread.start()
    }

    /// Asks the loop to end with `wake` (which must make it return), waits until it has, and lets go of the owner.
    /// Nothing happens when the loop was not started, or was stopped already.
    func stop(waking wake: () -> Void) {
        guard let letGo = self.letGo else { return }
        wake()
        self.ended.wait()
        letGo()
        self.letGo = nil
    }
}
