import BargeCore
import Testing

@testable import BargeAgent
@testable import BargeTransfer

/// The supervisor's one inbox and what one pass makes of a burst, without I/O.
@Suite("Supervisor inbox")
struct SupervisorInboxTests {
    static func report(_ id: UInt64, _ event: TransferEvent) -> TransferReport {
        TransferReport(id: TransferID(id), event: event)
    }

    static let progress = TransferEvent.progress(TransferProgress(received: 10, total: 100, bytesPerSecond: 5))

    @Test func aBurstBecomesOneManifestReadAndOnePlan() {
        let work = SupervisorWork([
            .reports([Self.report(1, Self.progress)]),
            .manifestsChanged(done: nil),
            .timer,
            .reports([Self.report(2, .finished(.cancelled))]),
            .manifestsChanged(done: nil),
            .manifestsChanged(done: nil),
        ])
        #expect(work.readsManifests)
        #expect(work.timerFired)
        #expect(work.reports.map { $0.map(\.id.rawValue) } == [[1], [2]])
        #expect(work.needsReconcile)
    }

    @Test func progressAloneNeedsNoPlan() {
        #expect(!SupervisorWork([.reports([Self.report(1, Self.progress)])]).needsReconcile)
        #expect(SupervisorWork([.reports([Self.report(1, .finished(.cancelled))])]).needsReconcile)
        #expect(SupervisorWork([.timer]).needsReconcile)
    }

    @Test func onlySuccessesMayWaitForThePlan() {
        let done = CompletedTransfer(url: "https://o.test/f", size: 1, validators: Validators(), transferred: 1)
        #expect(SupervisorWork([.reports([Self.report(1, .finished(.completed(done)))])]).onlySuccessesEnded)
        let failed = TransferOutcome.failed(TransferFailure(.transient, "reset"))
        #expect(!SupervisorWork([.reports([Self.report(1, .finished(failed))])]).onlySuccessesEnded)
        #expect(!SupervisorWork([.reports([Self.report(1, .finished(.completed(done)))]), .timer]).onlySuccessesEnded)
    }

    @Test func theLoopTakesEverythingThatWaitedAtOnce() async {
        let inbox = SupervisorInbox()
        inbox.post(.timer)
        inbox.post(.manifestsChanged(done: nil))
        inbox.post(.reports([]))
        let first = await inbox.next()
        #expect(first?.count == 3)
        // Waiting: the next post wakes it with that one event.
        async let second = inbox.next()
        inbox.post(.timer)
        #expect(await second?.count == 1)
        inbox.post(.timer)
        inbox.finish()
        #expect(await inbox.next()?.count == 1)  // what waited is still taken
        #expect(await inbox.next() == nil)
    }

    @Test func aCommandAfterTheEndIsAnsweredNotLost() async {
        let inbox = SupervisorInbox()
        inbox.finish()
        let reply = await withCheckedContinuation { continuation in
            inbox.post(.command(.retry(.jobs([1])), by: .agent, reply: continuation))
        }
        #expect(reply.error == .failed)
        #expect(reply.message == "the agent is stopping")
    }
}
