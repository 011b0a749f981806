import BargeCore

/// The rules for the redirects the engine follows itself (libcurl's own following is off): where a redirect may
/// lead, and what the next request keeps.
///
/// A redirect may lead only to `https`, or to `http` from `http` (or from `https` where the entry allows insecure
/// redirects), never to `file`, `ftp`, `sftp`, `smb` or any other scheme, whatever `allowed-schemes` lets a
/// manifest name: a hostile origin must not turn a download into a read of a local file or another protocol. The
/// entry's own headers and credentials go only to the origin it names (scheme, host and port): a redirect to
/// another origin carries neither.
enum RedirectPolicy {
    /// Why a redirect from `source` to `target` is refused, or nil when it may be followed.
    static func refusal(from source: String, to target: String, allowInsecure: Bool) -> String? {
        let from = Self.scheme(of: source)
        let to = Self.scheme(of: target)
        switch to {
        case "https":
            return nil
        case "http" where from == "http" || allowInsecure:
            return nil
        case "http":
            return "refused a redirect from https to http (\(target)); the entry must allow insecure redirects"
        default:
            return "refused a redirect to \(to.isEmpty ? "a URL without a scheme" : "\(to)://") (\(target)): "
                + "redirects may lead only to https, or to http from http"
        }
    }

    /// Whether two URLs name the same origin: scheme, host and port (user information aside).
    static func sameOrigin(_ a: String, _ b: String) -> Bool {
        Self.scheme(of: a) == Self.scheme(of: b)
            && URLRules.host(of: a).lowercased() == URLRules.host(of: b).lowercased()
    }

    /// The URL's scheme, lowercase ("" when it has none).
    static func scheme(of url: String) -> String {
        guard let colon = url.firstIndex(of: ":"), url[colon...].hasPrefix("://") else { return "" }
        return url[..<colon].lowercased()
    }
}
