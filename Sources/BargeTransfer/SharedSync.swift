import CBargeLinux
import Foundation
import Glibc

/// One `syncfs` at a time per file system, shared by every commit queue that needs one: a caller whose bytes are
/// written waits for the next sync that starts after its call, and whichever caller finds none running starts it
/// for all of them (group commit across engine threads).
///
/// Without it, each engine thread's commit queue synced on its own, often while the other's sync ran: two syncs
/// where one would do, each writing the file system's metadata (inode table, bitmaps, directory blocks) again and
/// flushing the disk's cache. A sync that is already running when a caller arrives does not cover it (it may have
/// started before the caller's writes), so the caller waits for it to end and then for one more.
///
/// `@unchecked Sendable`: the state is only touched under `condition`'s lock.
final class SharedSync: @unchecked Sendable {
    /// The syncs of this process's engines.
    static let shared = SharedSync { descriptor in CBargeLinux_syncfs(descriptor) == 0 ? 0 : errno }

    private struct FileSystem {
        /// Syncs started and finished so far (they run one at a time, so finished ≤ started ≤ finished + 1).
        var started: UInt64 = 0
        var finished: UInt64 = 0
        /// The last sync that failed, and its errno: a caller reports it when it was one of the syncs that
        /// started after its call (the first of them, whose failure may have lost its bytes, or a later one),
        /// even if a later sync succeeded before the caller woke.
        var lastFailure: (number: UInt64, errno: Int32)?
    }

    private let syncFileSystem: @Sendable (Int32) -> Int32
    private let condition = NSCondition()
    private var fileSystems: [UInt64: FileSystem] = [:]

    /// `syncFileSystem` syncs the file system of a descriptor and returns 0 or an errno.
    init(syncFileSystem: @escaping @Sendable (Int32) -> Int32) {
        self.syncFileSystem = syncFileSystem
    }

    /// Returns once a sync of file system `device` that started after this call has finished: 0, or the errno
    /// of a failed sync among those that started after the call. `descriptor` is an open directory on it, used if
    /// this caller runs the sync. (Since Linux 5.8 `syncfs` reports a write-back error once per open file: a
    /// failure reaches the caller that ran the sync through this function, and the others through it too, but
    /// their own descriptors may report it again at their next sync: a spurious, retried failure, never a lost
    /// one.)
    func sync(device: UInt64, through descriptor: Int32) -> Int32 {
        self.syncNumbered(device: device, through: descriptor).errno
    }

    /// ``sync(device:through:)``, also returning the number of the first sync that covered the call (the
    /// device's syncs are numbered from 1 in the order they run): what the tests check the result against.
    func syncNumbered(device: UInt64, through descriptor: Int32) -> (errno: Int32, covering: UInt64) {
        self.condition.lock()
        defer { self.condition.unlock() }
        let needed = self.fileSystems[device, default: FileSystem()].started + 1
        while true {
            let state = self.fileSystems[device, default: FileSystem()]
            if state.finished >= needed {
                guard let failure = state.lastFailure, failure.number >= needed else { return (0, needed) }
                return (failure.errno, needed)
            }
            if state.started == state.finished {
                let number = state.started + 1
                self.fileSystems[device, default: FileSystem()].started = number
                self.condition.unlock()
                let result = self.syncFileSystem(descriptor)
                self.condition.lock()
                self.fileSystems[device]!.finished = number
                if result != 0 { self.fileSystems[device]!.lastFailure = (number, result) }
                self.condition.broadcast()
                continue
            }
            self.condition.wait()
        }
    }
}
