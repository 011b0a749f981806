import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A hostile HTTP origin on 127.0.0.1 for the engine's fault tests: it serves registered resources correctly
/// (Range, If-Range, ETag, If-None-Match) unless told to misbehave, and records what it served per request.
public final class FaultOrigin: Sendable {
    /// How a resource misbehaves. Faults apply to the first `faultyRequests` requests of the resource only, so a
    /// retry or resume can succeed.
    public struct Behaviour: Sendable {
        /// Close the connection after this many body bytes.
        public var dropAfter: Int?
        /// Send this many body bytes, then nothing (connection left open).
        public var stallAfter: Int?
        /// Answer 200 with the whole body to range requests.
        public var ignoreRange = false
        /// Serve the second version (content and ETag) from the second request on.
        public var changesAfterFirstRequest: (content: [UInt8], etag: String)?
        /// Declare this Content-Length instead of the real one (then close).
        public var declaredLength: Int?
        /// Answer with this status (and Retry-After) instead of the resource.
        public var status: Int?
        /// The Retry-After header sent with `status`.
        public var retryAfter: String?
        /// Redirect to this location.
        public var redirectTo: String?
        /// Send the body slowly: this many bytes per 50 ms.
        public var dripBytesPerTick: Int?
        /// Compress range responses (Content-Encoding: gzip) although identity was asked for.
        public var gzipRanges = false
        /// Require `Authorization: Bearer TOKEN`.
        public var bearerToken: String?
        /// Require basic authentication with `user:password`.
        public var basicCredentials: String?
        /// How many requests misbehave (the later ones are served correctly).
        public var faultyRequests = 1

        /// No faults.
        public init() {}
    }

    /// What one request asked and what was sent back.
    public struct Served: Sendable, Equatable {
        public var path: String
        public var range: String?
        public var ifRange: String?
        public var ifNoneMatch: String?
        public var acceptEncoding: String?
        /// Every request header, names lowercased.
        public var headers: [String: String]
        public var status: Int
        /// Body bytes written to the socket.
        public var bodyBytes: Int
    }

    struct Resource {
        var content: [UInt8]
        var etag: String
        var behaviour: Behaviour
        var requests = 0
    }

    /// Open connections now, and the most open at once so far.
    private let connections = NIOLockedValueBox<(open: Int, peak: Int)>((0, 0))
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    private let state: NIOLockedValueBox<(resources: [String: Resource], served: [Served])>
    /// The port it listens on.
    public let port: Int

    /// `http://127.0.0.1:PORT`
    public var baseURL: String { "http://127.0.0.1:\(self.port)" }

    /// Binds a free port on 127.0.0.1 and starts serving.
    public init() throws {
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let state = NIOLockedValueBox<(resources: [String: Resource], served: [Served])>(([:], []))
        self.state = state
        let connections = self.connections
        let bootstrap = ServerBootstrap(group: self.group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline(withErrorHandling: false).flatMap {
                    channel.pipeline.addHandler(FaultHandler(state: state, connections: connections))
                }
            }
        self.channel = try bootstrap.bind(host: "127.0.0.1", port: 0).wait()
        self.port = self.channel.localAddress!.port!
    }

    deinit {
        try? self.channel.close().wait()
        try? self.group.syncShutdownGracefully()
    }

    /// Registers `content` at `path` (which starts with /); returns its URL.
    @discardableResult
    public func serve(
        _ path: String,
        content: [UInt8],
        etag: String = "\"v1\"",
        behaviour: Behaviour = Behaviour()
    )
        -> String
    {
        self.state.withLockedValue { $0.resources[path] = Resource(content: content, etag: etag, behaviour: behaviour) }
        return self.baseURL + path
    }

    /// The most connections that were open at once.
    public var peakConnections: Int { self.connections.withLockedValue { $0.peak } }

    /// The requests served for `path`, in order.
    public func served(_ path: String) -> [Served] {
        self.state.withLockedValue { $0.served.filter { $0.path == path } }
    }
}

