/// The lines of a YAML text as YAML (and libyaml, which places every mark) counts them: a CR LF ends one line, and
/// so do a lone CR, an LF, and the NEL, LS and PS characters. Line numbers in diagnostics are these lines'.
public enum YAMLLines {
    /// The lines of `text`, without their breaks; a text ending in a break has an empty last line.
    public static func split(_ text: String) -> [Substring] {
        var lines: [Substring] = []
        let scalars = text.unicodeScalars
        var start = scalars.startIndex
        var index = scalars.startIndex
        while index < scalars.endIndex {
            let scalar = scalars[index]
            guard Self.isBreak(scalar) else {
                index = scalars.index(after: index)
                continue
            }
            lines.append(Substring(scalars[start..<index]))
            index = scalars.index(after: index)
            if scalar == "\r", index < scalars.endIndex, scalars[index] == "\n" { index = scalars.index(after: index) }
            start = index
        }
        lines.append(Substring(scalars[start...]))
        return lines
    }

    /// Whether `scalar` ends a line.
    static func isBreak(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "\n", "\r", "\u{85}", "\u{2028}", "\u{2029}": true
        default: false
        }
    }
}
