import BargeCore
import CBargeLinux
import Dispatch
import Foundation
import Glibc
import Logging
import Synchronization

/// Resolves a manifest's `owner: user[:group]` to numeric ids (nil when the user does not exist).
enum OwnerResolver {
    static func resolve(_ owner: FileOwner) -> (uid: UInt32, gid: UInt32)? {
        var user = passwd()
        var found: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        if let uid = UInt32(owner.user) {
            guard getpwuid_r(uid, &user, &buffer, buffer.count, &found) == 0, found != nil else {
                return (uid, owner.group.flatMap(UInt32.init) ?? uid)
            }
        } else {
            guard getpwnam_r(owner.user, &user, &buffer, buffer.count, &found) == 0, found != nil else { return nil }
        }
        var gid = user.pw_gid
        if let groupName = owner.group {
            if let numeric = UInt32(groupName) {
                gid = numeric
            } else {
                var group = group()
                var foundGroup: UnsafeMutablePointer<group>?
                var groupBuffer = [CChar](repeating: 0, count: 4096)
                guard getgrnam_r(groupName, &group, &groupBuffer, groupBuffer.count, &foundGroup) == 0,
                    foundGroup != nil
                else { return nil }
                gid = group.gr_gid
            }
        }
        return (user.pw_uid, gid)
    }
}

/// systemd's notify protocol: datagrams to `$NOTIFY_SOCKET` (READY=1, STATUS=…, STOPPING=1). Absent when the
/// agent does not run under systemd.
public final class SystemdNotifier: Sendable {
    private let path: String

    /// The notifier for `$NOTIFY_SOCKET`, or nil when it is not set.
    public init?(environment: [String: String]? = nil) {
        let variables = environment ?? ProcessInfo.processInfo.environment
        guard let path = variables["NOTIFY_SOCKET"], !path.isEmpty else { return nil }
        self.path = path
    }

    /// Sends one message; failures are ignored (systemd may not listen).
    public func send(_ message: String) {
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(self.path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }  // an abstract socket
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                message.withCString { text in sendto(descriptor, text, strlen(text), 0, address, length) }
            }
        }
    }
}

/// Runs hook commands (argv lists, never a shell) as a given user, with the job's facts in the environment,
/// bounded in time: a hook that outlives its limit is killed. A failing or hanging hook is logged and never
/// blocks the agent.
final class HookRunner: Sendable {
    /// How long a hook may run.
    static let timeLimit: Double = 60
    /// Hooks that run at once; later ones wait their turn (a burst of 2,000 completions never forks 2,000
    /// processes at once).
    static let concurrentHooks = 4
    /// Hooks that may wait for a turn; past this a hook is dropped, and the log says so.
    static let waitingHooks = 1000
    /// Hooks running now (each leads its own process group).
    private let running = Mutex<Set<pid_t>>([])
    /// Hooks waiting for a turn or running.
    private let queued = Mutex(0)
    /// Where hooks are started, off the agent's cooperative threads (fork is no call for them).
    private let queue = DispatchQueue(label: "barge.hooks")
    private let turns = DispatchSemaphore(value: HookRunner.concurrentHooks)

    /// Ends every running hook and its children (the agent is stopping).
    func terminateAll() {
        for pid in self.running.withLock({ $0 }) { kill(-pid, SIGTERM) }
    }

    /// Runs a hook when its turn comes; returns at once.
    func run(_ argv: [String], environment: [String: String], as owner: (uid: UInt32, gid: UInt32)) {
        guard let program = argv.first else { return }
        let admitted = self.queued.withLock { count in
            guard count < Self.concurrentHooks + Self.waitingHooks else { return false }
            count += 1
            return true
        }
        guard admitted else {
            Log.error("hook \(program) dropped: \(Self.waitingHooks) hooks already wait for a turn")
            return
        }
        self.queue.async {
            self.turns.wait()
            self.start(argv, environment: environment, as: owner)
        }
    }

    /// A hook's turn is over.
    private func done() {
        self.queued.withLock { $0 -= 1 }
        self.turns.signal()
    }

    private func start(_ argv: [String], environment: [String: String], as owner: (uid: UInt32, gid: UInt32)) {
        let program = argv[0]
        var variables = ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"]
        variables += environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let changeIdentity = geteuid() == 0 && (owner.uid != 0 || owner.gid != 0)
        let pid = Self.spawn(argv, variables, owner: owner, changeIdentity: changeIdentity)
        guard pid > 0 else {
            Log.error("hook \(program) could not start: \(String(cString: strerror(errno)))")
            self.done()
            return
        }
        self.running.withLock { _ = $0.insert(pid) }
        Thread.detachNewThread { [self] in
            defer {
                self.running.withLock { _ = $0.remove(pid) }
                self.done()
            }
            let started = Date()
            var status: Int32 = 0
            while true {
                let result = waitpid(pid, &status, WNOHANG)
                if result == pid { break }
                if result < 0 { return }
                if Date().timeIntervalSince(started) > Self.timeLimit {
                    kill(-pid, SIGKILL)
                    waitpid(pid, &status, 0)
                    Log.error("hook \(program) ran longer than \(Int(Self.timeLimit))s and was killed")
                    return
                }
                usleep(50_000)
            }
            let exited = status & 0x7f == 0
            let code = (status >> 8) & 0xff
            if !exited || code != 0 {
                Log.error("hook \(program) failed: \(exited ? "exit status \(code)" : "signal \(status & 0x7f)")")
            }
        }
    }

    private static func spawn(
        _ argv: [String],
        _ environment: [String],
        owner: (uid: UInt32, gid: UInt32),
        changeIdentity: Bool
    ) -> pid_t {
        var arguments = argv.map { strdup($0) } + [nil]
        var variables = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in arguments { free(pointer) }
            for pointer in variables { free(pointer) }
        }
        return CBargeLinux_spawn_as(argv[0], &arguments, &variables, owner.uid, owner.gid, changeIdentity ? 1 : 0)
    }
}