/// Serves one connection's requests according to the registered behaviours.
private final class FaultHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let state: NIOLockedValueBox<(resources: [String: FaultOrigin.Resource], served: [FaultOrigin.Served])>
    private var head: HTTPRequestHead?
    private let connections: NIOLockedValueBox<(open: Int, peak: Int)>

    init(
        state: NIOLockedValueBox<(resources: [String: FaultOrigin.Resource], served: [FaultOrigin.Served])>,
        connections: NIOLockedValueBox<(open: Int, peak: Int)>
    ) {
        self.state = state
        self.connections = connections
    }

    func channelActive(context: ChannelHandlerContext) {
        self.connections.withLockedValue {
            $0.open += 1
            $0.peak = max($0.peak, $0.open)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.connections.withLockedValue { $0.open -= 1 }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            if let head = self.head { self.respond(context: context, head: head) }
        }
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let path = String(head.uri.prefix { $0 != "?" })
        let lookup: (FaultOrigin.Resource, Int)? = self.state.withLockedValue { state in
            guard var resource = state.resources[path] else { return nil }
            resource.requests += 1
            state.resources[path] = resource
            return (resource, resource.requests)
        }
        let served = FaultOrigin.Served(
            path: path,
            range: head.headers.first(name: "range"),
            ifRange: head.headers.first(name: "if-range"),
            ifNoneMatch: head.headers.first(name: "if-none-match"),
            acceptEncoding: head.headers.first(name: "accept-encoding"),
            headers: Dictionary(head.headers.map { ($0.name.lowercased(), $0.value) }, uniquingKeysWith: { $1 }),
            status: 404,
            bodyBytes: 0
        )
        guard let (resource, number) = lookup else {
            self.send(context: context, status: .notFound, headers: [:], body: [], served: served)
            return
        }
        var behaviour = resource.behaviour
        let faulty = number <= behaviour.faultyRequests
        var content = resource.content
        var etag = resource.etag
        if let changed = behaviour.changesAfterFirstRequest, number > 1 {
            content = changed.content
            etag = changed.etag
        }
        // The Authorization value the resource requires, and the challenge sent without it.
        let required: (value: String, challenge: String)? =
            behaviour.basicCredentials.map { ("Basic " + Data($0.utf8).base64EncodedString(), "Basic realm=\"t\"") }
            ?? behaviour.bearerToken.map { ("Bearer \($0)", "Bearer") }
        if let required, head.headers.first(name: "authorization") != required.value {
            self.send(
                context: context,
                status: .unauthorized,
                headers: ["WWW-Authenticate": required.challenge],
                body: [],
                served: served
            )
            return
        }
        if faulty, let status = behaviour.status {
            var headers: [String: String] = [:]
            if let retryAfter = behaviour.retryAfter { headers["Retry-After"] = retryAfter }
            self.send(
                context: context,
                status: HTTPResponseStatus(statusCode: status),
                headers: headers,
                body: Array("busy".utf8),
                served: served
            )
            return
        }
        if let location = behaviour.redirectTo {
            self.send(context: context, status: .found, headers: ["Location": location], body: [], served: served)
            return
        }
        if let ifNoneMatch = served.ifNoneMatch, ifNoneMatch == etag {
            self.send(context: context, status: .notModified, headers: ["ETag": etag], body: [], served: served)
            return
        }
        var status = HTTPResponseStatus.ok
        var headers: [String: String] = ["ETag": etag, "Accept-Ranges": "bytes"]
        var body = content
        let rangeAllowed = !(faulty && behaviour.ignoreRange) && (served.ifRange == nil || served.ifRange == etag)
        if let range = served.range, rangeAllowed, range.hasPrefix("bytes="),
            let start = Int(range.dropFirst(6).prefix { $0 != "-" })
        {
            if start >= content.count {
                self.send(
                    context: context,
                    status: .rangeNotSatisfiable,
                    headers: ["Content-Range": "bytes */\(content.count)"],
                    body: [],
                    served: served
                )
                return
            }
            status = .partialContent
            headers["Content-Range"] = "bytes \(start)-\(content.count - 1)/\(content.count)"
            body = Array(content[start...])
            if faulty, behaviour.gzipRanges {
                body = Gzip.stored(body)
                headers["Content-Encoding"] = "gzip"
            }
        }
        if !faulty {
            behaviour = FaultOrigin.Behaviour()
        }
        self.send(context: context, status: status, headers: headers, body: body, served: served, behaviour: behaviour)
    }

    private func send(
        context: ChannelHandlerContext,
        status: HTTPResponseStatus,
        headers: [String: String],
        body: [UInt8],
        served: FaultOrigin.Served,
        behaviour: FaultOrigin.Behaviour = FaultOrigin.Behaviour()
    ) {
        var served = served
        served.status = Int(status.code)
        var head = HTTPResponseHead(version: .http1_1, status: status)
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        head.headers.add(name: "Content-Length", value: String(behaviour.declaredLength ?? body.count))
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        var limit = body.count
        if let drop = behaviour.dropAfter { limit = min(limit, drop) }
        if let stall = behaviour.stallAfter { limit = min(limit, stall) }
        let writer = BodyWriter(
            context: context,
            handler: self,
            body: body,
            limit: limit,
            chunk: behaviour.dripBytesPerTick ?? max(limit, 1),
            close: behaviour.dropAfter != nil || behaviour.declaredLength != nil,
            stall: behaviour.stallAfter != nil,
            record: served,
            state: self.state
        )
        writer.write(from: 0)
    }

    func wrapBody(_ part: HTTPServerResponsePart) -> NIOAny { self.wrapOutboundOut(part) }
}

