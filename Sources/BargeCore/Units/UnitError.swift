/// A value that does not parse as the unit it should be; `message` says what was expected.
public struct UnitError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What is wrong and what would be valid.
    public var message: String

    /// Creates the error.
    public init(_ message: String) {
        self.message = message
    }

    public var description: String { self.message }
}

/// A decimal number split into whole and fractional digits, for exact unit arithmetic without floating point.
struct DecimalLiteral {
    var whole: UInt64
    var fraction: UInt64
    var fractionDigits: Int

    /// Parses `12`, `12.5`, `0.25`; nil for anything else.
    init?(_ text: Substring) {
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let wholeText = parts.first, !wholeText.isEmpty, wholeText.allSatisfy(\.isASCIIDigit),
            let whole = UInt64(wholeText)
        else { return nil }
        self.whole = whole
        self.fraction = 0
        self.fractionDigits = 0
        if parts.count == 2 {
            let fractionText = parts[1]
            guard !fractionText.isEmpty, fractionText.count <= 9, fractionText.allSatisfy(\.isASCIIDigit),
                let fraction = UInt64(fractionText)
            else { return nil }
            self.fraction = fraction
            self.fractionDigits = fractionText.count
        }
    }

    /// `self × multiplier ÷ divisor`, rounded down; nil on overflow.
    func scaled(by multiplier: UInt64, dividedBy divisor: UInt64 = 1) -> UInt64? {
        var scale: UInt64 = 1
        for _ in 0..<self.fractionDigits { scale *= 10 }
        let (wholePart, overflow1) = self.whole.multipliedReportingOverflow(by: multiplier)
        guard !overflow1 else { return nil }
        let (fractionPart, overflow2) = self.fraction.multipliedReportingOverflow(by: multiplier)
        guard !overflow2 else { return nil }
        let (sum, overflow3) = wholePart.addingReportingOverflow(fractionPart / scale)
        guard !overflow3 else { return nil }
        return sum / divisor
    }
}

extension Character {
    /// `0`–`9` only (not other scripts' digits).
    var isASCIIDigit: Bool { self >= "0" && self <= "9" }
}
