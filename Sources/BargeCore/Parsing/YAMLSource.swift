import Yams

/// A YAML document composed into a node tree that keeps every node's position, plus the diagnostics found while
/// reading it. The manifest and config parsers walk the tree through this type so that every problem is reported
/// at the node at fault.
struct YAMLSource {
    /// The file's path, as it appears in diagnostics.
    let file: String
    /// The problems found so far.
    private(set) var diagnostics: [Diagnostic] = []

    init(file: String) {
        self.file = file
    }

    /// Composes `text`; a syntax error becomes a diagnostic at its position and the result is nil.
    mutating func compose(_ text: String) -> Node? {
        do {
            // The basic resolver tags every scalar as a string: the parsers read raw text themselves (so `off`
            // and `no` stay words, and `0644` stays octal text), and no regular expression runs per scalar.
            return try Yams.compose(yaml: text, .basic)
        } catch let error as YamlError {
            self.report(error, text: text)
        } catch {
            self.diagnostics.append(.error(at: .start(of: self.file), "cannot read YAML: \(error)"))
        }
        return nil
    }

    private mutating func report(_ error: YamlError, text: String) {
        switch error {
        case .scanner(let context, let problem, let mark, _),
            .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let detail = context.map { "\(problem) \($0.text)" } ?? problem
            self.diagnostics.append(.error(at: self.location(mark), "YAML syntax: \(detail)"))
        case .duplicatedKeysInMapping(let duplicates, let context):
            // Yams gives the first occurrence of the first duplicated key; the line to delete is the later one.
            let first = self.location(context.mark)
            if duplicates.count == 1, let key = duplicates.first,
                let second = Self.laterOccurrence(of: key, after: first, in: text)
            {
                self.diagnostics.append(
                    .error(
                        at: SourceLocation(file: self.file, line: second.line, column: second.column),
                        "key '\(key)' appears more than once in this mapping (first at line \(first.line), column "
                            + "\(first.column)); delete one of them"
                    )
                )
            } else {
                let names = duplicates.map { "'\($0)'" }.joined(separator: ", ")
                self.diagnostics.append(
                    .error(at: first, "key \(names) appears more than once in this mapping; keep one of them")
                )
            }
        case .reader(let problem, _, _, _):
            self.diagnostics.append(.error(at: .start(of: self.file), "not readable as UTF-8 text: \(problem)"))
        case .dataCouldNotBeDecoded:
            self.diagnostics.append(.error(at: .start(of: self.file), "not readable as UTF-8 text"))
        case .no, .memory, .writer, .emitter, .representer:
            self.diagnostics.append(.error(at: .start(of: self.file), "cannot read YAML: \(error)"))
        }
    }

    /// Where `key` stands again in the block mapping whose key at `first` it repeats: the next line at the same
    /// indentation that starts with the key (plain or quoted) and a colon, before the mapping ends (a line indented
    /// less). Nil when it cannot be told (a flow mapping, a key written another way).
    static func laterOccurrence(
        of key: String,
        after first: SourceLocation,
        in text: String
    ) -> (line: Int, column: Int)? {
        var number = 0
        for line in YAMLLines.split(text) {
            number += 1
            guard number > first.line else { continue }
            let indent = line.prefix { $0 == " " }.count
            let rest = line.dropFirst(indent)
            if rest.isEmpty || rest.hasPrefix("#") { continue }
            if indent + 1 < first.column { return nil }  // the mapping ended
            guard indent + 1 == first.column else { continue }
            for written in [key, "\"\(key)\"", "'\(key)'"] where rest.hasPrefix(written) {
                if rest.dropFirst(written.count).drop(while: { $0 == " " }).hasPrefix(":") {
                    return (number, indent + 1)
                }
            }
        }
        return nil
    }

    func location(_ mark: Mark?) -> SourceLocation {
        guard let mark else { return .start(of: self.file) }
        return SourceLocation(file: self.file, line: max(mark.line, 1), column: max(mark.column, 1))
    }

    func location(_ node: Node) -> SourceLocation { self.location(node.mark) }

    mutating func error(_ node: Node, _ message: String) {
        self.diagnostics.append(.error(at: self.location(node), message))
    }

    mutating func error(at location: SourceLocation, _ message: String) {
        self.diagnostics.append(.error(at: location, message))
    }

    mutating func warning(_ node: Node, _ message: String) {
        self.diagnostics.append(.warning(at: self.location(node), message))
    }

    mutating func append(_ diagnostics: [Diagnostic]) {
        self.diagnostics += diagnostics
    }

    /// The number of errors reported so far, to tell whether a sub-tree added any.
    var errorCount: Int { self.diagnostics.count { $0.severity == .error } }

    // MARK: Shapes

