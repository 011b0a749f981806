/// A number of bytes, as written in manifests: `1048576`, `500MB`, `4GiB`, `1.5 GiB`.
///
/// Decimal units (`KB`, `MB`, `GB`, `TB`) count in 1000s, binary units (`KiB`, `MiB`, `GiB`, `TiB`) in 1024s;
/// unit names are case-insensitive. Fractions are allowed and rounded down to whole bytes.
public struct ByteCount: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The count.
    public var bytes: UInt64

    /// Creates a count of `bytes`.
    public init(_ bytes: UInt64) {
        self.bytes = bytes
    }

    /// The units a size may carry, with their multipliers, longest spelling first so that `KiB` wins over `B`.
    static let units: [(name: String, multiplier: UInt64)] = [
        ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
        ("KB", 1_000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000),
        ("B", 1),
    ]

    /// Parses a size.
    ///
    /// - Throws: ``UnitError`` naming the accepted forms.
    public init(parsing text: String) throws(UnitError) {
        let trimmed = text.trimmingASCIIWhitespace()
        guard let bytes = Self.parseBytes(trimmed, multiplier: 1) else {
            throw UnitError(
                "'\(text)' is not a size; expected bytes or a number with B, KB, MB, GB, TB, KiB, MiB, GiB or TiB "
                    + "(for example 500MB or 4GiB)"
            )
        }
        self.bytes = bytes
    }

    /// Parses `NUMBER[ ]UNIT` where the unit is a size unit optionally followed by `suffix` (e.g. `/s`).
    static func parseBytes(_ text: Substring, multiplier extra: UInt64) -> UInt64? {
        let numberEnd = text.firstIndex { !($0.isASCIIDigit || $0 == ".") } ?? text.endIndex
        guard let number = DecimalLiteral(text[..<numberEnd]) else { return nil }
        let unitText = text[numberEnd...].trimmingASCIIWhitespace()
        if unitText.isEmpty {
            guard number.fractionDigits == 0 else { return nil }
            return number.scaled(by: extra)
        }
        guard let unit = Self.units.first(where: { $0.name.caseInsensitiveEquals(unitText) }) else { return nil }
        let (multiplier, overflow) = unit.multiplier.multipliedReportingOverflow(by: extra)
        guard !overflow else { return nil }
        return number.scaled(by: multiplier)
    }

    /// The shortest exact spelling: the largest unit that divides the count (binary units preferred).
    public var description: String { Self.format(self.bytes) }

    static func format(_ bytes: UInt64) -> String {
        guard bytes > 0 else { return "0B" }
        for (name, multiplier) in [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
            as [(String, UInt64)] where bytes % multiplier == 0
        {
            return "\(bytes / multiplier)\(name)"
        }
        for (name, multiplier) in [("TB", 1_000_000_000_000), ("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1_000)]
            as [(String, UInt64)] where bytes % multiplier == 0
        {
            return "\(bytes / multiplier)\(name)"
        }
        return "\(bytes)B"
    }

    /// A rounded figure for people: `4.2 GiB`, `512 B`.
    public var humanReadable: String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var value = Double(self.bytes)
        var index = 0
        while value >= 1024, index < units.count - 1 {
            value /= 1024
            index += 1
        }
        if index == 0 { return "\(self.bytes) B" }
        let tenths = (value * 10).rounded() / 10
        let text = tenths == tenths.rounded() ? String(Int(tenths)) : String(tenths)
        return "\(text) \(units[index])"
    }

    public static func < (lhs: ByteCount, rhs: ByteCount) -> Bool { lhs.bytes < rhs.bytes }
}

extension StringProtocol {
    /// The text without leading and trailing spaces and tabs.
    func trimmingASCIIWhitespace() -> Substring {
        let characters = Substring(self)
        guard let start = characters.firstIndex(where: { $0 != " " && $0 != "\t" }) else { return "" }
        let end = characters.lastIndex(where: { $0 != " " && $0 != "\t" })!
        return characters[start...end]
    }

    /// ASCII case-insensitive equality.
    func caseInsensitiveEquals(_ other: some StringProtocol) -> Bool {
        self.lowercased() == other.lowercased()
    }
}
