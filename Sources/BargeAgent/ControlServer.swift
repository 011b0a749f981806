import BargeCore
import BargeNetwork
import CBargeLinux
import Foundation
import Glibc
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// The control socket: an HTTP/JSON API on a Unix domain socket (documented in docs/api.md), so the `barge`
/// CLI and `curl --unix-socket` speak to the agent the same way.
///
/// Every request is authorised by the peer's credentials (`SO_PEERCRED`, see ``ControlCaller``), so the socket is
/// open to local users (mode 0666): they read the status and control their own jobs. The socket is bound under a
/// private name in a directory only the agent may enter, given its mode there, and renamed into place: no other
/// user can reach it before its mode is set, and no process-wide umask changes while transfers run.
struct ControlServer: Sendable {
    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
    typealias Server = NIOAsyncChannel<(Connection, ControlCaller), Never>

    let path: String
    let supervisor: Supervisor
    let access: ControlAccess
    /// The socket file's mode.
    static let socketMode: mode_t = 0o666

    /// Binds the socket at ``path`` (replacing a stale one); serve it with ``serve(_:)``.
    ///
    /// - Throws: when the socket cannot be bound or put in place.
    func bind() async throws -> Server {
        let directory = PathRules.directory(of: self.path)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // A private directory beside the socket's (so the rename stays on one file system), entered by the agent
        // only, holds the socket until its mode is set.
        // mkdtemp: a new directory of a random name, mode 0700, never one that someone else made beforehand.
        var template = Array((directory + "/.barge-bind-XXXXXX").utf8CString)
        guard mkdtemp(&template) != nil else {
            throw ControlSocketError(
                path: self.path,
                reason: "mkdtemp in \(directory): \(String(cString: strerror(errno)))"
            )
        }
        let staging = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer { rmdir(staging) }
        let bound = staging + "/barge.sock"
        let access = self.access
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .bind(unixDomainSocketPath: bound, cleanupExistingSocketFile: true) { channel in
                Self.credentials(of: channel).flatMapThrowing { credentials in
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    let connection = try Connection(wrappingChannelSynchronously: channel)
                    return (connection, access.caller(credentials))
                }
            }
        guard chmod(bound, Self.socketMode) == 0, rename(bound, self.path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? await server.channel.close()
            unlink(bound)
            throw ControlSocketError(path: self.path, reason: reason)
        }
        return server
    }

