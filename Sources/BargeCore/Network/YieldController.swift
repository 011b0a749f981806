/// Yielding one link to the user's own traffic: from samples of the link's byte counter and of Barge's own bytes
/// on it, how much the background transfers on the link may use. Pure: the agent feeds it samples and applies its
/// budget; tests feed it numbers.
///
/// The traffic that is not Barge's is the link's bytes less Barge's (with the headers Barge's payload costs on the
/// wire), over the last two samples (a skew between the two counters' reads cancels out). While it is above a
/// small threshold (another program is transferring) and the link is contended (it carries 80 % of its capacity or
/// more), the budget is halved at each sample down to a floor: a fast back-off, under two seconds from a full link.
/// Otherwise the budget climbs back by a fixed step per second (additive increase, slow), and once it passes the
/// link's capacity the background transfers are unlimited again: other traffic on a link with room to spare (a
/// slow origin) is not yielded to. The capacity is the hint when given (a link slower than its interface), else the
/// highest rate the link was seen to carry, slowly forgotten.
public struct YieldController: Sendable {
    /// Which way the yielding transfers' bytes go on a link: downloads receive, uploads send. Each direction of a
    /// link has its own controller, budget and counters.
    public enum Direction: String, Sendable, Hashable, CaseIterable {
        /// Downloads: the link's received bytes.
        case receiving
        /// Uploads: the link's sent bytes.
        case sending
    }

    /// How the controller reacts.
    public struct Settings: Sendable, Hashable {
        /// The link's capacity, when known better than by measuring (barge.yaml `yield.capacity`).
        public var capacity: ByteRate?
        /// Other traffic counts once above this share of the capacity.
        public var threshold: Double = 0.05
        /// … on a link that carries at least this share of its capacity.
        public var contended: Double = 0.8
        /// … and above this many bytes per second (a few packets of chatter are not the user's traffic).
        public var minimumThreshold: Double = 16_000
        /// The budget never goes below this share of the capacity (the connections stay alive and keep their place).
        public var floor: Double = 0.02
        /// … nor below this many bytes per second.
        public var minimumFloor: Double = 8_192
        /// The budget is multiplied by this at each sample that sees other traffic.
        public var decrease: Double = 0.5
        /// Seconds the budget takes to climb from nothing to the capacity while the link is Barge's alone.
        public var climbSeconds: Double = 10
        /// Barge's payload on the wire: TCP/IP and Ethernet headers (66 bytes for 1,448 of payload), with a margin.
        public var overhead: Double = 1.06
        /// The half-life, in seconds, of the highest rate seen (the measured capacity).
        public var capacityHalfLife: Double = 600

        /// Settings with the defaults and a capacity hint.
        public init(capacity: ByteRate? = nil) { self.capacity = capacity }
    }

    /// Whether the background transfers back off now.
    public enum State: Sendable, Hashable {
        /// No other traffic on a contended link: the budget is climbing back, or off.
        case clear
        /// Other traffic uses the contended link at this rate (bytes per second): the background transfers back off.
        case yielding(otherBytesPerSecond: Double)
    }

    /// The settings.
    public var settings: Settings
    /// The budget of the background transfers on the link; `off` once it has climbed past the capacity.
    public private(set) var budget: RateLimit = .off
    /// Whether other traffic uses the link.
    public private(set) var state: State = .clear
    /// The link's capacity as measured or hinted, bytes per second (0 before the first sample).
    public private(set) var capacity: Double = 0
    /// The other traffic's rate at the last sample, bytes per second.
    public private(set) var otherBytesPerSecond: Double = 0
    /// Barge's rate on the link at the last sample, bytes per second.
    public private(set) var bargeBytesPerSecond: Double = 0
    /// The budget as a number while it is not `off`.
    private var limit: Double?
    private var peak: Double = 0
    /// Samples in a row the budget held (other traffic still there, the link not full).
    private var held = 0
    /// The most samples in a row the budget holds: long enough for a new connection to ramp up behind Barge's
    /// queued bytes, short enough that steady light traffic (a call) does not keep the background at the floor.
    static let maximumHold = 8
    /// The last two samples, the later last.
    private var samples: [(time: Double, link: UInt64, barge: UInt64)] = []

