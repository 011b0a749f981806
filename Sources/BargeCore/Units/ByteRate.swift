/// A transfer rate in bytes per second: `5MiB/s`, `800KB/s`, or in bits: `20Mbit/s`.
///
/// Bit rates (`bit/s`, `Kbit/s`, `Mbit/s`, `Gbit/s`, 1000s) are converted to bytes and rounded down.
public struct ByteRate: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// Bytes per second; never zero.
    public var bytesPerSecond: UInt64

    /// Creates a rate; `bytesPerSecond` must be positive.
    public init(bytesPerSecond: UInt64) {
        precondition(bytesPerSecond > 0, "a rate is positive")
        self.bytesPerSecond = bytesPerSecond
    }

    static let bitUnits: [(name: String, multiplier: UInt64)] = [
        ("Kbit", 1_000), ("Mbit", 1_000_000), ("Gbit", 1_000_000_000), ("bit", 1),
    ]

    static let expected =
        "expected a size per second such as 5MiB/s or 800KB/s, or a bit rate such as 20Mbit/s"

    /// Parses a rate (not `off`; see ``RateLimit``).
    ///
    /// - Throws: ``UnitError`` naming the accepted forms.
    public init(parsing text: String) throws(UnitError) {
        let trimmed = text.trimmingASCIIWhitespace()
        guard trimmed.hasSuffix("/s") else {
            throw UnitError("'\(text)' is not a rate; \(Self.expected)")
        }
        let amount = trimmed.dropLast(2).trimmingASCIIWhitespace()
        var bytes: UInt64?
        if let bitUnit = Self.bitUnits.first(where: { amount.lowercased().hasSuffix($0.name.lowercased()) }) {
            let number = amount.dropLast(bitUnit.name.count).trimmingASCIIWhitespace()
            bytes = DecimalLiteral(number)?.scaled(by: bitUnit.multiplier, dividedBy: 8)
        } else {
            bytes = ByteCount.parseBytes(amount, multiplier: 1)
        }
        guard let bytes else {
            throw UnitError("'\(text)' is not a rate; \(Self.expected)")
        }
        guard bytes > 0 else {
            throw UnitError("'\(text)' is less than 1 byte per second; write 'off' for no limit")
        }
        self.bytesPerSecond = bytes
    }

    /// The exact spelling in bytes: `5MiB/s`.
    public var description: String { "\(ByteCount.format(self.bytesPerSecond))/s" }

    /// A rounded figure for people: `4.2 MiB/s`.
    public var humanReadable: String { "\(ByteCount(self.bytesPerSecond).humanReadable)/s" }

    public static func < (lhs: ByteRate, rhs: ByteRate) -> Bool { lhs.bytesPerSecond < rhs.bytesPerSecond }
}

/// A rate cap that may be switched off: `off`, or a ``ByteRate``.
public enum RateLimit: Hashable, Sendable, CustomStringConvertible {
    /// No cap.
    case off
    /// At most this rate.
    case limited(ByteRate)

    /// Parses `off` or a rate.
    ///
    /// - Throws: ``UnitError`` naming the accepted forms.
    public init(parsing text: String) throws(UnitError) {
        if text.trimmingASCIIWhitespace().caseInsensitiveEquals("off") {
            self = .off
            return
        }
        do {
            self = .limited(try ByteRate(parsing: text))
        } catch {
            throw UnitError("'\(text)' is not a rate or 'off'; \(ByteRate.expected)")
        }
    }

    /// The cap, or nil when off.
    public var rate: ByteRate? {
        switch self {
        case .off: nil
        case .limited(let rate): rate
        }
    }

    public var description: String {
        switch self {
        case .off: "off"
        case .limited(let rate): rate.description
        }
    }
}
