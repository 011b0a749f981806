import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOPosix
import NIOResumableUpload

/// A server of the IETF draft "Resumable Uploads for HTTP" on a free loopback port: SwiftNIO's own implementation
/// (swift-nio-extras' `NIOResumableUpload`, interop versions 3, 5 and 6) in front of a handler that stores each
/// upload's body under a scratch directory by its path (a PUT of `/up/a.bin` → `DIR/up/a.bin`, answered 201 once the
/// whole body is in). A proxy in front of it (``CutProxy``) lets a test drop the connections.
public final class ResumableUploadServer: Sendable {
    /// Where the uploads land.
    public let directory: ScratchDirectory
    /// The server's own port.
    public let port: Int
    private let proxy: CutProxy
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel

    /// `http://127.0.0.1:PROXYPORT`: through the proxy (the upload URLs the server hands out point there too).
    public var baseURL: String { "http://127.0.0.1:\(self.proxy.port)" }

    /// Starts the server and its proxy; `scripts` is the directory of `cut-proxy.py`.
    public init(scripts: String) throws {
        let directory = try ScratchDirectory()
        self.directory = directory
        self.port = try freeLoopbackPort()
        let proxyPort = try freeLoopbackPort()
        let root = URL(fileURLWithPath: directory.path, isDirectory: true)
        let context = HTTPResumableUploadContext(origin: "http://127.0.0.1:\(proxyPort)")
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.channel = try ServerBootstrap(group: self.group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.configureHTTPServerPipeline()
                    try sync.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                    try sync.addHandler(
                        HTTPResumableUploadHandler(context: context) { upload in
                            try? upload.pipeline.syncOperations.addHandler(StoringHandler(root: root))
                        }
                    )
                }
            }
            .bind(host: "127.0.0.1", port: self.port)
            .wait()
        self.proxy = try CutProxy(to: self.port, scripts: scripts, port: proxyPort)
    }

    /// Resets every connection through the proxy.
    public func cutConnections() { self.proxy.cutConnections() }

    /// The stored body at `path` (relative to the server's root), whole or not.
    public func stored(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: self.directory.path + "/" + path).map { [UInt8]($0) }
    }

    deinit {
        try? self.channel.close().wait()
        try? self.group.syncShutdownGracefully()
    }
}

/// Stores one upload's body at its path below `root`, answering 201 at its end.
private final class StoringHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart

    let root: URL
    var file: FileHandle?

    init(root: URL) { self.root = root }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let request):
            let target = self.root.appendingPathComponent(request.path ?? "/", isDirectory: false).standardized
            guard target.path.hasPrefix(self.root.path + "/") else { return self.respond(context, .forbidden) }
            try? FileManager.default.createDirectory(
                at: target.deletingLastPathComponent(),
                withIntermediateDirectories: true
            )
            _ = FileManager.default.createFile(atPath: target.path, contents: nil)
            self.file = try? FileHandle(forWritingTo: target)
            if self.file == nil { self.respond(context, .internalServerError) }
        case .body(let body):
            body.withUnsafeReadableBytes { bytes in try? self.file?.write(contentsOf: bytes) }
        case .end:
            guard let file = self.file else { return }
            try? file.close()
            self.file = nil
            self.respond(context, .created)
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ status: HTTPResponse.Status) {
        var response = HTTPResponse(status: status)
        response.headerFields[.contentLength] = "0"
        context.write(self.wrapOutboundOut(.head(response)), promise: nil)
        context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
    }
}
