import Foundation
import Glibc

/// A real nginx on 127.0.0.1 with its own config and document root, for Range/ETag/If-Range interop exactly as
/// production servers do them. Started per test suite, stopped (by pid) when released.
public final class NginxServer: @unchecked Sendable {
    /// Whether nginx is installed (tests that need it are skipped otherwise, with a reason).
    public static var isAvailable: Bool { FileManager.default.isExecutableFile(atPath: "/usr/sbin/nginx") }

    /// The server's working directory (config, logs, pid file).
    public let prefix: ScratchDirectory
    /// Files served live here.
    public let root: String
    /// The HTTP port.
    public let port: Int
    /// The HTTPS port (a self-signed certificate, `certificateFile`), when started with TLS.
    public let tlsPort: Int?
    /// The PEM certificate of the HTTPS listener, to trust with a CA file.
    public let certificateFile: String?
    /// A client certificate and key signed by the CA the HTTPS listener checks clients against (`/client-only/`
    /// answers 403 without one).
    public let clientCertificate: (certificate: String, key: String)?
    private let process: ChildProcess

    /// `http://127.0.0.1:PORT`
    public var baseURL: String { "http://127.0.0.1:\(self.port)" }
    /// `https://localhost:TLSPORT`
    public var tlsBaseURL: String? { self.tlsPort.map { "https://localhost:\($0)" } }

    /// Starts nginx; `extraLocations` is spliced into the HTTP and HTTPS server blocks, with `{http_port}`
    /// replaced by the HTTP port. In `namespace` (a ``NetworkNamespace``'s name) it runs there and listens on all
    /// of the namespace's addresses; the caller waits for it from where it can be reached.
    public init(
        tls: Bool = false,
        extraLocations: String = "",
        rateLimit: String? = nil,
        namespace: String? = nil
    ) throws {
        self.prefix = try ScratchDirectory()
        self.root = self.prefix.path + "/root"
        try FileManager.default.createDirectory(atPath: self.root, withIntermediateDirectories: true)
        chmod(self.prefix.path, 0o755)  // nginx workers run as an unprivileged user
        self.port = try freeLoopbackPort()
        let extraLocations = extraLocations.replacingOccurrences(of: "{http_port}", with: String(self.port))
        var tlsBlock = ""
        if tls {
            let port = try freeLoopbackPort()
            let (certificate, key) = try Self.makeSelfSignedCertificate(in: self.prefix.path)
            self.tlsPort = port
            self.certificateFile = certificate
            // A private CA and a client certificate it signed, for mutual TLS.
            let ca = self.prefix.path + "/client-ca.pem"
            let caKey = self.prefix.path + "/client-ca.key"
            let client = self.prefix.path + "/client.pem"
            let clientKey = self.prefix.path + "/client.key"
            let request = self.prefix.path + "/client.csr"
            try Self.run(
                "/usr/bin/openssl",
                [
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", caKey, "-out", ca, "-days", "2",
                    "-subj", "/CN=barge test client CA",
                ]
            )
            try Self.run(
                "/usr/bin/openssl",
                [
                    "req", "-newkey", "rsa:2048", "-nodes", "-keyout", clientKey, "-out", request, "-subj",
                    "/CN=edge-7",
                ]
            )
            try Self.run(
                "/usr/bin/openssl",
                [
                    "x509", "-req", "-in", request, "-CA", ca, "-CAkey", caKey, "-CAcreateserial", "-out", client,
                    "-days", "2",
                ]
            )
            self.clientCertificate = (client, clientKey)
            tlsBlock = """
                server {
                    listen 127.0.0.1:\(port) ssl http2;
                    server_name localhost;
                    ssl_certificate \(certificate);
                    ssl_certificate_key \(key);
                    ssl_client_certificate \(ca);
                    ssl_verify_client optional;
                    root \(self.root);
                    location /client-only/ { if ($ssl_client_verify != SUCCESS) { return 403; } }
                    \(extraLocations)
                }
                """
        } else {
            self.tlsPort = nil
            self.certificateFile = nil
            self.clientCertificate = nil
        }
        let limit = rateLimit.map { "limit_rate \($0);" } ?? ""
        let config = """
            daemon off;
            worker_processes 1;
            pid \(self.prefix.path)/nginx.pid;
            error_log \(self.prefix.path)/error.log warn;
            events { worker_connections 256; }
            http {
                types { application/octet-stream bin; text/plain txt; }
                default_type application/octet-stream;
                log_format served '$request_uri $status $body_bytes_sent "$http_range" "$http_if_range" $remote_addr';
                access_log \(self.prefix.path)/access.log served;
                client_body_temp_path \(self.prefix.path)/body;
                proxy_temp_path \(self.prefix.path)/proxy;
                fastcgi_temp_path \(self.prefix.path)/fastcgi;
                uwsgi_temp_path \(self.prefix.path)/uwsgi;
                scgi_temp_path \(self.prefix.path)/scgi;
                sendfile on;
                keepalive_requests 100000;
                \(limit)
                server {
                    listen \(namespace == nil ? "127.0.0.1" : "0.0.0.0"):\(self.port);
                    root \(self.root);
                    \(extraLocations)
                }
                \(tlsBlock)
            }
            """
        try self.prefix.write("nginx.conf", config)
        let command = [
            "/usr/sbin/nginx", "-p", self.prefix.path, "-c", self.prefix.path + "/nginx.conf", "-e",
            self.prefix.path + "/error.log",
        ]
        if let namespace {
            self.process = try ChildProcess(NetworkNamespace.ip, ["netns", "exec", namespace] + command)
            return
        }
        self.process = try ChildProcess(command[0], Array(command.dropFirst()))
        do {
            try Self.waitForPort(self.port)
        } catch {
            let log = (try? String(contentsOfFile: self.prefix.path + "/error.log", encoding: .utf8)) ?? ""
            self.process.stop()
            throw StartError(message: "nginx did not start: \(log)")
        }
        if let tlsPort = self.tlsPort { try Self.waitForPort(tlsPort) }
    }

