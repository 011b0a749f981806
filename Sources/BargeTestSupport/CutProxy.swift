import Foundation
import Glibc

/// A TCP proxy on a free loopback port in front of a server (`scripts/servers/cut-proxy.py`), whose connections a
/// test can reset at any moment: the link dropping under a transfer.
public final class CutProxy: @unchecked Sendable {
    /// The port it listens on.
    public let port: Int
    private let process: ChildProcess

    /// Starts a proxy to `127.0.0.1:target`; `scripts` is the directory of `cut-proxy.py`.
    public init(to target: Int, scripts: String, port: Int? = nil) throws {
        self.port = try port ?? freeLoopbackPort()
        self.process = try NginxServer.launch(
            "/usr/bin/python3",
            [scripts + "/cut-proxy.py", "--listen", String(self.port), "--to", String(target)],
            port: self.port
        )
    }

    /// Resets every connection through it, mid-request or not.
    public func cutConnections() { kill(self.process.pid, SIGUSR1) }

    deinit { self.process.stop(grace: 0) }
}
