internal import CCurl
public import Foundation

/// A client of the agent's control socket (HTTP/JSON over a Unix domain socket), on the libcurl barge already
/// links: `CURLOPT_UNIX_SOCKET_PATH` with an `http://barge` URL.
public struct ControlClient: Sendable {
    /// The socket's path (the config's `control-socket`).
    public let socketPath: String

    /// The agent cannot be reached.
    public struct Unreachable: Error, CustomStringConvertible, Sendable {
        /// The socket's path.
        public var socketPath: String
        /// What libcurl said.
        public var reason: String
        /// Whether nothing listens there (no socket, or the connection was refused): no agent runs. Else the agent
        /// may run but did not answer (a time-out, a broken answer).
        public var nothingListens = false
        public var description: String { "cannot reach the agent at \(self.socketPath): \(self.reason)" }
    }

    /// Creates a client.
    public init(socketPath: String) { self.socketPath = socketPath }

    /// Sends one request; returns the HTTP status and the body.
    public func send(
        _ method: String,
        _ path: String,
        body: Data? = nil,
        timeout: Double = 30
    ) throws(Unreachable) -> (
        status: Int, body: Data
    ) {
        _ = curlGlobalInit
        guard let easy = curl_easy_init() else {
            throw Unreachable(socketPath: self.socketPath, reason: "no curl handle")
        }
        defer { curl_easy_cleanup(easy) }
        final class Sink {
            var data = Data()
        }
        let sink = Sink()
        let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        defer { errorBuffer.deallocate() }
        var headers: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(headers) }
        _ = barge_easy_setopt_string(easy, CURLOPT_UNIX_SOCKET_PATH, self.socketPath)
        _ = barge_easy_setopt_string(easy, CURLOPT_URL, "http://barge" + path)
        _ = barge_easy_setopt_string(easy, CURLOPT_CUSTOMREQUEST, method)
        _ = barge_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        _ = barge_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, Int(timeout * 1000))
        _ = barge_easy_setopt_pointer(easy, CURLOPT_ERRORBUFFER, UnsafeMutableRawPointer(errorBuffer))
        _ = barge_easy_setopt_pointer(easy, CURLOPT_WRITEDATA, Unmanaged.passUnretained(sink).toOpaque())
        _ = barge_easy_setopt_write_function(easy) { data, size, count, context in
            let sink = Unmanaged<Sink>.fromOpaque(context!).takeUnretainedValue()
            sink.data.append(UnsafeRawBufferPointer(start: data, count: size * count).bindMemory(to: UInt8.self))
            return size * count
        }
        let payload = body ?? Data()
        let code: CURLcode = payload.withUnsafeBytes { bytes in
            if body != nil {
                headers = curl_slist_append(headers, "Content-Type: application/json")
                _ = barge_easy_setopt_slist(easy, CURLOPT_HTTPHEADER, headers)
                _ = barge_easy_setopt_long(easy, CURLOPT_POSTFIELDSIZE, bytes.count)
                _ = barge_easy_setopt_pointer(
                    easy,
                    CURLOPT_POSTFIELDS,
                    UnsafeMutableRawPointer(mutating: bytes.baseAddress ?? UnsafeRawPointer(errorBuffer))
                )
            }
            return curl_easy_perform(easy)
        }
        guard code == CURLE_OK else {
            let detail = String(cString: errorBuffer)
            throw Unreachable(
                socketPath: self.socketPath,
                reason: detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail,
                nothingListens: code == CURLE_COULDNT_CONNECT
            )
        }
        var status = 0
        _ = barge_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
        return (status, sink.data)
    }
}
