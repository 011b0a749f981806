import BargeCore
import CBargeLinux
import Foundation
import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix

/// The control socket: an HTTP/JSON API on a Unix domain socket (documented in docs/api.md), so the `barge`
/// CLI and `curl --unix-socket` speak to the agent the same way.
///
/// Access is the socket file's: mode 0660 in a directory made 0755 if missing, so only the agent's user and group
/// may connect.
struct ControlServer: Sendable {
    let path: String
    let supervisor: Supervisor

    /// Binds the socket and serves until the task is cancelled.
    func run() async throws {
        let directory = PathRules.directory(of: self.path)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let previousMask = umask(0o117)  // the socket file is created 0660
        defer { umask(previousMask) }
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .bind(unixDomainSocketPath: self.path, cleanupExistingSocketFile: true) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(
                        wrappingChannelSynchronously: channel
                    )
                }
            }
        umask(previousMask)
        chmod(self.path, 0o660)
        Log.info("control socket at \(self.path)")
        try await withTaskCancellationHandler {
            try await server.executeThenClose { connections in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in connections {
                        group.addTask { await self.serve(connection) }
                    }
                }
            }
        } onCancel: {
            server.channel.close(promise: nil)
        }
    }

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
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
                    let (status, answer) = await self.route(head, body: Data(body.readableBytesView))
                    var headers = HTTPHeaders()
                    headers.add(name: "Content-Type", value: "application/json")
                    if case .whole(let data) = answer { headers.add(name: "Content-Length", value: String(data.count)) }
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

    /// A response body: whole, or streamed (chunked) in pieces made as they are sent.
    enum Body {
        case whole(Data)
        /// `large`: made of more than one page.
        case streamed(AnySequence<Data>, large: Bool)

        var pieces: AnySequence<Data> {
            switch self {
            case .whole(let data): AnySequence([data])
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
    func route(_ head: HTTPRequestHead, body: Data) async -> (HTTPResponseStatus, Body) {
        if head.method == .GET, Self.path(of: head.uri) == "/v1/status" {
            // Streamed a page of jobs at a time: 100,000s of jobs never sit in memory as one answer.
            let query = Self.query(of: head.uri)
            let snapshot = await self.supervisor.statusSnapshot(
                job: query["job"].flatMap { Int64($0) },
                manifest: query["manifest"]
            )
            return (.ok, .streamed(Self.statusJSON(snapshot), large: snapshot.count > Self.statusPage))
        }
        let (status, data) = await self.routeWhole(head, body: body)
        return (status, .whole(data))
    }

    /// Routes a request whose answer is small enough to make whole.
    private func routeWhole(_ head: HTTPRequestHead, body: Data) async -> (HTTPResponseStatus, Data) {
        let path = Self.path(of: head.uri)
        let parts = path.split(separator: "/").map(String.init)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        func reply(_ reply: CommandReply) -> (HTTPResponseStatus, Data) {
            let status: HTTPResponseStatus = reply.ok ? .ok : (reply.message == "no such job" ? .notFound : .badRequest)
            return (status, (try? encoder.encode(reply)) ?? Data())
        }
        if head.method == .GET, parts == ["v1", "agent"] {
            return (.ok, (try? encoder.encode(await self.supervisor.agentStatus())) ?? Data())
        }
        if head.method == .GET, parts.count == 3, parts[0] == "v1", parts[1] == "jobs", let id = Int64(parts[2]) {
            guard let job = await self.supervisor.status(job: id).jobs.first else {
                return reply(CommandReply(ok: false, message: "no such job"))
            }
            return (.ok, (try? encoder.encode(job)) ?? Data())
        }
        if head.method == .POST, parts == ["v1", "reload"] {
            await self.supervisor.reloadManifests()
            return reply(CommandReply(ok: true, message: "manifests reloaded"))
        }
        if head.method == .POST, parts == ["v1", "jobs"] {
            guard let request = try? JSONDecoder().decode(NewJobRequest.self, from: body) else {
                return reply(CommandReply(ok: false, message: "expected a JSON body: {\"url\": …, \"destination\": …}"))
            }
            return reply(await self.supervisor.add(request))
        }
        if head.method == .POST, parts.count == 4, parts[0] == "v1" {
            switch parts[1] {
            case "jobs":
                guard let number = Int64(parts[2]) else {
                    return reply(CommandReply(ok: false, message: "no such job"))
                }
                return reply(await self.command(parts[3], .jobs([number])))
            case "manifests":
                return reply(await self.command(parts[3], .manifest(parts[2])))
            default:
                break
            }
        }
        return (
            .notFound,
            (try? encoder.encode(CommandReply(ok: false, message: "no such endpoint: \(head.method) \(path)")))
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

    private func command(_ verb: String, _ selection: Supervisor.Selection) async -> CommandReply {
        switch verb {
        case "suspend": await self.supervisor.suspend(selection)
        case "resume": await self.supervisor.resume(selection)
        case "cancel": await self.supervisor.cancel(selection)
        case "retry": await self.supervisor.retry(selection)
        default: CommandReply(ok: false, message: "unknown command '\(verb)': suspend, resume, cancel or retry")
        }
    }
}
