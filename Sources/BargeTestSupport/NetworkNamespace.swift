public import Foundation
import Glibc
import Synchronization

/// A network namespace made for one test (`ip netns add`), with its own links, addresses and routes, deleted with
/// everything in it when the value goes. Traffic in it never leaves the machine: it has only the links the test
/// makes.
public final class NetworkNamespace: @unchecked Sendable {
    /// Its name (`barge-PID-N`).
    public let name: String
    private static let counter = Mutex(0)

    /// Whether namespaces can be made here: root, `ip` (iproute2), and the right to make one (tried once; a
    /// container without CAP_SYS_ADMIN has not).
    public static let isAvailable: Bool = {
        guard geteuid() == 0, FileManager.default.isExecutableFile(atPath: NetworkNamespace.ip) else { return false }
        let probe = "barge-probe-\(getpid())"
        guard (try? NetworkNamespace.run(["netns", "add", probe])) != nil else { return false }
        _ = try? NetworkNamespace.run(["netns", "delete", probe])
        return true
    }()

    /// `ip` itself.
    public static var ip: String {
        FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") ? "/usr/sbin/ip" : "/sbin/ip"
    }

    /// Makes the namespace, with its loopback up.
    public init() throws {
        let number = Self.counter.withLock { count in
            count += 1
            return count
        }
        self.name = "barge-\(getpid())-\(number)"
        try Self.run(["netns", "add", self.name])
        try self.ip("link set lo up")
    }

    deinit { _ = try? Self.run(["netns", "delete", self.name]) }

    /// Runs `ip -n NAME WORDS…` (the words split on spaces); throws with its error output when it fails.
    public func ip(_ words: String) throws {
        try Self.run(["-n", self.name] + words.split(separator: " ").map(String.init))
    }

    /// Runs `tc WORDS…` in the namespace (traffic control: a `tbf` qdisc slows a link; `-s filter show` counts
    /// what a filter matched); returns its output, throws with its error output.
    @discardableResult
    public func tc(_ words: String) throws -> String {
        let tc = FileManager.default.isExecutableFile(atPath: "/usr/sbin/tc") ? "/usr/sbin/tc" : "/sbin/tc"
        return try Self.run(["netns", "exec", self.name, tc] + words.split(separator: " ").map(String.init))
    }

    /// An interface's kernel counter (`statistics/NAME` in its sysfs directory, as seen from inside).
    public func counter(_ interface: String, _ name: String) throws -> UInt64 {
        let process = self.process(["/bin/cat", "/sys/class/net/\(interface)/statistics/\(name)"])
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard let value = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw Failure(description: "no counter \(name) for \(interface): \(text)")
        }
        return value
    }

    /// A process that runs `command` inside the namespace (`ip netns exec`), not started.
    public func process(_ command: [String]) -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.ip)
        process.arguments = ["netns", "exec", self.name] + command
        return process
    }

    /// Starts `command` inside the namespace as a server that runs until the value goes (its output discarded);
    /// spawned without Foundation's `Process`, whose monitor thread can block on a long-lived child (see
    /// ``ChildProcess``).
    public func server(_ command: [String]) throws -> AnyObject {
        try ChildProcess(Self.ip, ["netns", "exec", self.name] + command)
    }

    /// Runs `command` inside the namespace to its end; returns whether it succeeded.
    public func succeeds(_ command: [String]) -> Bool {
        (try? ChildProcess(Self.ip, ["netns", "exec", self.name] + command).waitForExit()) == 0
    }

    /// A failed `ip` command.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    @discardableResult
    private static func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.ip)
        process.arguments = arguments
        let errors = Pipe()
        let output = Pipe()
        process.standardError = errors
        process.standardOutput = output
        try process.run()
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure(description: "ip \(arguments.joined(separator: " ")): \(text)")
        }
        return printed
    }
}

/// Lines a process writes to a pipe, gathered as they come.
public final class LineCollector: @unchecked Sendable {
    private var lines: [String] = []
    private var partial = Data()
    private let lock = NSLock()

    /// Collects what `pipe` carries until it closes.
    public init(_ pipe: Pipe) {
        pipe.fileHandleForReading.readabilityHandler = { [self] handle in
            let data = handle.availableData
            self.lock.lock()
            defer { self.lock.unlock() }
            if data.isEmpty {
                handle.readabilityHandler = nil
                return
            }
            self.partial += data
            while let newline = self.partial.firstIndex(of: UInt8(ascii: "\n")) {
                self.lines.append(String(decoding: self.partial[..<newline], as: UTF8.self))
                self.partial = Data(self.partial[self.partial.index(after: newline)...])
            }
        }
    }

    /// The whole lines so far.
    public var all: [String] {
        self.lock.lock()
        defer { self.lock.unlock() }
        return self.lines
    }
}
