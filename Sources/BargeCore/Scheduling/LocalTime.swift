/// An instant as the agent's local wall clock sees it: seconds since the Unix epoch plus the local offset from
/// UTC at that instant. Time windows and the bandwidth timetable are local; the store keeps epoch seconds.
///
/// Pure: the agent reads the clock and the zone offset; tests pass any instant.
public struct LocalTime: Hashable, Sendable, Comparable {
    /// Seconds since 1970-01-01T00:00:00Z.
    public var epochSeconds: Double
    /// Seconds east of UTC (3600 for CET, −18000 for EST).
    public var utcOffset: Int

    /// Creates an instant.
    public init(epochSeconds: Double, utcOffset: Int = 0) {
        self.epochSeconds = epochSeconds
        self.utcOffset = utcOffset
    }

    /// Seconds since the local midnight of 1970-01-01.
    var localSeconds: Double { self.epochSeconds + Double(self.utcOffset) }

    /// The local day number (0 = 1970-01-01, a Thursday).
    var localDay: Int { Int((self.localSeconds / 86_400).rounded(.down)) }

    /// The weekday of a local day number.
    static func weekday(ofDay day: Int) -> Weekday {
        // Day 0 was a Thursday (rawValue 4); Monday is 1.
        let index = ((day + 3) % 7 + 7) % 7  // 0 = Monday
        return Weekday(rawValue: index + 1)!
    }

    /// The epoch instant of a local day's minute (same offset).
    func epochSeconds(day: Int, minute: Int) -> Double {
        Double(day) * 86_400 + Double(minute) * 60 - Double(self.utcOffset)
    }

    public static func < (lhs: LocalTime, rhs: LocalTime) -> Bool { lhs.epochSeconds < rhs.epochSeconds }
}

extension TimeWindow {
    /// The window's occurrences that could contain or follow `time`: each as [open, close) in epoch seconds.
    func occurrences(around time: LocalTime, daysAhead: Int = 8) -> [(open: Double, close: Double)] {
        let today = time.localDay
        var result: [(open: Double, close: Double)] = []
        for day in (today - 1)...(today + daysAhead) where self.days.contains(LocalTime.weekday(ofDay: day)) {
            let open = time.epochSeconds(day: day, minute: self.start)
            let close = time.epochSeconds(day: day, minute: self.end + (self.crossesMidnight ? 1440 : 0))
            result.append((open, close))
        }
        return result
    }

    /// Whether the window is open at `time`.
    public func isOpen(at time: LocalTime) -> Bool {
        self.occurrences(around: time, daysAhead: 0).contains {
            $0.open <= time.epochSeconds && time.epochSeconds < $0.close
        }
    }

    /// The next instant after `time` at which the window opens or closes (nil if it never does: no days).
    public func nextChange(after time: LocalTime) -> Double? {
        var best: Double?
        for (open, close) in self.occurrences(around: time) {
            for edge in [open, close] where edge > time.epochSeconds {
                best = min(best ?? edge, edge)
            }
        }
        return best
    }
}

extension Array where Element == TimeWindow {
    /// Whether any window is open (an empty list means always).
    public func allowsTransfer(at time: LocalTime) -> Bool { self.isEmpty || self.contains { $0.isOpen(at: time) } }

    /// The next instant at which any window opens or closes.
    public func nextChange(after time: LocalTime) -> Double? { self.compactMap { $0.nextChange(after: time) }.min() }

    /// `22:00–06:00, sat-sun 00:00–24:00`, for reasons shown to people.
    public var summary: String { self.map(\.description).joined(separator: ", ") }
}

/// The bandwidth timetable of the agent config: from each row's time on its days, its limits hold until the next
/// row starts.
public struct BandwidthTimetable: Hashable, Sendable {
    /// The rows, in any order.
    public var rules: [BandwidthRule]

    /// Creates a timetable.
    public init(_ rules: [BandwidthRule]) { self.rules = rules }

    /// The row in force at `time` (the latest start at or before it, looking back a week), or nil without rows.
    public func rule(at time: LocalTime) -> BandwidthRule? {
        var best: (start: Double, rule: BandwidthRule)?
        let today = time.localDay
        for day in (today - 7)...today {
            let weekday = LocalTime.weekday(ofDay: day)
            for rule in self.rules where rule.days.contains(weekday) {
                let start = time.epochSeconds(day: day, minute: rule.at)
                if start <= time.epochSeconds, start > (best?.start ?? -.infinity) { best = (start, rule) }
            }
        }
        return best?.rule
    }

    /// The next instant after `time` at which another row starts.
    public func nextChange(after time: LocalTime) -> Double? {
        let today = time.localDay
        var best: Double?
        for day in today...(today + 7) {
            let weekday = LocalTime.weekday(ofDay: day)
            for rule in self.rules where rule.days.contains(weekday) {
                let start = time.epochSeconds(day: day, minute: rule.at)
                if start > time.epochSeconds { best = min(best ?? start, start) }
            }
        }
        return best
    }
}
