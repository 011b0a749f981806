import CBargeLinux
import Foundation
import Glibc

/// A program the test support runs (a server, a key generator), spawned and reaped here with `posix_spawn` and
/// `waitpid`.
///
/// Not Foundation's `Process`: its one monitor thread reaps a child with a blocking `waitpid` as soon as the child
/// closes the socket it inherits from Foundation, and sshd closes every inherited descriptor when it starts. The
/// monitor then waits for sshd to end, and until it does no other process of the test run is seen to end: with the
/// test threads blocked in `waitUntilExit` (an agent stopped, a `barge status`), the whole run hung.
final class ChildProcess: @unchecked Sendable {
    /// The process id; also its process group's (its children are ended with it).
    let pid: pid_t
    private let lock = NSLock()
    private var exitStatus: Int32?

    /// Starts `executable` with `arguments`, in a process group of its own, with default signal handling, standard
    /// input `input` (else /dev/null), output and errors discarded, and no other descriptor of the test process.
    init(_ executable: String, _ arguments: [String], input: Int32? = nil) throws {
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        guard null >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(null) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, input ?? null, 0)
        posix_spawn_file_actions_adddup2(&actions, null, 1)
        posix_spawn_file_actions_adddup2(&actions, null, 2)
        // Descriptors without close-on-exec (Foundation's own among them) must not leak into a long-lived server.
        CBargeLinux_spawn_close_from(&actions, 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t()
        var none = sigset_t()
        sigfillset(&all)
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes,
            Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)
        )
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid = pid_t()
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard result == 0 else { throw POSIXError(POSIXErrorCode(rawValue: result) ?? .EIO) }
        self.pid = pid
    }

    /// A process dropped without ``stop(grace:)`` or ``waitForExit()`` is killed and reaped, never left a zombie.
    deinit { self.stop(grace: 0) }

    /// Whether the process is still running (it is reaped once it has ended).
    var isRunning: Bool {
        self.lock.withLock {
            guard self.exitStatus == nil else { return false }
            var status: Int32 = 0
            switch waitpid(self.pid, &status, WNOHANG) {
            case 0: return true
            case self.pid: self.exitStatus = status
            default: self.exitStatus = 127 << 8  // not our child any more (ECHILD): count it as failed
            }
            return false
        }
    }

    /// Waits for the process to end; returns its exit code (128 + the signal when a signal ended it).
    @discardableResult
    func waitForExit() -> Int32 {
        let status: Int32 = self.lock.withLock {
            if let status = self.exitStatus { return status }
            var status: Int32 = 0
            var result: pid_t
            repeat { result = waitpid(self.pid, &status, 0) } while result == -1 && errno == EINTR
            self.exitStatus = result == self.pid ? status : 127 << 8
            return self.exitStatus!
        }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// Ends the process and its group (the children it made): SIGTERM, then SIGKILL if it still runs after `grace`
    /// seconds (at once when 0); waits for it.
    func stop(grace: Double = 5) {
        guard self.isRunning else { return }
        if grace > 0 {
            kill(-self.pid, SIGTERM)
            let deadline = Date().addingTimeInterval(grace)
            while self.isRunning, Date() < deadline { usleep(20_000) }
        }
        if self.isRunning { kill(-self.pid, SIGKILL) }
        self.waitForExit()
    }
}
