import BargeCore

/// What Barge's parsers must hold for any input whatever, checked on one input at a time: by libFuzzer's entry
/// (`scripts/fuzz.sh`, built with `-sanitize=fuzzer,address`) and by the replay runner of an ordinary build (the
/// committed corpus, in the test suite). A violated property is a crash, with the input kept by libFuzzer.
enum FuzzTarget: String, CaseIterable {
    /// A manifest (`ManifestParser`) under the system defaults.
    case manifest
    /// The agent's config file (`AgentConfigParser`).
    case config
    /// The units of both (sizes, rates, spans, windows, days).
    case units

    /// Runs the target on `bytes`; returns what it found broken, nil when every property holds.
    func check(_ bytes: UnsafeRawBufferPointer) -> String? {
        let text = String(decoding: bytes, as: UTF8.self)
        switch self {
        case .manifest: return Self.checkManifest(text)
        case .config: return Self.checkConfig(text)
        case .units: return Self.checkUnits(text)
        }
    }

    static let systemDefaults = AgentConfig.defaults(scope: .system)

    /// A valid manifest only with no error, every diagnostic placed in the text, the same result twice, every
    /// path it lets through (destinations, sources, `move-to` directories) inside the allowed roots, without `.`
    /// or `..` components, and none in the agent's own state or drop-in directory; every URL's scheme allowed.
    static func checkManifest(_ text: String) -> String? {
        let parser = ManifestParser(config: Self.systemDefaults)
        let parsed = parser.parse(text: text, path: "fuzz.yaml", id: "fuzz")
        if let broken = Self.checkDiagnostics(parsed.diagnostics, in: text, file: "fuzz.yaml") { return broken }
        if parsed.isValid == parsed.diagnostics.containsError {
            return "valid is \(parsed.isValid) with diagnostics \(parsed.diagnostics.map(\.message))"
        }
        let again = parser.parse(text: text, path: "fuzz.yaml", id: "fuzz")
        if again.diagnostics != parsed.diagnostics || again.manifest != parsed.manifest {
            return "a second parse differs: \(again.diagnostics) vs \(parsed.diagnostics)"
        }
        guard let manifest = parsed.manifest else { return nil }
        let roots = Self.systemDefaults.allowedRoots
        for path in manifest.downloads.map(\.destination) {
            if let broken = Self.checkConfined(path, roots: roots, mayBeRoot: false) { return broken }
        }
        var directories = manifest.uploads.map(\.source)
        for case .moveTo(let directory) in manifest.uploads.map(\.after) { directories.append(directory) }
        for path in directories {
            if let broken = Self.checkConfined(path, roots: roots, mayBeRoot: true) { return broken }
        }
        // Never into the agent's own state or drop-in directory.
        let own = [Self.systemDefaults.stateDirectory, Self.systemDefaults.manifestDirectory]
        for path in manifest.downloads.map(\.destination) + directories {
            if let directory = own.first(where: { path == $0 || path.hasPrefix($0 + "/") }) {
                return "\(path): inside barge's own \(directory)"
            }
        }
        for url in manifest.downloads.flatMap(\.urls) + manifest.uploads.map(\.urlTemplate) {
            let scheme = url.prefix { $0 != ":" }.lowercased()
            if !Self.systemDefaults.allowedSchemes.contains(scheme) { return "\(url): scheme '\(scheme)' let through" }
        }
        return nil
    }

    /// The config's diagnostics placed in the text, the same result twice.
    static func checkConfig(_ text: String) -> String? {
        let parser = AgentConfigParser(defaults: Self.systemDefaults)
        let parsed = parser.parse(text: text, path: "barge.yaml")
        if let broken = Self.checkDiagnostics(parsed.diagnostics, in: text, file: "barge.yaml") { return broken }
        let again = parser.parse(text: text, path: "barge.yaml")
        if again.diagnostics != parsed.diagnostics || again.config != parsed.config {
            return "a second parse differs: \(again.diagnostics) vs \(parsed.diagnostics)"
        }
        return nil
    }

    /// Every unit the text parses as reads back as itself from its own spelling.
    static func checkUnits(_ text: String) -> String? {
        func roundTrip<Value: Equatable & CustomStringConvertible>(
            _ name: String,
            _ parse: (String) throws(UnitError) -> Value
        ) -> String? {
            guard let value = try? parse(text) else { return nil }
            guard let back = try? parse(value.description) else {
                return "\(name) '\(text)' → '\(value.description)', which does not parse"
            }
            return back == value ? nil : "\(name) '\(text)' → '\(value.description)' → '\(back.description)'"
        }
        return roundTrip("size") { text throws(UnitError) in try ByteCount(parsing: text) }
            ?? roundTrip("rate") { text throws(UnitError) in try RateLimit(parsing: text) }
            ?? roundTrip("span") { text throws(UnitError) in try TimeSpan(parsing: text) }
            ?? roundTrip("window") { text throws(UnitError) in try TimeWindow(parsing: text) }
            ?? roundTrip("days") { text throws(UnitError) in try WeekdaySet(parsing: text) }
    }

    /// Each diagnostic names `file` and a line and column inside `text` (one past a line's end, or the line after
    /// the last, for what is missing at the end). Lines are YAML's: a CR, an LF, a CR LF, and the NEL, LS and PS
    /// characters each end one, as libyaml counts them.
    static func checkDiagnostics(_ diagnostics: [Diagnostic], in text: String, file: String) -> String? {
        let lines = Self.yamlLineWidths(text)
        for diagnostic in diagnostics {
            let location = diagnostic.location
            guard location.file == file else { return "\(diagnostic): another file" }
            guard (1...lines.count + 1).contains(location.line) else { return "\(diagnostic): no such line" }
            let width = location.line <= lines.count ? lines[location.line - 1] : 0
            guard (1...width + 1).contains(location.column) else { return "\(diagnostic): no such column" }
            guard !diagnostic.message.isEmpty else { return "\(location): an empty message" }
        }
        return nil
    }

    /// The width of each line of `text` in Unicode scalars, lines ended as YAML ends them.
    static func yamlLineWidths(_ text: String) -> [Int] { YAMLLines.split(text).map(\.unicodeScalars.count) }

    /// `path` is absolute, below one of `roots` (or one of them, when `mayBeRoot`: a glob's directory), without
    /// `.`, `..` or empty components.
    static func checkConfined(_ path: String, roots: [String], mayBeRoot: Bool) -> String? {
        guard path.hasPrefix("/") else { return "\(path): not absolute" }
        let components = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        if components.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
            return "\(path): a '.', '..' or empty component let through"
        }
        let below = roots.contains { root in
            root == "/" || path.hasPrefix(root.hasSuffix("/") ? root : root + "/") || (mayBeRoot && path == root)
        }
        return below ? nil : "\(path): outside the allowed roots \(roots)"
    }
}