    /// A noun phrase for what a node is, for "expected X, found Y" messages.
    static func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let scalar): Self.isNull(scalar) ? "nothing" : "'\(scalar.string)'"
        case .mapping: "a mapping"
        case .sequence: "a list"
        case .alias: "an alias"
        }
    }

    /// Whether a scalar is YAML's null: empty, `~` or `null`, unquoted.
    static func isNull(_ scalar: Node.Scalar) -> Bool {
        scalar.style == .plain && ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    /// The node's pairs with string keys, or nil (and an error) when it is not a mapping.
    mutating func mapping(_ node: Node, _ what: String) -> [(key: String, keyNode: Node, value: Node)]? {
        guard case .mapping(let mapping) = node else {
            self.error(node, "\(what) must be a mapping of keys to values, found \(Self.describe(node))")
            return nil
        }
        var pairs: [(key: String, keyNode: Node, value: Node)] = []
        for (keyNode, value) in mapping {
            guard case .scalar(let key) = keyNode else {
                self.error(keyNode, "a key in \(what) must be a plain word, found \(Self.describe(keyNode))")
                continue
            }
            pairs.append((key.string, keyNode, value))
        }
        return pairs
    }

    /// Reports every key not in `allowed`, with the nearest valid key; returns the pairs whose keys are allowed.
    mutating func knownPairs(
        _ node: Node,
        _ what: String,
        allowed: [String],
        hint: (String) -> String? = { _ in nil }
    ) -> [(key: String, keyNode: Node, value: Node)]? {
        guard let pairs = self.mapping(node, what) else { return nil }
        return pairs.filter { pair in
            if allowed.contains(pair.key) { return true }
            let advice =
                hint(pair.key) ?? Suggestion.nearest(to: pair.key, in: allowed).map { "did you mean '\($0)'?" } ?? ""
            let suffix = advice.isEmpty ? "; valid keys: \(allowed.joined(separator: ", "))" : "; \(advice)"
            self.error(pair.keyNode, "unknown key '\(pair.key)' in \(what)\(suffix)")
            return false
        }
    }

    /// The node's text when it is a non-empty scalar; else an error naming `key` and nil.
    mutating func string(_ node: Node, _ key: String) -> String? {
        guard case .scalar(let scalar) = node else {
            self.error(node, "'\(key)' must be a single value, found \(Self.describe(node))")
            return nil
        }
        if scalar.string.isEmpty || Self.isNull(scalar) {
            self.error(node, "'\(key)' is empty")
            return nil
        }
        return scalar.string
    }

    /// A list of non-empty strings; a single string is refused with advice to write a list.
    mutating func stringList(_ node: Node, _ key: String, allowEmpty: Bool = false) -> [String]? {
        guard case .sequence(let sequence) = node else {
            self.error(node, "'\(key)' must be a list such as [a, b], found \(Self.describe(node))")
            return nil
        }
        if sequence.isEmpty && !allowEmpty {
            self.error(node, "'\(key)' is an empty list")
            return nil
        }
        var values: [String] = []
        var ok = true
        for item in sequence {
            if let value = self.string(item, key) { values.append(value) } else { ok = false }
        }
        return ok ? values : nil
    }

    /// A whole number in `range`.
    mutating func integer(_ node: Node, _ key: String, in range: ClosedRange<Int>) -> Int? {
        guard let text = self.string(node, key) else { return nil }
        guard let value = Int(text) else {
            self.error(node, "'\(key)' must be a whole number, found '\(text)'")
            return nil
        }
        guard range.contains(value) else {
            self.error(node, "'\(key)' must be between \(range.lowerBound) and \(range.upperBound), found \(value)")
            return nil
        }
        return value
    }

    /// `true` or `false`.
    mutating func boolean(_ node: Node, _ key: String) -> Bool? {
        guard let text = self.string(node, key) else { return nil }
        switch text {
        case "true": return true
        case "false": return false
        default:
            self.error(node, "'\(key)' must be true or false, found '\(text)'")
            return nil
        }
    }

    /// One of an enumeration's spellings, with a did-you-mean.
    mutating func choice<Value: RawRepresentable & CaseIterable>(
        _ node: Node,
        _ key: String,
        as type: Value.Type
    ) -> Value? where Value.RawValue == String {
        guard let text = self.string(node, key) else { return nil }
        if let value = Value(rawValue: text) { return value }
        let names = Value.allCases.map(\.rawValue)
        self.error(
            node,
            "'\(text)' is not a valid \(key); expected one of \(names.joined(separator: ", "))"
                + Suggestion.hint(for: text, in: names)
        )
        return nil
    }

    /// A value in one of the unit syntaxes; the unit's own message on failure.
    mutating func unit<Value>(_ node: Node, _ key: String, _ parse: (String) throws(UnitError) -> Value) -> Value? {
        guard let text = self.string(node, key) else { return nil }
        do {
            return try parse(text)
        } catch {
            self.error(node, "'\(key)': \(error.message)")
            return nil
        }
    }
}
