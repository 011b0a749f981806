import Foundation
import Glibc

/// A tus 1.0 server from PyPI (tuspyserver, through `scripts/servers/tus-server.py`) on a free loopback port,
/// storing uploads in a scratch directory. `scripts/install-deps.sh` installs it in a venv.
public final class TusServer: @unchecked Sendable {
    /// The venv's Python (`BARGE_TEST_VENV`, else `~/.cache/barge/test-venv`).
    public static var python: String {
        let venv =
            ProcessInfo.processInfo.environment["BARGE_TEST_VENV"]
            ?? (ProcessInfo.processInfo.environment["HOME"] ?? "/root") + "/.cache/barge/test-venv"
        return venv + "/bin/python"
    }

    /// Whether the venv is there.
    public static var isAvailable: Bool { FileManager.default.isExecutableFile(atPath: Self.python) }

    /// Where the uploads land: `<id>` (the bytes) and `<id>.info` for each, and `received.log`.
    public let directory: ScratchDirectory
    /// The port.
    public let port: Int
    private var process: ChildProcess?
    private let launcher: String

    /// A proxy in front of it whose connections ``cutConnections()`` resets.
    private var proxy: CutProxy?
    /// The proxy's port.
    public var proxyPort: Int { self.proxy?.port ?? self.port }

    /// The creation URL, through the proxy: `http://127.0.0.1:PROXYPORT/files/`.
    public var creationURL: String { "http://127.0.0.1:\(self.proxyPort)/files/" }

    /// Starts the server and its proxy; `scripts` is the directory of `tus-server.py` and `cut-proxy.py`.
    public init(scripts: String) throws {
        self.directory = try ScratchDirectory()
        self.port = try freeLoopbackPort()
        self.launcher = scripts + "/tus-server.py"
        try self.start()
        self.proxy = try CutProxy(to: self.port, scripts: scripts)
    }

    /// Resets every connection through the proxy (a dropped link), mid-request or not.
    public func cutConnections() { self.proxy?.cutConnections() }

    /// Starts it (again, on the same port and directory).
    public func start() throws {
        self.process = try NginxServer.launch(
            Self.python,
            [self.launcher, "--port", String(self.port), "--dir", self.directory.path],
            port: self.port
        )
    }

    /// Stops it: every connection to it drops.
    public func stop() {
        self.process?.stop(grace: 0)
        self.process = nil
    }

    deinit { self.process?.stop() }

    /// The uploads it holds: each upload's id and bytes (whole or not).
    public func uploads() -> [(id: String, bytes: [UInt8])] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: self.directory.path)) ?? []
        return names.filter { $0.count == 32 && $0.allSatisfy(\.isHexDigit) }.sorted().map { name in
            (name, [UInt8]((try? Data(contentsOf: URL(fileURLWithPath: self.directory.path + "/" + name))) ?? Data()))
        }
    }

    /// The body bytes that reached it, summed over the requests with `method` (all of them: nil).
    public func receivedBodyBytes(method: String? = nil) -> Int {
        let log = (try? String(contentsOfFile: self.directory.path + "/received.log", encoding: .utf8)) ?? ""
        return log.split(separator: "\n").reduce(0) { sum, line in
            let fields = line.split(separator: " ")
            guard fields.count == 3, method == nil || fields[0] == method! else { return sum }
            return sum + (Int(fields[2]) ?? 0)
        }
    }
}