/// Writes one response body in chunks on the channel's event loop, then ends, closes or stalls.
///
/// `@unchecked Sendable`: only used on the channel's event loop.
private final class BodyWriter: @unchecked Sendable {
    let context: ChannelHandlerContext
    let handler: FaultHandler
    let body: [UInt8]
    let limit: Int
    let chunk: Int
    let close: Bool
    let stall: Bool
    var record: FaultOrigin.Served
    let state: NIOLockedValueBox<(resources: [String: FaultOrigin.Resource], served: [FaultOrigin.Served])>

    init(
        context: ChannelHandlerContext,
        handler: FaultHandler,
        body: [UInt8],
        limit: Int,
        chunk: Int,
        close: Bool,
        stall: Bool,
        record: FaultOrigin.Served,
        state: NIOLockedValueBox<(resources: [String: FaultOrigin.Resource], served: [FaultOrigin.Served])>
    ) {
        self.context = context
        self.handler = handler
        self.body = body
        self.limit = limit
        self.chunk = chunk
        self.close = close
        self.stall = stall
        self.record = record
        self.state = state
    }

    func write(from offset: Int) {
        let end = min(self.limit, offset + self.chunk)
        let isLast = end >= self.limit
        if isLast {
            // Record before the last bytes leave: a client that has them all may look at the record at once.
            self.record.bodyBytes = end
            let record = self.record
            self.state.withLockedValue { $0.served.append(record) }
        }
        if end > offset {
            var buffer = self.context.channel.allocator.buffer(capacity: end - offset)
            buffer.writeBytes(self.body[offset..<end])
            self.context.writeAndFlush(self.handler.wrapBody(.body(.byteBuffer(buffer))), promise: nil)
        }
        if !isLast {
            self.context.eventLoop.scheduleTask(in: .milliseconds(50)) { self.write(from: end) }
            return
        }
        if self.stall { return }
        if self.close || end < self.body.count {
            self.context.close(promise: nil)
        } else {
            self.context.writeAndFlush(self.handler.wrapBody(.end(nil)), promise: nil)
        }
    }
}

/// gzip with stored (uncompressed) deflate blocks: a valid gzip stream without a compressor.
enum Gzip {
    static func stored(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 255]
        var offset = 0
        repeat {
            let count = min(65_535, data.count - offset)
            let last: UInt8 = offset + count >= data.count ? 1 : 0
            out.append(last)
            out += [UInt8(count & 0xFF), UInt8(count >> 8), UInt8(~count & 0xFF), UInt8((~count >> 8) & 0xFF)]
            out += data[offset..<(offset + count)]
            offset += count
        } while offset < data.count
        let crc = self.crc32(data)
        out += [UInt8(crc & 0xFF), UInt8((crc >> 8) & 0xFF), UInt8((crc >> 16) & 0xFF), UInt8(crc >> 24)]
        let size = UInt32(truncatingIfNeeded: data.count)
        out += [UInt8(size & 0xFF), UInt8((size >> 8) & 0xFF), UInt8((size >> 16) & 0xFF), UInt8(size >> 24)]
        return out
    }

    static func crc32(_ data: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in data {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }
}
