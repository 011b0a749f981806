import Dispatch
import Foundation
import Glibc
import Synchronization
import Testing

@testable import BargeTransfer

/// The shared `syncfs` of the commit queues, with the sync itself simulated (it takes 30 ms and logs when it ran).
@Suite("Shared file-system sync")
struct SharedSyncTests {
    /// When each simulated sync started and ended (monotonic seconds), and the result it gives.
    final class SyncLog: Sendable {
        let runs = Mutex<[(start: Double, end: Double)]>([])
        let result: Int32

        init(result: Int32 = 0) { self.result = result }

        func sync() -> Int32 {
            let start = monotonicNow()
            usleep(30_000)
            self.runs.withLock { $0.append((start, monotonicNow())) }
            return self.result
        }
    }

    /// Runs `body` on `count` threads of their own at once and waits for all: the callers block, as the commit
    /// queues do, and the cooperative pool may have two threads.
    static func onThreads(_ count: Int, _ body: @escaping @Sendable () -> Void) {
        let done = DispatchGroup()
        for _ in 0..<count {
            done.enter()
            Thread {
                body()
                done.leave()
            }.start()
        }
        done.wait()
    }

    /// Six callers at once: each returns only after a sync that started after its call had ended, and they share
    /// syncs (the first runs one, the five that came during it share the next).
    @Test func callersShareSyncsThatStartAfterTheirCall() {
        let log = SyncLog()
        let shared = SharedSync { _ in log.sync() }
        let calls = Mutex<[(called: Double, returned: Double, result: Int32)]>([])
        Self.onThreads(6) {
            let called = monotonicNow()
            let result = shared.sync(device: 7, through: -1)
            calls.withLock { $0.append((called, monotonicNow(), result)) }
        }
        let results = calls.withLock { $0 }
        let runs = log.runs.withLock { $0 }
        #expect(results.count == 6)
        for call in results {
            #expect(call.result == 0)
            #expect(
                runs.contains { $0.start >= call.called && $0.end <= call.returned },
                "a caller returned without a sync that started after its call"
            )
        }
        #expect(runs.count < results.count, "\(runs.count) syncs for \(results.count) callers")
        // One at a time per file system.
        for (earlier, later) in zip(runs, runs.dropFirst()) { #expect(later.start >= earlier.end) }
    }

    /// Six threads syncing in a loop while every other sync fails: a caller whose first covering sync failed
    /// always gets the error, even when a later sync succeeded before it woke (its bytes may be lost).
    @Test func aFailureIsNeverHiddenByALaterSuccess() {
        let count = Mutex<UInt64>(0)
        let shared = SharedSync { _ in
            let number = count.withLock { count in
                count += 1
                return count
            }
            return number % 2 == 0 ? EIO : 0
        }
        let hidden = Mutex<[UInt64]>([])
        let calls = Mutex(0)
        Self.onThreads(6) {
            for _ in 0..<2_000 {
                let (error, covering) = shared.syncNumbered(device: 3, through: -1)
                if covering % 2 == 0, error == 0 { hidden.withLock { $0.append(covering) } }
                calls.withLock { $0 += 1 }
            }
        }
        #expect(calls.withLock { $0 } == 12_000)
        #expect(hidden.withLock { $0.isEmpty }, "failed syncs reported as done: \(hidden.withLock { $0.prefix(5) })")
    }

    /// A failed sync's errno reaches the callers it covered; another file system syncs apart.
    @Test func aFailedSyncFailsItsCallersAndFileSystemsAreApart() {
        let failing = SyncLog(result: EIO)
        let shared = SharedSync { descriptor in descriptor == 1 ? failing.sync() : 0 }
        #expect(shared.sync(device: 1, through: 1) == EIO)
        #expect(shared.sync(device: 2, through: 2) == 0)
        #expect(failing.runs.withLock { $0.count } == 1)
    }
}
