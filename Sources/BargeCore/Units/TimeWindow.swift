/// A day of the week, spelt `mon` … `sun` (full names are accepted too).
public enum Weekday: Int, CaseIterable, Hashable, Sendable, Comparable, CustomStringConvertible {
    case monday = 1
    case tuesday, wednesday, thursday, friday, saturday, sunday

    /// The three-letter name used in manifests.
    public var description: String {
        switch self {
        case .monday: "mon"
        case .tuesday: "tue"
        case .wednesday: "wed"
        case .thursday: "thu"
        case .friday: "fri"
        case .saturday: "sat"
        case .sunday: "sun"
        }
    }

    /// Parses `mon` or `monday`, case-insensitively.
    public init(parsing text: some StringProtocol) throws(UnitError) {
        let lowered = text.trimmingASCIIWhitespace().lowercased()
        let fullNames = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
        for day in Weekday.allCases where lowered == day.description || lowered == fullNames[day.rawValue - 1] {
            self = day
            return
        }
        throw UnitError(
            "'\(text)' is not a weekday; expected one of mon, tue, wed, thu, fri, sat, sun"
                + Suggestion.hint(for: String(lowered), in: Weekday.allCases.map(\.description))
        )
    }

    public static func < (lhs: Weekday, rhs: Weekday) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A set of weekdays, spelt as a comma list with ranges: `mon-fri`, `sat,sun`, `fri-mon` (wrapping).
public struct WeekdaySet: Hashable, Sendable, CustomStringConvertible {
    /// The days; never empty.
    public var days: Set<Weekday>

    /// Every day of the week.
    public static let everyDay = WeekdaySet(days: Set(Weekday.allCases))

    /// Creates a set; `days` must not be empty.
    public init(days: Set<Weekday>) {
        precondition(!days.isEmpty, "a weekday set is not empty")
        self.days = days
    }

    /// Parses `mon-fri`, `sat,sun`, `mon,wed-fri`.
    public init(parsing text: some StringProtocol) throws(UnitError) {
        var days = Set<Weekday>()
        for item in text.split(separator: ",") {
            let bounds = item.split(separator: "-", omittingEmptySubsequences: false)
            switch bounds.count {
            case 1:
                days.insert(try Weekday(parsing: bounds[0]))
            case 2:
                let first = try Weekday(parsing: bounds[0])
                let last = try Weekday(parsing: bounds[1])
                var day = first
                while true {
                    days.insert(day)
                    if day == last { break }
                    day = Weekday(rawValue: day.rawValue % 7 + 1)!
                }
            default:
                throw UnitError("'\(item)' is not a weekday or a range of weekdays such as mon-fri")
            }
        }
        guard !days.isEmpty else { throw UnitError("'\(text)' names no weekday; expected e.g. mon-fri or sat,sun") }
        self.days = days
    }

    /// Whether the set holds `day`.
    public func contains(_ day: Weekday) -> Bool { self.days.contains(day) }

    /// Runs of three or more consecutive days (Monday to Sunday) as ranges, other days listed: `mon-wed,fri`.
    public var description: String {
        var parts: [String] = []
        var runStart: Weekday?
        var previous: Weekday?
        func closeRun() {
            guard let start = runStart, let end = previous else { return }
            let length = end.rawValue - start.rawValue + 1
            if length >= 3 {
                parts.append("\(start)-\(end)")
            } else {
                for raw in start.rawValue...end.rawValue { parts.append(Weekday(rawValue: raw)!.description) }
            }
        }
        for day in Weekday.allCases where self.days.contains(day) {
            if let last = previous, last.rawValue + 1 == day.rawValue {
                previous = day
                continue
            }
            closeRun()
            runStart = day
            previous = day
        }
        closeRun()
        return parts.joined(separator: ",")
    }
}

/// A daily time window in local time: `22:00-06:00` (may cross midnight), optionally on some weekdays only:
/// `mon-fri 22:00-06:00`.
///
/// A window that crosses midnight belongs to the day it starts on. `24:00` is allowed as an end.
public struct TimeWindow: Hashable, Sendable, CustomStringConvertible {
    /// Minutes after midnight at which the window opens (0 ..< 1440).
    public var start: Int
    /// Minutes after midnight at which it closes (1 ... 1440); less than `start` when it crosses midnight.
    public var end: Int
    /// The days on which the window opens.
    public var days: WeekdaySet

    /// Creates a window; `start` and `end` are minutes after midnight and differ.
    public init(start: Int, end: Int, days: WeekdaySet = .everyDay) {
        precondition((0..<1440).contains(start) && (1...1440).contains(end) && start != end)
        self.start = start
        self.end = end
        self.days = days
    }

    /// Parses `[DAYS ]HH:MM-HH:MM`.
    ///
    /// - Throws: ``UnitError`` naming the accepted form.
    public init(parsing text: String) throws(UnitError) {
        let trimmed = text.trimmingASCIIWhitespace()
        let pieces = trimmed.split(separator: " ", omittingEmptySubsequences: true)
        let hours: Substring
        switch pieces.count {
        case 1:
            self.days = .everyDay
            hours = pieces[0]
        case 2:
            self.days = try WeekdaySet(parsing: pieces[0])
            hours = pieces[1]
        default:
            throw UnitError(
                "'\(text)' is not a time window; expected HH:MM-HH:MM, optionally after days: mon-fri 22:00-06:00"
            )
        }
        let bounds = hours.split(separator: "-", omittingEmptySubsequences: false)
        guard bounds.count == 2 else {
            throw UnitError("'\(text)' is not a time window; expected HH:MM-HH:MM such as 22:00-06:00")
        }
        let start = try Self.parseClock(bounds[0], in: text)
        let end = try Self.parseClock(bounds[1], in: text)
        guard start < 1440 else { throw UnitError("'\(text)' starts at 24:00; start at 00:00 instead") }
        guard start != end else {
            throw UnitError("'\(text)' opens and closes at the same time; for all day write 00:00-24:00")
        }
        self.start = start
        self.end = end == 0 ? 1440 : end
        if self.start == self.end {
            throw UnitError("'\(text)' opens and closes at the same time; for all day write 00:00-24:00")
        }
    }

    /// Parses `HH:MM` (or `H:MM`) into minutes after midnight; `24:00` is 1440.
    static func parseClock(_ text: Substring, in whole: String) throws(UnitError) -> Int {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, (1...2).contains(parts[0].count), parts[1].count == 2,
            parts.allSatisfy({ $0.allSatisfy(\.isASCIIDigit) }),
            let hour = Int(parts[0]), let minute = Int(parts[1])
        else {
            throw UnitError("'\(text)' in '\(whole)' is not a time of day; expected HH:MM such as 06:30")
        }
        guard hour < 24 && minute < 60 || hour == 24 && minute == 0 else {
            throw UnitError("'\(text)' in '\(whole)' is not a time of day; hours go to 23 and minutes to 59")
        }
        return hour * 60 + minute
    }

    static func formatClock(_ minutes: Int) -> String {
        let hour = minutes / 60
        let minute = minutes % 60
        return (hour < 10 ? "0" : "") + "\(hour):" + (minute < 10 ? "0" : "") + "\(minute)"
    }

    /// Whether the window crosses midnight.
    public var crossesMidnight: Bool { self.end < self.start }

    /// `mon-fri 22:00-06:00`, or `22:00-06:00` on every day.
    public var description: String {
        let hours = "\(Self.formatClock(self.start))-\(Self.formatClock(self.end))"
        return self.days == .everyDay ? hours : "\(self.days) \(hours)"
    }
}
