import BargeCore
internal import CCurl
import Glibc

/// Turns libcurl result codes and HTTP statuses into ``TransferFailure``s: transient or permanent, with a
/// reason a person understands (BITS's transient/fatal split, made explicit).
enum FailureClassifier {
    /// The failure for a final HTTP status that is not a success.
    static func failure(status: Int, url: String, retryAfter: Double?) -> TransferFailure {
        let host = URLRules.host(of: url)
        switch status {
        case 404: return TransferFailure(.permanent, "not found: \(url) (HTTP 404)")
        case 410: return TransferFailure(.permanent, "gone: \(url) (HTTP 410)")
        case 401: return TransferFailure(.permanent, "\(host) refused the credentials (HTTP 401 Unauthorized)")
        case 403: return TransferFailure(.permanent, "\(host) denied access to \(url) (HTTP 403 Forbidden)")
        case 408: return TransferFailure(.transient, "\(host) timed out the request (HTTP 408)", retryAfter: retryAfter)
        case 429:
            return TransferFailure(
                .transient,
                "\(host) is rate-limiting us (HTTP 429 Too Many Requests)",
                retryAfter: retryAfter
            )
        case 503:
            return TransferFailure(.transient, "\(host) is unavailable (HTTP 503)", retryAfter: retryAfter)
        case 500...599:
            return TransferFailure(
                .transient,
                "\(host) answered with a server error (HTTP \(status))",
                retryAfter: retryAfter
            )
        case 300...399:
            return TransferFailure(.permanent, "\(host) redirected without a usable Location (HTTP \(status))")
        default:
            return TransferFailure(.permanent, "\(host) answered HTTP \(status) for \(url)")
        }
    }

    /// The failure for a libcurl error; `detail` is libcurl's error buffer.
    static func failure(code: CURLcode, url: String, detail: String) -> TransferFailure {
        let host = URLRules.host(of: url)
        let suffix = detail.isEmpty ? "" : " (\(detail))"
        switch code {
        case CURLE_COULDNT_RESOLVE_HOST:
            return TransferFailure(.transient, "cannot resolve host \(host)\(suffix)")
        case CURLE_COULDNT_RESOLVE_PROXY:
            return TransferFailure(.transient, "cannot resolve the proxy\(suffix)")
        case CURLE_COULDNT_CONNECT:
            return TransferFailure(.transient, "cannot connect to \(host)\(suffix)")
        case CURLE_OPERATION_TIMEDOUT:
            return TransferFailure(.transient, "timed out talking to \(host)\(suffix)")
        case CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_GOT_NOTHING:
            return TransferFailure(.transient, "connection reset by \(host)\(suffix)")
        case CURLE_PARTIAL_FILE:
            return TransferFailure(.transient, "connection to \(host) closed before the end of the file\(suffix)")
        case CURLE_HTTP2, CURLE_HTTP2_STREAM, CURLE_HTTP3:
            return TransferFailure(.transient, "HTTP/2 error talking to \(host)\(suffix)")
        case CURLE_SSL_CONNECT_ERROR:
            return TransferFailure(.transient, "TLS handshake with \(host) failed\(suffix)")
        case CURLE_PEER_FAILED_VERIFICATION:
            return TransferFailure(
                .permanent,
                "TLS verification of \(host) failed: its certificate is not trusted\(suffix)"
            )
        case CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER:
            return TransferFailure(.permanent, "TLS set-up failed\(suffix)")
        case CURLE_TOO_MANY_REDIRECTS:
            return TransferFailure(.permanent, "too many redirects from \(url) (a redirect loop?)")
        case CURLE_UNSUPPORTED_PROTOCOL:
            return TransferFailure(.permanent, "scheme not allowed or not supported\(suffix)")
        case CURLE_LOGIN_DENIED, CURLE_REMOTE_ACCESS_DENIED:
            return TransferFailure(.permanent, "\(host) refused access\(suffix)")
        case CURLE_REMOTE_FILE_NOT_FOUND, CURLE_FILE_COULDNT_READ_FILE:
            return TransferFailure(.permanent, "not found: \(url)\(suffix)")
        case CURLE_URL_MALFORMAT:
            return TransferFailure(.permanent, "malformed URL \(url)\(suffix)")
        case CURLE_RANGE_ERROR, CURLE_BAD_DOWNLOAD_RESUME:
            return TransferFailure(.transient, "\(host) cannot resume the download\(suffix)")
        default:
            let text = String(cString: curl_easy_strerror(code))
            return TransferFailure(.transient, "\(text) talking to \(host)\(suffix)")
        }
    }

    /// Parses `Retry-After`: seconds, or an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`), then relative to `now`
    /// (seconds since 1970).
    static func retryAfter(_ value: String?, now: Double) -> Double? {
        guard let value = value?.trimmingCharacters(in: " \t") else { return nil }
        if let seconds = Double(value), seconds >= 0 { return seconds }
        let fields = value.split(separator: " ")
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard fields.count == 6, fields[5] == "GMT", let day = Int(fields[1]),
            let month = months.firstIndex(of: String(fields[2])), let year = Int(fields[3])
        else { return nil }
        let clock = fields[4].split(separator: ":").compactMap { Int($0) }
        guard clock.count == 3 else { return nil }
        var time = tm()
        time.tm_year = Int32(year - 1900)
        time.tm_mon = Int32(month)
        time.tm_mday = Int32(day)
        time.tm_hour = Int32(clock[0])
        time.tm_min = Int32(clock[1])
        time.tm_sec = Int32(clock[2])
        return max(0, Double(timegm(&time)) - now)
    }
}

extension String {
    /// The string without leading and trailing scalars from `set` (scalars, not characters: "\r\n" is one
    /// Character in Swift, so a character test would miss a lone "\n").
    func trimmingCharacters(in set: String) -> String {
        let trimmed = Set(set.unicodeScalars)
        let scalars = self.unicodeScalars
        guard let first = scalars.firstIndex(where: { !trimmed.contains($0) }) else { return "" }
        let last = scalars.lastIndex(where: { !trimmed.contains($0) })!
        return String(scalars[first...last])
    }
}