    deinit { self.process.stop() }

    /// nginx as a WebDAV server taking PUTs below `/dav/` (into `root/dav`, writable by its unprivileged workers).
    public static func webDAV(namespace: String? = nil) throws -> NginxServer {
        let nginx = try NginxServer(
            extraLocations: """
                location /dav/ {
                    dav_methods PUT;
                    create_full_put_path on;
                    dav_access user:rw group:r all:r;
                    client_max_body_size 0;
                }
                """,
            namespace: namespace
        )
        try FileManager.default.createDirectory(atPath: nginx.root + "/dav", withIntermediateDirectories: true)
        chmod(nginx.root + "/dav", 0o777)
        return nginx
    }

    /// Puts a file in the document root; returns its URL.
    @discardableResult
    public func serve(_ name: String, bytes: [UInt8]) throws -> String {
        let path = self.root + "/" + name
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent,
            withIntermediateDirectories: true
        )
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else { throw POSIXError(.EIO) }
        return self.baseURL + "/" + name
    }

    /// One access-log line: what nginx served for a request.
    public struct Served: Equatable, Sendable {
        public var uri: String
        public var status: Int
        public var bytes: Int
        public var range: String
        public var ifRange: String
        /// The client's address.
        public var remote: String = ""
    }

    /// The requests served for `uri`, waiting (up to 5 s) until there are at least `count`: nginx writes its
    /// access log after the response has gone, so a client can finish before the line is there.
    public func served(_ uri: String, count: Int) -> [Served] {
        let deadline = Date().addingTimeInterval(5)
        var lines = self.served(uri)
        while lines.count < count, Date() < deadline {
            usleep(10_000)
            lines = self.served(uri)
        }
        return lines
    }

    /// The requests served so far, in order (the access log is written per request).
    public func served(_ uri: String? = nil) -> [Served] {
        let text = (try? String(contentsOfFile: self.prefix.path + "/access.log", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line -> Served? in
            let quoted = line.split(separator: "\"", omittingEmptySubsequences: false)
            let fields = quoted[0].split(separator: " ")
            guard fields.count >= 3, let status = Int(fields[1]), let bytes = Int(fields[2]) else { return nil }
            let served = Served(
                uri: String(fields[0]),
                status: status,
                bytes: bytes,
                range: quoted.count > 1
                    ? String(quoted[1]).replacingOccurrences(of: "-", with: "", options: .anchored) : "",
                ifRange: quoted.count > 3 ? String(quoted[3]) : "",
                remote: quoted.count > 4 ? quoted[4].trimmingCharacters(in: .whitespaces) : ""
            )
            return uri == nil || served.uri == uri ? served : nil
        }
    }

    /// nginx failed to start; the message carries its error log.
    public struct StartError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { self.message }
    }

    static func run(_ executable: String, _ arguments: [String]) throws {
        guard try ChildProcess(executable, arguments).waitForExit() == 0 else { throw POSIXError(.EIO) }
    }

    /// A self-signed certificate for `localhost` and 127.0.0.1 and its key, made in `directory`.
    static func makeSelfSignedCertificate(in directory: String) throws -> (certificate: String, key: String) {
        let (certificate, key) = (directory + "/cert.pem", directory + "/key.pem")
        try Self.run(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", certificate, "-days", "2",
                "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ]
        )
        return (certificate, key)
    }

    /// Starts a server in the foreground, its output discarded (and its input `input`, if given), and waits until
    /// it accepts connections on `port`.
    static func launch(
        _ executable: String,
        _ arguments: [String],
        port: Int,
        input: Pipe? = nil
    ) throws
        -> ChildProcess
    {
        let process = try ChildProcess(executable, arguments, input: input?.fileHandleForReading.fileDescriptor)
        do {
            try Self.waitForPort(port)
        } catch {
            process.stop()
            throw error
        }
        return process
    }

    static func waitForPort(_ port: Int) throws {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            close(descriptor)
            if connected == 0 { return }
            usleep(20_000)
        }
        throw POSIXError(.ETIMEDOUT)
    }
}
