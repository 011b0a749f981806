import Testing

@testable import BargeCore

/// The yield controller over sample series: a link Barge has alone, another program's download arriving and
/// leaving, chatter below the threshold, a capacity hint.
@Suite("Yield controller")
struct YieldControllerTests {
    /// Feeds samples every quarter second: per step, the bytes per second Barge moves and the other traffic's.
    struct Link {
        var controller: YieldController
        var time = 0.0
        var link: UInt64 = 0
        var barge: UInt64 = 0

        init(_ settings: YieldController.Settings = YieldController.Settings()) {
            self.controller = YieldController(settings: settings)
            self.controller.sample(at: 0, linkBytes: 0, bargeBytes: 0)
        }

        /// A quarter second on a link of 50 Mbit/s: the other traffic takes what it asks (on the wire); Barge gets
        /// what it asks of the rest, its payload costing 4.6 % more on the wire.
        mutating func step(barge: Double, other: Double, seconds: Double = 0.25) {
            let other = min(other, YieldControllerTests.link)
            let barge = min(barge, (YieldControllerTests.link - other) / 1.046)
            self.time += seconds
            self.barge += UInt64(barge * seconds)
            self.link += UInt64((barge * 1.046 + other) * seconds)
            self.controller.sample(at: self.time, linkBytes: self.link, bargeBytes: self.barge)
        }

        var limit: Double? { self.controller.budget.rate.map { Double($0.bytesPerSecond) } }
    }

    static let link = 6_250_000.0  // 50 Mbit/s

