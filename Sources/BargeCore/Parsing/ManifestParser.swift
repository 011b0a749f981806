import Yams

/// The result of reading one manifest file: the manifest when it is valid, and every problem found.
public struct ParsedManifest: Sendable {
    /// The manifest's id (its file name without extension).
    public var id: String
    /// The file's path.
    public var path: String
    /// The manifest, or nil when any error was found.
    public var manifest: Manifest?
    /// Errors and warnings, in file order.
    public var diagnostics: [Diagnostic]
    /// The text that was parsed (nil when the file could not be read as text).
    public var text: String?

    /// Creates a result.
    public init(id: String, path: String, manifest: Manifest?, diagnostics: [Diagnostic], text: String? = nil) {
        self.id = id
        self.path = path
        self.manifest = manifest
        self.diagnostics = diagnostics
        self.text = text
    }

    /// Whether the manifest is usable.
    public var isValid: Bool { self.manifest != nil }
}

/// Turns manifest text into a ``Manifest``, reporting every problem at once with its position.
///
/// Pure apart from the ``FileFacts`` it is given: the same text, config and facts give the same result.
public struct ManifestParser: Sendable {
    /// The manifest language version this parser reads.
    public static let version = 1

    /// The agent config that bounds what manifests may do (roots, schemes).
    public let config: AgentConfig
    /// The file-system facts (existing directories, secret files).
    public let facts: any FileFacts

    /// Creates a parser.
    public init(config: AgentConfig, facts: any FileFacts = NoFileFacts()) {
        self.config = config
        self.facts = facts
    }

    static let topKeys = ["version", "description", "defaults", "download", "upload", "hooks", "prune"]
    static let policyKeys = [
        "priority", "network", "refresh", "window", "max-rate", "retry", "owner", "mode", "headers", "auth",
    ]
    static let downloadKeys = ["url", "mirrors", "dest", "sha256", "size"] + policyKeys
    static let uploadKeys = ["src", "url", "protocol", "after", "settle", "reply", "chunk-size"] + policyKeys

    /// Parses `text`, the content of the manifest at `path`.
    public func parse(text: String, path: String, id: String) -> ParsedManifest {
        var source = YAMLSource(file: path)
        let manifest = self.read(text: text, id: id, path: path, into: &source)
        let sorted = source.diagnostics.sorted { $0.location < $1.location }
        return ParsedManifest(
            id: id,
            path: path,
            manifest: sorted.containsError ? nil : manifest,
            diagnostics: sorted
        )
    }

    private func read(text: String, id: String, path: String, into source: inout YAMLSource) -> Manifest? {
        guard let root = source.compose(text) else {
            if source.diagnostics.isEmpty {
                source.error(
                    at: .start(of: path),
                    "empty manifest; expected 'version: 1' and a 'download' or 'upload' list"
                )
            }
            return nil
        }
        guard let pairs = source.knownPairs(root, "a manifest", allowed: Self.topKeys) else { return nil }
        var manifest = Manifest(id: id, path: path)
        var defaults = PolicyOverrides()
        var sawVersion = false
        var downloadNodes: (key: Node, value: Node)?
        var uploadNodes: (key: Node, value: Node)?
        for pair in pairs {
            switch pair.key {
            case "version":
                sawVersion = true
                if let version = source.string(pair.value, "version"), version != String(Self.version) {
                    source.error(
                        pair.value,
                        "manifest version '\(version)' is not supported; this barge reads version \(Self.version)"
                    )
                }
            case "description":
                manifest.description = source.string(pair.value, "description")
            case "defaults":
                let known = source.knownPairs(pair.value, "defaults", allowed: Self.policyKeys) { key in
                    ["url", "mirrors", "dest", "sha256", "size", "src"].contains(key)
                        ? "'\(key)' belongs to an entry, not to defaults" : nil
                }
                defaults = known.flatMap { self.policy($0, into: &source) } ?? defaults
            case "download":
                downloadNodes = (pair.keyNode, pair.value)
            case "upload":
                uploadNodes = (pair.keyNode, pair.value)
            case "hooks":
                manifest.hooks = Self.hooks(pair.value, into: &source) ?? Hooks()
            case "prune":
                manifest.prune = source.boolean(pair.value, "prune") ?? false
            default:
                break
            }
        }
        if !sawVersion {
            source.error(root, "missing 'version: 1' (the manifest language version) at the top of the manifest")
        }
        let base = defaults.applied(to: TransferPolicy())
        var claimed: [String: SourceLocation] = [:]
        if let (_, list) = downloadNodes, let items = self.entryList(list, "download", into: &source) {
            for item in items {
                if let entry = self.download(item, base: base, into: &source) {
                    if let first = claimed[entry.destination] {
                        source.error(
                            at: entry.location,
                            "destination '\(entry.destination)' is already written by the entry at line \(first.line)"
                        )
                    } else {
                        claimed[entry.destination] = entry.location
                        manifest.downloads.append(entry)
                    }
                }
            }
        }
        if let (_, list) = uploadNodes, let items = self.entryList(list, "upload", into: &source) {
            for item in items {
                if let entry = self.upload(item, base: base, into: &source) { manifest.uploads.append(entry) }
            }
        }
        let declaredEntries = [downloadNodes, uploadNodes].compactMap { $0 }.reduce(0) { count, nodes in
            if case .sequence(let sequence) = nodes.value { return count + sequence.count }
            return count + 1
        }
        if declaredEntries == 0 {
            let anchor = downloadNodes?.key ?? uploadNodes?.key ?? root
            source.error(anchor, "the manifest declares no entries; add at least one item under 'download' or 'upload'")
        }
        return manifest
    }

