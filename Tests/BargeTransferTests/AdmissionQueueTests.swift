import BargeCore
import Testing

@testable import BargeTransfer

/// The engine's admission order, without I/O: priority first, then arrival, and a full host never holds up
/// another host's transfers.
@Suite("AdmissionQueue")
struct AdmissionQueueTests {
    @Test func higherPrioritiesGoFirstThenArrival() {
        var queue = AdmissionQueue<Int>()
        queue.append(1, host: "a", priority: .low)
        queue.append(2, host: "b", priority: .normal)
        queue.append(3, host: "a", priority: .normal)
        queue.append(4, host: "c", priority: .foreground)
        var order: [Int] = []
        while let next = queue.next(where: { _ in true }) { order.append(next) }
        #expect(order == [4, 2, 3, 1])
        #expect(queue.isEmpty)
    }

    @Test func aFullHostWaitsWithoutHoldingUpOthers() {
        var queue = AdmissionQueue<Int>()
        for item in 1...3 { queue.append(item, host: "busy", priority: .high) }
        queue.append(10, host: "free", priority: .normal)
        queue.append(11, host: "free", priority: .low)
        // The high-priority host is full: the free host's transfers go, in priority order.
        #expect(queue.next { $0 != "busy" } == 10)
        #expect(queue.next { $0 != "busy" } == 11)
        #expect(queue.next { $0 != "busy" } == nil)
        #expect(queue.count == 3)
        #expect(queue.next { _ in true } == 1)
    }

    @Test func aWaitingTransferCanBeFoundAndRemoved() {
        var queue = AdmissionQueue<Int>()
        for item in 1...200 { queue.append(item, host: "h\(item % 3)", priority: .normal) }
        for _ in 0..<100 { _ = queue.next { _ in true } }
        #expect(queue.first { $0 == 150 } == 150)
        #expect(queue.remove { $0 == 150 } == 150)
        #expect(queue.first { $0 == 150 } == nil)
        #expect(queue.count == 99)
        var rest: [Int] = []
        while let next = queue.next(where: { _ in true }) { rest.append(next) }
        #expect(rest == Array(101...200).filter { $0 != 150 })
        #expect(queue.removeAll().isEmpty)
    }
}