    /// A controller with no sample yet.
    public init(settings: Settings = Settings()) {
        self.settings = settings
        self.capacity = settings.capacity.map { Double($0.bytesPerSecond) } ?? 0
    }

    /// Takes a sample: `linkBytes`, the interface's counter in the transfers' direction (received bytes for
    /// downloads); `bargeBytes`, the bytes Barge's transfers moved on it; both counting up, at `time` (seconds,
    /// monotonic). Returns whether the budget changed.
    @discardableResult
    public mutating func sample(at time: Double, linkBytes: UInt64, bargeBytes: UInt64) -> Bool {
        let now = (time: time, link: linkBytes, barge: bargeBytes)
        guard let last = self.samples.last, time > last.time else {
            self.samples = [now]
            return false
        }
        // A counter that went back (the interface was made again, a connection closed unread) starts a new series.
        guard linkBytes >= last.link, bargeBytes >= last.barge else {
            self.samples = [now]
            return false
        }
        let first =
            self.samples.count == 2 && linkBytes >= self.samples[0].link && bargeBytes >= self.samples[0].barge
            ? self.samples[0] : last
        self.samples = [last, now]
        // The link's own rate, for its capacity, over the last interval; the other traffic over the last two.
        let linkRate = Double(linkBytes - last.link) / (time - last.time)
        let span = time - first.time
        let windowLinkRate = Double(linkBytes - first.link) / span
        let bargeRate = Double(bargeBytes - first.barge) / span
        self.bargeBytesPerSecond = bargeRate
        let other = max(0, windowLinkRate - bargeRate * self.settings.overhead)
        self.otherBytesPerSecond = other
        if let hint = self.settings.capacity {
            self.capacity = Double(hint.bytesPerSecond)
        } else {
            let interval = time - last.time
            self.peak = max(linkRate, self.peak * Self.decay(interval, halfLife: self.settings.capacityHalfLife))
            self.capacity = self.peak
        }
        let before = self.budget
        let threshold = max(self.settings.minimumThreshold, self.settings.threshold * self.capacity)
        let floor = max(self.settings.minimumFloor, self.settings.floor * self.capacity)
        let contended = windowLinkRate >= self.settings.contended * self.capacity
        if other > threshold, contended {
            self.held = 0
            self.state = .yielding(otherBytesPerSecond: other)
            // From what Barge uses now (a budget above it would take a while to bite).
            let from = min(self.limit ?? .infinity, max(bargeRate, floor))
            self.limit = max(floor, from * self.settings.decrease)
        } else if other > threshold, case .yielding = self.state, self.held < Self.maximumHold {
            // The other traffic is still there but does not fill the link yet (a new connection ramping up
            // behind Barge's queued bytes): the budget holds for a while, and falls again if the link fills.
            self.held += 1
            self.state = .yielding(otherBytesPerSecond: other)
        } else {
            self.held = 0
            self.state = .clear
            if let limit = self.limit {
                let climbed = limit + self.capacity / self.settings.climbSeconds * (time - last.time)
                self.limit = climbed >= self.capacity ? nil : climbed
            }
        }
        self.budget = self.limit.map { .limited(ByteRate(bytesPerSecond: max(1, UInt64($0)))) } ?? .off
        return self.budget != before
    }

    /// `0.5` to the power of `span / halfLife`.
    static func decay(_ span: Double, halfLife: Double) -> Double {
        var factor = 1.0
        var left = span / halfLife
        // exp2 without Foundation: halve per whole half-life, then a linear step for the rest (close enough for a
        // slowly forgotten peak).
        while left >= 1 {
            factor *= 0.5
            left -= 1
        }
        return factor * (1 - 0.5 * left)
    }
}
