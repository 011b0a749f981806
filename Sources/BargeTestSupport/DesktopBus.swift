import Foundation
import Glibc

/// A D-Bus daemon of the test's own (Debian's `dbus-daemon`, listening on a socket in a scratch directory) with
/// stand-ins for NetworkManager and ModemManager on it (`scripts/servers/desktop-bus.py`, python3-dbus): an agent
/// given ``address`` as `DBUS_SYSTEM_BUS_ADDRESS` reads them as it would the real ones. The test changes what they
/// say with ``send(_:_:)``.
public final class DesktopBus: @unchecked Sendable {
    /// The bus's address, `unix:path=…`.
    public let address: String
    private let directory: ScratchDirectory
    private var daemon: ChildProcess?
    private var services: ChildProcess?

    static let daemonPath = "/usr/bin/dbus-daemon"
    static let sendPath = "/usr/bin/dbus-send"
    /// Debian's Python, which has python3-dbus and python3-gi (not the test venv's).
    static let python = "/usr/bin/python3"

    /// Whether the daemon, dbus-send and Debian's python3-dbus and python3-gi are installed.
    public static var isAvailable: Bool {
        let manager = FileManager.default
        return manager.isExecutableFile(atPath: Self.daemonPath) && manager.isExecutableFile(atPath: Self.sendPath)
            && manager.fileExists(atPath: "/usr/lib/python3/dist-packages/dbus")
            && manager.fileExists(atPath: "/usr/lib/python3/dist-packages/gi")
    }

    /// Starts the daemon and the two services (none with a device or modem yet); `scripts` is the directory of
    /// `desktop-bus.py`.
    public init(scripts: String) throws {
        self.directory = try ScratchDirectory()
        let socket = self.directory.path + "/system_bus_socket"
        self.address = "unix:path=" + socket
        // Anyone on this bus may own any name and call anything: it is the test's alone.
        try self.directory.write(
            "bus.conf",
            """
            <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
             "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
            <busconfig>
              <type>system</type>
              <listen>\(self.address)</listen>
              <auth>EXTERNAL</auth>
              <policy context="default">
                <allow user="*"/>
                <allow own="*"/>
                <allow send_destination="*" eavesdrop="true"/>
                <allow eavesdrop="true"/>
              </policy>
            </busconfig>

            """
        )
        self.daemon = try ChildProcess(
            Self.daemonPath,
            ["--config-file=" + self.directory.path + "/bus.conf", "--nofork", "--nopidfile"]
        )
        let ready = self.directory.path + "/ready"
        self.services = try ChildProcess(
            Self.python,
            [scripts + "/desktop-bus.py", "--address", self.address, "--ready", ready]
        )
        // The services write the file once they own their names (they wait for the daemon's socket themselves).
        let deadline = Date().addingTimeInterval(15)
        while !FileManager.default.fileExists(atPath: ready) {
            guard Date() < deadline else {
                self.stop()
                throw Failure(description: "the stand-in NetworkManager and ModemManager did not start")
            }
            usleep(20_000)
        }
    }

    /// A failed start or call.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Calls one of the stand-ins' control methods (`AddDevice`, `SetMetered`, `AddModem`, `SetRegistration`,
    /// `SetSignalQuality`) with dbus-send's typed arguments (`string:wired0`, `uint32:1`); returns once the change and
    /// its signal are sent.
    public func send(_ method: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.sendPath)
        process.arguments =
            [
                "--bus=" + self.address, "--print-reply", "--dest=org.barge.TestDesktop", "/control",
                "org.barge.TestDesktop." + method,
            ] + arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure(description: "dbus-send \(method) \(arguments.joined(separator: " ")): \(text)")
        }
    }

    /// Stops the services and the daemon.
    public func stop() {
        self.services?.stop(grace: 0)
        self.services = nil
        self.daemon?.stop(grace: 0)
        self.daemon = nil
    }

    deinit { self.stop() }
}
