import Foundation

/// Rules for remote URLs in manifests: parseable, a known scheme that the agent config allows, a host where the
/// scheme needs one, and no password (secrets belong in `auth` files).
public enum URLRules {
    /// `host:port` of a URL as written (without user info): the key of the per-host limits, and how messages name
    /// a server; "this machine" for a URL without a host (`file:///…`).
    public static func host(of url: String) -> String {
        // On the UTF-8 view (the delimiters are ASCII): every new transfer is routed by its host.
        guard let afterScheme = Self.authorityStart(of: url) else { return url }
        let rest = url.utf8[afterScheme...]
        let end = rest.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }
        let authority = rest[..<(end ?? rest.endIndex)]
        let start =
            authority.lastIndex(of: UInt8(ascii: "@")).map { authority.index(after: $0) } ?? authority.startIndex
        return start == authority.endIndex ? "this machine" : String(url[start..<authority.endIndex])
    }

    /// Where the authority of `url` begins: after the `://` that follows its scheme (the first ":"), or nil when it
    /// has none (`file:/srv/a://b` has none: its first ":" is not followed by "//").
    public static func authorityStart(of url: String) -> String.Index? {
        let bytes = url.utf8
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")), bytes[colon...].starts(with: "://".utf8) else {
            return nil
        }
        return bytes.index(colon, offsetBy: 3)
    }

    /// The problem with `text` as a source or target URL, or nil when it is usable.
    ///
    /// - Parameters:
    ///   - text: the URL as written.
    ///   - allowedSchemes: the agent config's `allowed-schemes`.
    public static func problem(with text: String, allowedSchemes: [String]) -> String? {
        // Scanning bytes: URLs are ASCII, and Character.isWhitespace costs a Unicode property lookup per character.
        guard !text.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) else {
            return "'\(text)' is not a valid URL: it contains white space or a control character (write spaces as %20)"
        }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            return "'\(text)' is not a valid URL; expected scheme://host/path such as https://example.com/file"
        }
        guard AgentConfig.knownSchemes.contains(scheme) else {
            return "'\(text)' uses the unknown scheme '\(scheme)'; barge speaks "
                + AgentConfig.knownSchemes.joined(separator: ", ")
                + Suggestion.hint(for: scheme, in: AgentConfig.knownSchemes)
        }
        guard allowedSchemes.contains(scheme) else {
            return "scheme '\(scheme)' is not allowed by the agent config (allowed-schemes: "
                + allowedSchemes.joined(separator: ", ") + "); add it to 'allowed-schemes' in barge.yaml to use it"
        }
        if components.password != nil {
            return "'\(text)' carries a password; never put secrets in a manifest: use auth: {basic-file: PATH}"
        }
        if scheme == "file" {
            let host = components.host ?? ""
            guard host.isEmpty || host == "localhost" else {
                return "'\(text)' names host '\(host)'; a file URL reads this machine: file:///path"
            }
            guard components.path.hasPrefix("/") else {
                return "'\(text)' has no absolute path; a file URL looks like file:///srv/share/file"
            }
        } else {
            guard let host = components.host, !host.isEmpty else {
                return "'\(text)' has no host; expected \(scheme)://host/path"
            }
        }
        return nil
    }

    /// The problem with an upload URL template, after checking its `{placeholders}`.
    public static func problem(withTemplate template: String, allowedSchemes: [String]) -> String? {
        var concrete = ""
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{") {
            concrete += rest[..<open]
            guard let close = rest[open...].firstIndex(of: "}") else {
                return "'\(template)' has a '{' without a closing '}'"
            }
            let name = String(rest[rest.index(after: open)..<close])
            guard UploadEntry.placeholders.contains(name) else {
                return "'{\(name)}' is not a placeholder; an upload URL may use "
                    + UploadEntry.placeholders.map { "{\($0)}" }.joined(separator: ", ")
                    + Suggestion.hint(for: name, in: UploadEntry.placeholders)
            }
            concrete += "placeholder"
            rest = rest[rest.index(after: close)...]
        }
        concrete += rest
        return self.problem(with: concrete, allowedSchemes: allowedSchemes)
    }
}