    /// The items of a `download` or `upload` list (an empty or missing list is reported by the caller).
    private func entryList(_ node: Node, _ key: String, into source: inout YAMLSource) -> [Node]? {
        if case .scalar(let scalar) = node, YAMLSource.isNull(scalar) { return [] }
        guard case .sequence(let sequence) = node else {
            source.error(
                node,
                "'\(key)' must be a list of entries (each starting with '- '), found \(YAMLSource.describe(node))"
            )
            return nil
        }
        return Array(sequence)
    }

    // MARK: Entries

    private func download(_ node: Node, base: TransferPolicy, into source: inout YAMLSource) -> DownloadEntry? {
        let errorsBefore = source.errorCount
        guard
            let pairs = source.knownPairs(
                node,
                "a download entry",
                allowed: Self.downloadKeys,
                hint: { key in
                    [
                        "src": "'src' belongs to uploads; a download names the file it writes with 'dest'",
                        "destination": "did you mean 'dest'?", "hash": "did you mean 'sha256'?",
                        "checksum": "did you mean 'sha256'?",
                    ][key]
                }
            )
        else { return nil }
        var urls: [String] = []
        var urlNode: Node?
        var destination: String?
        var destinationNode: Node?
        var entry = DownloadEntry(urls: [], destination: "", location: source.location(node))
        for pair in pairs {
            switch pair.key {
            case "url":
                if urlNode != nil {
                    source.error(pair.keyNode, "give either 'url' or 'mirrors', not both")
                }
                urlNode = pair.keyNode
                if let url = source.string(pair.value, "url"), self.checkURL(url, pair.value, into: &source) {
                    urls = [url]
                }
            case "mirrors":
                if urlNode != nil {
                    source.error(pair.keyNode, "give either 'url' or 'mirrors', not both")
                }
                urlNode = pair.keyNode
                if case .sequence(let items) = pair.value, !items.isEmpty {
                    for item in items {
                        if let url = source.string(item, "mirrors"), self.checkURL(url, item, into: &source) {
                            urls.append(url)
                        }
                    }
                } else {
                    source.error(
                        pair.value,
                        "'mirrors' must be a list of URLs tried in order, found \(YAMLSource.describe(pair.value))"
                    )
                }
            case "dest":
                destinationNode = pair.value
                destination = self.destination(pair.value, into: &source)
            case "sha256":
                if let text = source.string(pair.value, "sha256") {
                    let isHex = text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x41...0x46).contains($0 & 0xDF) }
                    if text.utf8.count == 64, isHex {
                        entry.sha256 = text.lowercased()
                    } else {
                        source.error(
                            pair.value,
                            "'sha256' must be 64 hexadecimal digits, found \(text.count) characters: '\(text)'"
                        )
                    }
                }
            case "size":
                entry.size = source.unit(pair.value, "size", ByteCount.init(parsing:))
            default:
                break
            }
        }
        if urlNode == nil {
            source.error(node, "a download needs 'url' (or 'mirrors', a list of URLs tried in order)")
        }
        if destinationNode == nil {
            source.error(node, "a download needs 'dest', the absolute path of the file it writes")
        }
        let overrides = self.policy(pairs, into: &source)
        guard source.errorCount == errorsBefore, let destination, let destinationNode, let overrides else { return nil }
        entry.urls = urls
        entry.destination = destination
        entry.location = source.location(destinationNode)
        entry.policy = overrides.applied(to: base)
        return entry
    }

    private func upload(_ node: Node, base: TransferPolicy, into source: inout YAMLSource) -> UploadEntry? {
        let errorsBefore = source.errorCount
        guard
            let pairs = source.knownPairs(
                node,
                "an upload entry",
                allowed: Self.uploadKeys,
                hint: { key in
                    [
                        "dest": "'dest' belongs to downloads; an upload names its local files with 'src'",
                        "source": "did you mean 'src'?", "mirrors": "an upload has one 'url'",
                    ][key]
                }
            )
        else { return nil }
        var entry = UploadEntry(source: "", urlTemplate: "", location: source.location(node))
        var sourceNode: Node?
        var template: String?
        for pair in pairs {
            switch pair.key {
            case "src":
                sourceNode = pair.value
                if let text = source.string(pair.value, "src") {
                    entry.source = self.localPath(text, key: "src", node: pair.value, glob: true, into: &source) ?? ""
                }
            case "url":
                if let text = source.string(pair.value, "url") {
                    if let problem = URLRules.problem(withTemplate: text, allowedSchemes: self.config.allowedSchemes) {
                        source.error(pair.value, problem)
                    } else {
                        template = text
                    }
                }
            case "protocol":
                entry.uploadProtocol =
                    source.choice(pair.value, "protocol", as: UploadEntry.UploadProtocol.self) ?? .put
            case "after":
                entry.after = self.afterUpload(pair.value, into: &source) ?? .keep
            case "settle":
                if let span = source.unit(pair.value, "settle", TimeSpan.init(parsing:)) {
                    if span.seconds > 86_400 {
                        source.error(pair.value, "'settle' must be at most 1d, found \(span)")
                    } else {
                        entry.settle = span
                    }
                }
            case "reply":
                if let size = source.unit(pair.value, "reply", ByteCount.init(parsing:)) {
                    if size.bytes > UploadEntry.maximumReply.bytes {
                        source.error(pair.value, "'reply' keeps at most \(UploadEntry.maximumReply), found \(size)")
                    } else {
                        entry.replyLimit = size.bytes > 0 ? size : nil
                    }
                }
            case "chunk-size":
                if let size = source.unit(pair.value, "chunk-size", ByteCount.init(parsing:)) {
                    if size.bytes < 64 << 10 {
                        source.error(pair.value, "'chunk-size' must be at least 64KiB, found \(size)")
                    } else {
                        entry.chunkSize = size
                    }
                }
            default:
                break
            }
        }
        if sourceNode == nil {
            source.error(node, "an upload needs 'src', the absolute path (or glob) of the local files")
        }
        if template == nil, !pairs.contains(where: { $0.key == "url" }) {
            source.error(node, "an upload needs 'url', where the files go")
        }
        if case .moveTo(let directory) = entry.after, !entry.source.isEmpty,
            let afterNode = pairs.first(where: { $0.key == "after" })?.value
        {
            // Files moved where the glob finds them would be found and sent again, and moved again, forever.
            let prefix = PathRules.literalPrefix(ofGlob: entry.source)
            let rest = entry.source.dropFirst(prefix.count).split(separator: "/")
            let deeper = rest.contains("**") || rest.count > 1
            if directory == prefix || (PathRules.isPath(directory, below: prefix) && deeper) {
                source.error(
                    afterNode,
                    "'move-to' \(directory) lies where 'src' \(entry.source) finds files: moved files would be sent "
                        + "again; move them outside \(prefix) or below it where the glob does not reach"
                )
            }
        }
        let overrides = self.policy(pairs, into: &source)
        guard source.errorCount == errorsBefore, let sourceNode, let template, let overrides else { return nil }
        entry.urlTemplate = template
        entry.location = source.location(sourceNode)
        entry.policy = overrides.applied(to: base)
        return entry
    }

    private func afterUpload(_ node: Node, into source: inout YAMLSource) -> UploadEntry.AfterUpload? {
        if case .scalar(let scalar) = node {
            switch scalar.string {
            case "keep": return .keep
            case "delete": return .delete
            default:
                source.error(node, "'after' must be keep, delete or {move-to: DIRECTORY}, found '\(scalar.string)'")
                return nil
            }
        }
        guard let pairs = source.knownPairs(node, "'after'", allowed: ["move-to"]),
            let pair = pairs.first, let text = source.string(pair.value, "move-to")
        else { return nil }
        return self.localPath(text, key: "move-to", node: pair.value, glob: false, into: &source, allowDirectory: true)
            .map { .moveTo($0) }
    }

    private func checkURL(_ url: String, _ node: Node, into source: inout YAMLSource) -> Bool {
        guard let problem = URLRules.problem(with: url, allowedSchemes: self.config.allowedSchemes) else { return true }
        source.error(node, problem)
        return false
    }

    // MARK: Paths

    private func destination(_ node: Node, into source: inout YAMLSource) -> String? {
        guard let text = source.string(node, "dest"),
            let path = self.localPath(text, key: "dest", node: node, glob: false, into: &source)
        else { return nil }
        if PathRules.fileName(of: path).hasSuffix(".barge-partial") {
            source.error(node, "'dest' must not end in .barge-partial; barge uses that name for unfinished files")
            return nil
        }
        if self.facts.status(ofPath: path)?.kind == .directory {
            source.error(node, "'dest' names an existing directory '\(path)'; name the file to write inside it")
            return nil
        }
        return path
    }

    /// Checks a local path: absolute, no dot components, below an allowed root, not inside barge's own
    /// directories. Returns the normalised path.
    private func localPath(
        _ text: String,
        key: String,
        node: Node,
        glob: Bool,
        into source: inout YAMLSource,
        allowDirectory: Bool = false
    ) -> String? {
        let path: String
        switch PathRules.normalize(text, allowTrailingSlash: allowDirectory) {
        case .failure(let problem):
            source.error(node, problem.message(key: key, path: text))
            return nil
        case .success(let normalized):
            path = normalized
        }
        let checked = glob ? PathRules.literalPrefix(ofGlob: path) : path
        // A glob's directory and a directory may be a root; a file may not.
        let found = glob || allowDirectory ? self.config.pathProblem(checked) : self.config.fileProblem(checked)
        guard let problem = found else { return path }
        // The problem's own words, after the key; outside the roots, with what to do about it in a manifest.
        var message = "'\(key)' path " + problem.message(path: path)
        if case .outsideAllowedRoots = problem {
            message += "; move it below one of them or add a root to 'allowed-roots' in barge.yaml"
        }
        source.error(node, message)
        return nil
    }

    // MARK: Policy

    /// Reads the policy keys among `pairs` (of a `defaults` block or an entry; other keys are the caller's).
    func policy(
        _ pairs: [(key: String, keyNode: Node, value: Node)],
        into source: inout YAMLSource
    ) -> PolicyOverrides? {
        let errorsBefore = source.errorCount
        var policy = PolicyOverrides()
        for pair in pairs where Self.policyKeys.contains(pair.key) {
            let value = pair.value
            switch pair.key {
            case "priority":
                policy.priority = source.choice(value, "priority", as: Priority.self)
            case "network":
                policy.network = source.choice(value, "network", as: NetworkCostPolicy.self)
            case "refresh":
                policy.refresh = Self.refresh(value, into: &source)
            case "window":
                policy.windows = Self.windows(value, into: &source)
            case "max-rate":
                policy.maxRate = source.unit(value, "max-rate", RateLimit.init(parsing:))
            case "retry":
                self.retry(value, into: &source, policy: &policy)
            case "owner":
                policy.owner = Self.owner(value, into: &source)
            case "mode":
                policy.mode = Self.mode(value, into: &source)
            case "headers":
                policy.headers = Self.headers(value, into: &source)
            case "auth":
                policy.credentials = self.credentials(value, into: &source)
            default:
                break
            }
        }
        return source.errorCount == errorsBefore ? policy : nil
    }

    static func refresh(_ node: Node, into source: inout YAMLSource) -> RefreshInterval? {
        guard let text = source.string(node, "refresh") else { return nil }
        if text == "never" { return .never }
        guard let span = source.unit(node, "refresh", TimeSpan.init(parsing:)) else { return nil }
        guard span >= .minutes(1) else {
            source.error(node, "'refresh' must be at least 1m (or 'never'), found \(span)")
            return nil
        }
        return .every(span)
    }

    /// `"22:00-06:00"`, `"mon-fri 22:00-06:00"`, `{hours: "22:00-06:00", days: [mon, tue]}`, or a list of these.
    static func windows(_ node: Node, into source: inout YAMLSource) -> [TimeWindow]? {
        if case .sequence(let items) = node {
            guard !items.isEmpty else {
                source.error(node, "'window' is an empty list; leave 'window' out to allow any time")
                return nil
            }
            var windows: [TimeWindow] = []
            for item in items {
                guard let window = Self.window(item, into: &source) else { return nil }
                windows.append(window)
            }
            return windows
        }
        return Self.window(node, into: &source).map { [$0] }
    }

    static func window(_ node: Node, into source: inout YAMLSource) -> TimeWindow? {
        if case .scalar = node { return source.unit(node, "window", TimeWindow.init(parsing:)) }
        guard let pairs = source.knownPairs(node, "a window", allowed: ["hours", "days"]) else { return nil }
        guard let hoursPair = pairs.first(where: { $0.key == "hours" }) else {
            source.error(node, "a window needs 'hours', such as hours: \"22:00-06:00\"")
            return nil
        }
        guard var window = source.unit(hoursPair.value, "hours", TimeWindow.init(parsing:)) else { return nil }
        if let daysPair = pairs.first(where: { $0.key == "days" }) {
            guard let days = Self.weekdays(daysPair.value, into: &source) else { return nil }
            window.days = days
        }
        return window
    }

    /// `[mon, tue]` or `mon-fri`.
    static func weekdays(_ node: Node, into source: inout YAMLSource) -> WeekdaySet? {
        if case .scalar = node { return source.unit(node, "days", WeekdaySet.init(parsing:)) }
        guard case .sequence(let items) = node, !items.isEmpty else {
            source.error(node, "'days' must be a list of weekdays such as [mon, tue] or a range such as mon-fri")
            return nil
        }
        var days = Set<Weekday>()
        for item in items {
            guard let set = source.unit(item, "days", WeekdaySet.init(parsing:)) else { return nil }
            days.formUnion(set.days)
        }
        return WeekdaySet(days: days)
    }

    private func retry(_ node: Node, into source: inout YAMLSource, policy: inout PolicyOverrides) {
        guard let pairs = source.knownPairs(node, "'retry'", allowed: ["min-delay", "give-up-after"]) else { return }
        for pair in pairs {
            guard let span = source.unit(pair.value, pair.key, TimeSpan.init(parsing:)) else { continue }
            if pair.key == "min-delay" {
                if span < RetryPolicy.minimumDelay {
                    source.error(pair.value, "'min-delay' must be at least \(RetryPolicy.minimumDelay), found \(span)")
                } else {
                    policy.retryMinDelay = span
                }
            } else {
                policy.retryGiveUpAfter = span
            }
        }
    }

    static func owner(_ node: Node, into source: inout YAMLSource) -> FileOwner? {
        guard let text = source.string(node, "owner") else { return nil }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        func isName(_ name: Substring) -> Bool {
            guard let first = name.first, first.isLetter || first == "_" || first.isASCIIDigit else { return false }
            return name.count <= 32
                && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "_-.".contains($0)) }
        }
        guard (1...2).contains(parts.count), parts.allSatisfy(isName) else {
            source.error(node, "'owner' must be 'user' or 'user:group' (names or numeric ids), found '\(text)'")
            return nil
        }
        return FileOwner(user: String(parts[0]), group: parts.count == 2 ? String(parts[1]) : nil)
    }

    static func mode(_ node: Node, into source: inout YAMLSource) -> UInt32? {
        guard let text = source.string(node, "mode") else { return nil }
        guard (3...4).contains(text.count), text.allSatisfy({ ("0"..."7").contains($0) }),
            let mode = UInt32(text, radix: 8)
        else {
            source.error(node, "'mode' must be octal permission bits in quotes, such as \"0644\", found '\(text)'")
            return nil
        }
        guard mode & 0o7000 == 0 else {
            source.error(
                node,
                "'mode' \(text) sets setuid, setgid or sticky bits; barge writes plain files (e.g. \"0644\")"
            )
            return nil
        }
        guard mode & 0o002 == 0 else {
            source.error(node, "'mode' \(text) makes the file writable by everyone; use \"0644\" or \"0664\"")
            return nil
        }
        return mode
    }

    /// Headers barge manages itself, or that carry secrets.
    static let reservedHeaders: [String: String] = [
        "authorization": "never put secrets in a manifest: use auth: {bearer-file: PATH} or {basic-file: PATH}",
        "proxy-authorization": "never put secrets in a manifest; proxies are configured in barge.yaml",
        "cookie": "never put secrets in a manifest",
        "range": "barge sets it itself to resume", "if-range": "barge sets it itself to resume",
        "if-none-match": "barge sets it itself to refresh", "if-modified-since": "barge sets it itself to refresh",
        "content-length": "libcurl sets it", "host": "it comes from the URL",
    ]

    static func headers(_ node: Node, into source: inout YAMLSource) -> [HTTPHeader]? {
        guard let pairs = source.mapping(node, "'headers'") else { return nil }
        var headers: [HTTPHeader] = []
        let tokenCharacters = Set("!#$%&'*+-.^_`|~abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        for pair in pairs {
            guard !pair.key.isEmpty, pair.key.allSatisfy({ tokenCharacters.contains($0) }) else {
                source.error(pair.keyNode, "'\(pair.key)' is not a valid HTTP header name (letters, digits and -)")
                continue
            }
            if let reason = Self.reservedHeaders[pair.key.lowercased()] {
                source.error(pair.keyNode, "header '\(pair.key)' is not allowed here: \(reason)")
                continue
            }
            guard let value = source.string(pair.value, pair.key) else { continue }
            guard !value.contains(where: { $0 == "\r" || $0 == "\n" }) else {
                source.error(pair.value, "header '\(pair.key)' contains a line break")
                continue
            }
            headers.append(HTTPHeader(name: pair.key, value: value))
        }
        return headers
    }

    private func credentials(_ node: Node, into source: inout YAMLSource) -> Credentials? {
        guard
            let pairs = source.knownPairs(
                node,
                "'auth'",
                allowed: ["bearer-file", "basic-file", "ssh-key-file"],
                hint: { key in
                    ["token", "password", "bearer", "user", "username"].contains(key)
                        ? "never put secrets in a manifest: name a file with bearer-file or basic-file" : nil
                }
            )
        else { return nil }
        guard pairs.count == 1, let pair = pairs.first else {
            if pairs.isEmpty, case .mapping(let mapping) = node, !mapping.isEmpty { return nil }  // reported above
            source.error(node, "'auth' takes exactly one of bearer-file, basic-file or ssh-key-file")
            return nil
        }
        guard let text = source.string(pair.value, pair.key) else { return nil }
        guard case .success(let path) = PathRules.normalize(text) else {
            source.error(pair.value, "'\(pair.key)' must be an absolute path without '..', found '\(text)'")
            return nil
        }
        guard let status = self.facts.status(ofPath: path) else {
            source.error(pair.value, "secret file '\(path)' does not exist; create it with mode 0600")
            return nil
        }
        guard status.kind == .regular else {
            source.error(pair.value, "secret file '\(path)' is not a regular file")
            return nil
        }
        guard status.mode & 0o007 == 0 else {
            source.error(
                pair.value,
                "secret file '\(path)' is readable by others (mode \(FileStatus.octal(status.mode))); run: chmod o-rwx \(path)"
            )
            return nil
        }
        switch pair.key {
        case "bearer-file": return .bearerFile(path)
        case "ssh-key-file": return .sshKeyFile(path)
        default: return .basicFile(path)
        }
    }

    // MARK: Hooks

    /// `{on-complete: [argv…], on-error: [argv…]}`; argv[0] is an absolute path (no shell, no PATH search).
    static func hooks(_ node: Node, into source: inout YAMLSource) -> Hooks? {
        guard let pairs = source.knownPairs(node, "'hooks'", allowed: ["on-complete", "on-error"]) else { return nil }
        var hooks = Hooks()
        for pair in pairs {
            if case .scalar = pair.value {
                source.error(
                    pair.value,
                    "'\(pair.key)' must be an argument list such as [/usr/local/bin/notify, --quiet]; barge runs no shell"
                )
                continue
            }
            guard let argv = source.stringList(pair.value, pair.key) else { continue }
            guard argv[0].hasPrefix("/") else {
                source.error(pair.value, "'\(pair.key)' must start with an absolute program path, found '\(argv[0])'")
                continue
            }
            if pair.key == "on-complete" { hooks.onComplete = argv } else { hooks.onError = argv }
        }
        return hooks
    }
}
