import BargeTestSupport
import Foundation
import Glibc
import Testing

@testable import BargeTransfer

/// The lock of a partial (`SafeDirectory.lock`): a lock let go while it is waited for (as a process being spawned
/// lets go of its copy of the descriptor at its `exec`) is taken; one held on is refused as another transfer's.
@Suite("Partial locks")
struct PartialLockTests {
    let scratch: ScratchDirectory

    init() throws { self.scratch = try ScratchDirectory() }

    /// Two open files of one partial, as two transfers would have.
    private func twoOpenFiles() throws -> (String, Int32, Int32) {
        let path = self.scratch.path + "/.a.bin.barge-partial"
        _ = try self.scratch.write(".a.bin.barge-partial", "partial")
        let first = open(path, O_RDWR | O_CLOEXEC)
        let second = open(path, O_RDWR | O_CLOEXEC)
        try #require(first >= 0 && second >= 0)
        try #require(flock(first, LOCK_EX | LOCK_NB) == 0)
        return (path, first, second)
    }

    @Test func aLockHeldForAMomentIsWaitedOut() throws {
        let (path, first, second) = try self.twoOpenFiles()
        defer { close(second) }
        var waits = 0
        // The other holder lets go while the lock is being waited for.
        #expect(throws: Never.self) {
            try SafeDirectory.lock(second, path: path) {
                waits += 1
                if waits == 1 { close(first) }
            }
        }
        #expect(waits == 1)
        // Ours now: a third open file finds it taken.
        let third = open(path, O_RDWR | O_CLOEXEC)
        defer { close(third) }
        #expect(flock(third, LOCK_EX | LOCK_NB) == -1 && errno == EWOULDBLOCK)
    }

    @Test func aLockHeldOnIsAnotherTransfers() throws {
        let (path, first, second) = try self.twoOpenFiles()
        defer {
            close(first)
            close(second)
        }
        var waits = 0
        let error = try #require(throws: BargeSystemError.self) {
            try SafeDirectory.lock(second, path: path) { waits += 1 }
        }
        #expect(error.errno == EBUSY, "\(error)")
        #expect(waits > 1, "given up without waiting")
    }
}