    /// The peer's credentials; a peer whose credentials cannot be read is refused (the connection fails).
    private static func credentials(of channel: any Channel) -> EventLoopFuture<CBargeLinux_ucred> {
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeFailedFuture(ControlSocketError(path: "", reason: "no peer credentials"))
        }
        return provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
    }

    /// Serves the bound socket until the task is cancelled.
    func serve(_ server: Server) async throws {
        Log.info("control socket at \(self.path)")
        try await withTaskCancellationHandler {
            try await server.executeThenClose { connections in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await (connection, caller) in connections {
                        group.addTask { await self.serve(connection, caller: caller) }
                    }
                }
            }
        } onCancel: {
            server.channel.close(promise: nil)
        }
    }

    private func serve(_ connection: Connection, caller: ControlCaller) async {
        try? await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            var body = ByteBuffer()
            for try await part in inbound {
                switch part {
                case .head(let requestHead):
                    head = requestHead
                    body.clear()
                case .body(var chunk):
                    guard body.readableBytes + chunk.readableBytes <= 1 << 20 else { return }
                    body.writeBuffer(&chunk)
                case .end:
                    guard let head else { return }
                    let (status, answer) = await self.route(
                        head,
                        body: Data(body.readableBytesView),
                        caller: caller
                    )
                    var headers = HTTPHeaders()
                    headers.add(name: "Content-Type", value: answer.contentType)
                    if case .whole(let data) = answer { headers.add(name: "Content-Length", value: String(data.count)) }
                    if case .metrics(let data) = answer {
                        headers.add(name: "Content-Length", value: String(data.count))
                    }
                    try await outbound.write(
                        .head(HTTPResponseHead(version: head.version, status: status, headers: headers))
                    )
                    for piece in answer.pieces {
                        try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: piece))))
                    }
                    try await outbound.write(.end(nil))
                    guard case .streamed(_, let large) = answer else { continue }
                    // A status of 100,000s of jobs left tens of MiB freed in this thread's heap: return them.
                    if large { _ = CBargeLinux_malloc_trim() }
                    // Without a length, and without chunked framing (HTTP/1.0), the body ends with the connection.
                    if head.version == .http1_0 || !head.isKeepAlive { return }
                }
            }
        }
    }

    /// A response body: whole, or streamed (chunked) in pieces made as they are sent; JSON but for the metrics.
    enum Body {
        case whole(Data)
        /// `large`: made of more than one page.
        case streamed(AnySequence<Data>, large: Bool)
        /// Prometheus's text exposition format.
        case metrics(Data)

        /// Its `Content-Type`.
        var contentType: String {
            switch self {
            case .whole, .streamed: "application/json"
            case .metrics: Self.metricsContentType
            }
        }

        /// Prometheus's text format, version 0.0.4.
        static let metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

        var pieces: AnySequence<Data> {
            switch self {
            case .whole(let data), .metrics(let data): AnySequence([data])
            case .streamed(let pieces, _): pieces
            }
        }
    }

    /// Jobs per page of a streamed status.
    static let statusPage = 1000

    /// A status as JSON, in pieces: what `JSONEncoder` (sorted keys) makes of the whole ``StatusReport``, made a
    /// page of jobs at a time.
    static func statusJSON(_ snapshot: StatusSnapshot) -> AnySequence<Data> {
        AnySequence {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            var next = -1  // -1: the head; then the first job of the next page; past the end: the tail, then done
            return AnyIterator { () -> Data? in
                defer { next = next < 0 ? 0 : (next < snapshot.count ? next + Self.statusPage : Int.max) }
                if next < 0 {
                    return Data(#"{"agent":"#.utf8) + ((try? encoder.encode(snapshot.agent)) ?? Data("{}".utf8))
                        + Data(#","jobs":["#.utf8)
                }
                if next < snapshot.count {
                    let page = snapshot.jobs(next..<min(next + Self.statusPage, snapshot.count))
                    let jobs = (try? encoder.encode(page)) ?? Data("[]".utf8)
                    // The page's array without its brackets, after a comma but for the first page.
                    return (next == 0 ? Data() : Data(",".utf8)) + jobs.dropFirst().dropLast()
                }
                guard next != Int.max else { return nil }
                return Data(#"],"manifests":"#.utf8) + ((try? encoder.encode(snapshot.manifests)) ?? Data("[]".utf8))
                    + Data("}".utf8)
            }
        }
    }

    static func path(of uri: String) -> String {
        uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? uri
    }

    /// Routes one request; returns the status and the JSON body.
    func route(_ head: HTTPRequestHead, body: Data, caller: ControlCaller) async -> (HTTPResponseStatus, Body) {
        if head.method == .GET, Self.path(of: head.uri) == "/v1/status" {
            // Streamed a page of jobs at a time: 100,000s of jobs never sit in memory as one answer.
            let query = Self.query(of: head.uri)
            let snapshot = await self.supervisor.statusSnapshot(
                job: query["job"].flatMap { Int64($0) },
                manifest: query["manifest"],
                for: caller
            )
            return (.ok, .streamed(Self.statusJSON(snapshot), large: snapshot.count > Self.statusPage))
        }
        if head.method == .GET, Self.path(of: head.uri) == "/metrics" {
            // Counts and states only, no job's name or URL: every local user may read them, as on the TCP listener.
            return (.ok, .metrics(Data(await self.supervisor.metricsExposition())))
        }
        let (status, data) = await self.routeWhole(head, body: body, caller: caller)
        return (status, .whole(data))
    }

    /// Routes a request whose answer is small enough to make whole.
    private func routeWhole(
        _ head: HTTPRequestHead,
        body: Data,
        caller: ControlCaller
    ) async -> (HTTPResponseStatus, Data) {
        let path = Self.path(of: head.uri)
        let parts = path.split(separator: "/").map(String.init)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        func reply(_ reply: CommandReply) -> (HTTPResponseStatus, Data) {
            let status: HTTPResponseStatus =
                switch reply.error {
                case nil: .ok
                case .noSuchJob: .notFound
                case .forbidden: .forbidden
                case .invalidRequest: .badRequest
                case .conflict: .conflict
                case .failed: .internalServerError
                }
            return (status, (try? encoder.encode(reply)) ?? Data())
        }
        if head.method == .GET, parts == ["v1", "agent"] {
            return (.ok, (try? encoder.encode(await self.supervisor.agentStatus())) ?? Data())
        }
        if head.method == .GET, parts.count == 3, parts[0] == "v1", parts[1] == "jobs", let id = Int64(parts[2]) {
            guard var job = await self.supervisor.status(job: id, for: caller).jobs.first else {
                return reply(.refused(.noSuchJob, "no such job"))
            }
            // A reply may carry what only its manifest should see.
            if job.direction == "upload", caller.isAdministrator {
                job.reply = await self.supervisor.reply(of: id).map { String(decoding: $0, as: UTF8.self) }
            }
            return (.ok, (try? encoder.encode(job)) ?? Data())
        }
        if head.method == .GET, parts == ["v1", "network"] {
            guard let report = await self.supervisor.networkReport() else {
                return reply(.refused(.conflict, "the agent does not monitor the network"))
            }
            var measured = await report.measuringRates()
            measured.fromAgent = true
            return (.ok, (try? encoder.encode(measured)) ?? Data())
        }
        if head.method == .POST, parts.count == 3, parts[0] == "v1", parts[1] == "network" {
            guard let request = try? JSONDecoder().decode(UplinkOverrideChange.self, from: body) else {
                let expected = #"{"cost": "metered"|"unmetered"|"auto", "roaming": "yes"|"no"|"auto"} (each optional)"#
                return reply(.refused(.invalidRequest, "expected a JSON body: \(expected)"))
            }
            return reply(await self.supervisor.setUplink(parts[2], request, by: caller))
        }
        if head.method == .POST, parts == ["v1", "reload"] {
            guard caller.isAdministrator else {
                return reply(.refused(.forbidden, "only an administrator of the agent may reload its manifests"))
            }
            await self.supervisor.reloadManifests()
            return reply(CommandReply(ok: true, message: "manifests reloaded"))
        }
        if head.method == .POST, parts == ["v1", "jobs"] {
            guard let request = try? JSONDecoder().decode(NewJobRequest.self, from: body) else {
                return reply(.refused(.invalidRequest, "expected a JSON body: {\"url\": …, \"destination\": …}"))
            }
            return reply(await self.supervisor.add(request, by: caller))
        }
        if head.method == .POST, parts.count == 4, parts[0] == "v1" {
            switch parts[1] {
            case "jobs":
                guard let number = Int64(parts[2]) else {
                    return reply(.refused(.noSuchJob, "no such job"))
                }
                return reply(await self.command(parts[3], .jobs([number]), by: caller))
            case "manifests":
                return reply(await self.command(parts[3], .manifest(parts[2]), by: caller))
            default:
                break
            }
        }
        return (
            .notFound,
            (try? encoder.encode(CommandReply.refused(.invalidRequest, "no such endpoint: \(head.method) \(path)")))
                ?? Data()
        )
    }

    /// `?job=3&manifest=models` as a dictionary (no percent-decoding needed for ids and manifest names).
    static func query(of uri: String) -> [String: String] {
        guard let mark = uri.firstIndex(of: "?") else { return [:] }
        var result: [String: String] = [:]
        for pair in uri[uri.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { result[String(parts[0])] = String(parts[1]) }
        }
        return result
    }

    private func command(
        _ verb: String,
        _ selection: Supervisor.Selection,
        by caller: ControlCaller
    ) async -> CommandReply {
        switch verb {
        case "suspend": await self.supervisor.suspend(selection, by: caller)
        case "resume": await self.supervisor.resume(selection, by: caller)
        case "cancel": await self.supervisor.cancel(selection, by: caller)
        case "retry": await self.supervisor.retry(selection, by: caller)
        default: .refused(.invalidRequest, "unknown command '\(verb)': suspend, resume, cancel or retry")
        }
    }
}

/// The control socket cannot be bound or put in place.
struct ControlSocketError: Error, CustomStringConvertible {
    var path: String
    var reason: String
    var description: String { "cannot bind the control socket \(self.path): \(self.reason)" }
}
