import BargeCore
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The optional TCP listener for Prometheus (`metrics-listen` in barge.yaml, off by default): `GET /metrics` and
/// nothing else, the same text as the control socket's. It controls nothing and names no job, so it asks no
/// credentials; it binds loopback unless an address is given. Reachable by others when bound beyond loopback, it
/// serves at most ``maximumConnections`` at once and closes a connection idle for ``idleTimeout``.
struct MetricsListener: Sendable {
    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>
    typealias Server = NIOAsyncChannel<Connection, Never>

    let address: MetricsListenAddress
    let supervisor: Supervisor
    /// Connections served at once; more are closed as they come.
    static let maximumConnections = 16
    /// A connection that sends nothing for this long is closed.
    static let idleTimeout = TimeAmount.seconds(10)

    /// Binds the address.
    func bind() async throws -> Server {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: self.address.host, port: self.address.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        IdleStateHandler(readTimeout: Self.idleTimeout),
                        CloseWhenIdle()
                    )
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try Connection(wrappingChannelSynchronously: channel)
                }
            }
    }

    /// Serves the bound address until the task is cancelled.
    func serve(_ server: Server) async throws {
        Log.info("metrics on http://\(self.address.description)/metrics")
        try await withTaskCancellationHandler {
            try await server.executeThenClose { connections in
                let open = OpenConnections()
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in connections {
                        let admitted = open.count.withLock { count in
                            guard count < Self.maximumConnections else { return false }
                            count += 1
                            return true
                        }
                        guard admitted else {
                            try? await connection.channel.close()
                            continue
                        }
                        group.addTask {
                            await self.serve(connection)
                            open.count.withLock { $0 -= 1 }
                        }
                    }
                }
            }
        } onCancel: {
            server.channel.close(promise: nil)
        }
    }

    private func serve(_ connection: Connection) async {
        try? await connection.executeThenClose { inbound, outbound in
            for try await part in inbound {
                guard case .head(let head) = part else { continue }
                let found = head.method == .GET && ControlServer.path(of: head.uri) == "/metrics"
                let body = found ? Data(await self.supervisor.metricsExposition()) : Data("not found\n".utf8)
                var headers = HTTPHeaders()
                headers.add(
                    name: "Content-Type",
                    value: found ? ControlServer.Body.metricsContentType : "text/plain; charset=utf-8"
                )
                headers.add(name: "Content-Length", value: String(body.count))
                try await outbound.write(
                    .head(HTTPResponseHead(version: head.version, status: found ? .ok : .notFound, headers: headers))
                )
                try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body))))
                try await outbound.write(.end(nil))
                if !head.isKeepAlive { return }
            }
        }
    }
}

/// The metrics listener could not bind its address (in use, not this machine's).
struct MetricsListenError: Error, CustomStringConvertible {
    var address: MetricsListenAddress
    var reason: String
    var description: String {
        "cannot listen for metrics on \(self.address.description) (metrics-listen): \(self.reason)"
    }
}

/// How many connections are being served.
private final class OpenConnections: Sendable {
    let count = Mutex(0)
}

/// Closes a connection when its idle timer fires.
private final class CloseWhenIdle: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