    /// Once yielding, the budget holds (never climbs) while the other traffic is still above the threshold but
    /// has not filled the link yet, as a new upload ramps up behind Barge's queued bytes; it falls again once the
    /// link fills, and climbs only when the other traffic is gone.
    @Test func theBudgetHoldsWhileOtherTrafficRampsUp() throws {
        var link = Link()
        for _ in 0..<20 { link.step(barge: Self.link, other: 0) }
        link.step(barge: Self.link * 0.8, other: Self.link * 0.2)
        link.step(barge: try #require(link.limit), other: Self.link * 0.1)  // the window still holds the full link
        let first = try #require(link.limit)
        // Barge at its budget, the other traffic slowly growing: the link is not full.
        for other in [0.1, 0.15, 0.2, 0.25] {
            link.step(barge: first, other: Self.link * other)
            #expect(link.limit == first, "held at \(other)")
            #expect(link.controller.state != .clear)
        }
        // Steady light traffic that never fills the link holds it only for a while: then it climbs.
        var light = link
        for _ in 0..<YieldController.maximumHold { light.step(barge: first, other: Self.link * 0.2) }
        #expect(light.controller.state == .clear)
        #expect(try #require(light.limit) > first)
        // The link fills: it falls again.
        link.step(barge: first, other: Self.link)
        link.step(barge: first, other: Self.link)
        #expect(try #require(link.limit) < first)
        // Gone: it climbs.
        let low = try #require(link.limit)
        for _ in 0..<8 { link.step(barge: low, other: 0) }
        #expect(link.controller.state == .clear)
        #expect((link.limit ?? .infinity) > low)
    }

    @Test func aLinkBargeHasAloneLeavesItUnlimited() {
        var link = Link()
        for _ in 0..<40 { link.step(barge: Self.link, other: 2_000) }
        #expect(link.controller.budget == .off)
        #expect(link.controller.state == .clear)
        #expect(abs(link.controller.capacity - Self.link) < 1_000)
    }

    /// Another download takes the link: the budget halves at each sample to the floor (2 % of the capacity) within
    /// about a second, stays there while it runs, and climbs back over about ten seconds once it ends.
    @Test func otherTrafficMakesItBackOffFastAndClimbBackSlowly() throws {
        var link = Link()
        for _ in 0..<20 { link.step(barge: Self.link, other: 0) }
        link.step(barge: Self.link * 0.8, other: Self.link * 0.2)
        #expect(link.controller.state == .yielding(otherBytesPerSecond: link.controller.otherBytesPerSecond))
        #expect(try #require(link.limit) < Self.link * 0.5)
        // Barge slows as told; the other download takes the rest.
        var steps = 1
        while let limit = link.limit {
            link.step(barge: limit, other: Self.link - limit)
            if let next = link.limit, next > limit * 0.99 { break }  // the floor (it drifts as the peak fades)
            steps += 1
        }
        #expect(steps <= 7, "\(steps) samples to the floor")
        let floor = try #require(link.limit)
        #expect(abs(floor - Self.link * 0.02) < Self.link * 0.002)
        for _ in 0..<40 { link.step(barge: floor, other: Self.link - floor) }
        #expect(abs((link.limit ?? 0) - floor) < floor * 0.02)
        // It ends: once the window (two samples) no longer holds it, the budget climbs by a tenth of the capacity
        // per second.
        link.step(barge: floor, other: 0)
        link.step(barge: floor, other: 0)
        #expect(link.controller.state == .clear)
        let afterOneStep = try #require(link.limit)
        #expect(afterOneStep > floor && afterOneStep < floor + Self.link * 0.05)
        var seconds = 0.25
        while let limit = link.limit {
            link.step(barge: limit, other: 0)
            if seconds > 20 { break }
            seconds += 0.25
        }
        #expect(seconds > 8 && seconds < 11, "\(seconds) s to climb back")
        #expect(link.controller.budget == .off)
    }

    /// A little traffic beside Barge's (below 5 % of the link) is not the user's download: no back-off.
    @Test func chatterBelowTheThresholdIsNotYieldedTo() {
        var link = Link()
        for _ in 0..<40 { link.step(barge: Self.link * 0.9, other: Self.link * 0.03) }
        #expect(link.controller.budget == .off)
    }

    /// Other traffic on a link with room to spare (Barge's origin is slow) is not yielded to: nobody waits.
    @Test func otherTrafficOnALinkWithRoomIsNotYieldedTo() {
        var link = Link()
        for _ in 0..<20 { link.step(barge: Self.link, other: 0) }  // the link's capacity, seen once
        for _ in 0..<40 { link.step(barge: Self.link * 0.2, other: Self.link * 0.3) }
        #expect(link.controller.budget == .off)
        #expect(link.controller.state == .clear)
    }

    /// The two counters read a few milliseconds apart: one sample's skew (Barge's bytes counted late) is not other
    /// traffic.
    @Test func aSkewBetweenTheTwoReadsIsNotOtherTraffic() {
        var controller = YieldController()
        var link: UInt64 = 0
        var barge: UInt64 = 0
        for step in 1...40 {
            link += 1_600_000  // a full 50 Mbit/s link, a quarter second at a time
            barge += 1_520_000
            // Every fifth read of Barge's bytes comes 20 ms late on the link's: 125 KB that show up next time.
            let late: UInt64 = step % 5 == 0 ? 125_000 : 0
            controller.sample(at: Double(step) * 0.25, linkBytes: link, bargeBytes: barge - late)
        }
        #expect(controller.budget == .off)
    }

    /// A hint says the link is slower than it looked (an LTE modem behind Ethernet): the thresholds and the floor
    /// follow the hint, not what was measured.
    @Test func aCapacityHintSetsTheScale() throws {
        // The modem carries 1 MB/s; its Ethernet side could carry far more. 80 KB/s of other traffic beside
        // Barge's 900 KB/s is over 5 % of the hint (and would be under 5 % of the interface).
        var link = Link(YieldController.Settings(capacity: ByteRate(bytesPerSecond: 1_000_000)))
        link.step(barge: 900_000, other: 80_000)
        link.step(barge: 900_000, other: 80_000)
        #expect(link.controller.capacity == 1_000_000)
        #expect(link.controller.state != .clear)
        for _ in 0..<10 { link.step(barge: link.limit ?? 0, other: 980_000) }
        #expect(link.limit == 20_000)
    }

    /// A counter that goes back (the interface was made again) is a new series, not a huge negative rate.
    @Test func aCounterThatGoesBackStartsAgain() {
        var controller = YieldController()
        controller.sample(at: 0, linkBytes: 1_000_000, bargeBytes: 0)
        let changed = controller.sample(at: 1, linkBytes: 10, bargeBytes: 0)
        #expect(!changed)
        #expect(controller.state == .clear && controller.budget == .off)
    }
}
