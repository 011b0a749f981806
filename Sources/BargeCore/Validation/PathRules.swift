/// Rules for local paths in manifests and the config: absolute, no `.` or `..`, below an allowed root.
public enum PathRules {
    /// Why a path is refused.
    public enum Problem: Error, Hashable, Sendable {
        case empty
        case relative
        case dotComponent(String)
        case trailingSlash
        case nulCharacter

        /// A sentence for the user, naming `key`.
        public func message(key: String, path: String) -> String {
            switch self {
            case .empty: "'\(key)' is empty"
            case .relative: "'\(key)' must be an absolute path (starting with /), found '\(path)'"
            case .dotComponent(let component):
                "'\(key)' must not contain '\(component)' components, found '\(path)'; write the path out in full"
            case .trailingSlash: "'\(key)' names a directory ('\(path)' ends with /); name the file to write"
            case .nulCharacter: "'\(key)' contains a NUL character"
            }
        }
    }

    /// The path with repeated slashes folded, or the problem that makes it unusable.
    ///
    /// - Parameter allowTrailingSlash: directories (roots, the state directory) may end with `/`.
    public static func normalize(_ path: String, allowTrailingSlash: Bool = false) -> Result<String, Problem> {
        guard !path.isEmpty else { return .failure(.empty) }
        guard !path.contains("\0") else { return .failure(.nulCharacter) }
        guard path.hasPrefix("/") else { return .failure(.relative) }
        if path.utf8.count > 1, path.hasSuffix("/"), !allowTrailingSlash { return .failure(.trailingSlash) }
        if Self.isNormal(path) { return .success(path) }
        let components = path.split(separator: "/", omittingEmptySubsequences: true)
        if let dot = components.first(where: { $0 == "." || $0 == ".." }) {
            return .failure(.dotComponent(String(dot)))
        }
        return .success("/" + components.joined(separator: "/"))
    }

    /// Whether an absolute path has no empty, `.` or `..` component and no trailing slash (one pass over bytes).
    static func isNormal(_ path: String) -> Bool {
        var componentLength = 0
        var dots = 0
        for byte in path.utf8.dropFirst() {
            if byte == UInt8(ascii: "/") {
                if componentLength == 0 || componentLength == dots && dots <= 2 { return false }
                componentLength = 0
                dots = 0
            } else {
                componentLength += 1
                if byte == UInt8(ascii: ".") { dots += 1 }
            }
        }
        return path.utf8.count == 1 || componentLength > 0 && !(componentLength == dots && dots <= 2)
    }

    /// Whether normalised `path` is `root` or lies below it, compared component by component.
    public static func isPath(_ path: String, below root: String) -> Bool {
        if root == "/" { return true }
        let trimmedRoot = root.hasSuffix("/") ? String(root.dropLast()) : root
        return path == trimmedRoot || path.hasPrefix(trimmedRoot + "/")
    }

    /// `path` made absolute against `directory` when relative (for paths in the config file).
    public static func resolve(_ path: String, against directory: String) -> String {
        if path.hasPrefix("/") || path.isEmpty { return path }
        var base = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        var rest = Substring(path)
        while rest.hasPrefix("./") { rest = rest.dropFirst(2) }
        while rest.hasPrefix("../") {
            rest = rest.dropFirst(3)
            if let slash = base.lastIndex(of: "/") { base = String(base[..<slash]) }
        }
        if rest == "." { return base.isEmpty ? "/" : base }
        return (base.isEmpty ? "" : base) + "/" + rest
    }

    /// The directory part of a path: `/a/b` → `/a`, `/a` → `/`.
    public static func directory(of path: String) -> String {
        // On the UTF-8 view: a search by Character is several times slower, and this runs for every transfer.
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// The last component of a path.
    public static func fileName(of path: String) -> String {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return path }
        // The index after it in the same view: a Character step would swallow a combining mark after the slash.
        return String(path[path.utf8.index(after: slash)...])
    }

    /// The part of a glob before its first wildcard component: `/var/log/app/*.gz` → `/var/log/app`.
    public static func literalPrefix(ofGlob glob: String) -> String {
        var prefix: [Substring] = []
        for component in glob.split(separator: "/") {
            if component.contains(where: { "*?[".contains($0) }) { break }
            prefix.append(component)
        }
        return "/" + prefix.joined(separator: "/")
    }
}
