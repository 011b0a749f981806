/// A length of time in whole seconds, as written in manifests: `30s`, `6h`, `1h30m`, `14d`, `2w`.
///
/// Units are `s`, `m`, `h`, `d` and `w`, combinable from the largest down; a bare number is refused because
/// `30` could mean seconds or minutes.
public struct TimeSpan: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The length in seconds.
    public var seconds: Int64

    /// Creates a span of `seconds`.
    public init(seconds: Int64) {
        precondition(seconds >= 0, "a time span is not negative")
        self.seconds = seconds
    }

    /// Creates a span of `minutes`.
    public static func minutes(_ minutes: Int64) -> TimeSpan { TimeSpan(seconds: minutes * 60) }
    /// Creates a span of `hours`.
    public static func hours(_ hours: Int64) -> TimeSpan { TimeSpan(seconds: hours * 3600) }
    /// Creates a span of `days`.
    public static func days(_ days: Int64) -> TimeSpan { TimeSpan(seconds: days * 86_400) }

    static let units: [(symbol: Character, seconds: Int64)] = [
        ("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1),
    ]

    /// Parses a duration.
    ///
    /// - Throws: ``UnitError`` naming the accepted forms.
    public init(parsing text: String) throws(UnitError) {
        let trimmed = text.trimmingASCIIWhitespace().lowercased()
        let invalid = UnitError(
            "'\(text)' is not a duration; expected a number with s, m, h, d or w, combinable (30s, 6h, 1h30m, 14d)"
        )
        guard !trimmed.isEmpty else { throw invalid }
        var total: Int64 = 0
        var number = ""
        var lastUnit = -1
        for character in trimmed {
            if character.isASCIIDigit {
                number.append(character)
                continue
            }
            guard !number.isEmpty, let value = Int64(number),
                let unitIndex = Self.units.firstIndex(where: { $0.symbol == character })
            else { throw invalid }
            guard unitIndex > lastUnit else {
                throw UnitError("'\(text)' repeats a unit or puts a smaller one first; write e.g. 1h30m")
            }
            lastUnit = unitIndex
            let (product, overflow) = value.multipliedReportingOverflow(by: Self.units[unitIndex].seconds)
            let (sum, overflow2) = total.addingReportingOverflow(product)
            guard !overflow, !overflow2 else { throw UnitError("'\(text)' is too long a duration") }
            total = sum
            number = ""
        }
        guard number.isEmpty else {
            throw UnitError("'\(text)' has no unit; write e.g. \(number)s, \(number)m or \(number)h")
        }
        self.seconds = total
    }

    /// The canonical spelling, largest unit first: `1d6h`, `90s` is `1m30s`, zero is `0s`.
    public var description: String {
        guard self.seconds > 0 else { return "0s" }
        var rest = self.seconds
        var text = ""
        for unit in Self.units where unit.symbol != "w" && rest >= unit.seconds {
            text += "\(rest / unit.seconds)\(unit.symbol)"
            rest %= unit.seconds
        }
        return text
    }

    /// The span as a Swift `Duration`.
    public var duration: Duration { .seconds(self.seconds) }

    public static func < (lhs: TimeSpan, rhs: TimeSpan) -> Bool { lhs.seconds < rhs.seconds }
}
