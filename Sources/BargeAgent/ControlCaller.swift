import BargeCore
import CBargeLinux
import Dispatch
import Glibc
import Logging

/// Who sent a control request, from the socket peer's credentials (`SO_PEERCRED`), and what they may do.
///
/// Root, the agent's own user and members of the config's `admin-group` may do anything. Any other local user
/// may read the status, add one-shot jobs (written as them, only where they may write), and control the jobs
/// they added.
public struct ControlCaller: Hashable, Sendable {
    /// The peer's user.
    public var uid: UInt32
    /// The peer's group.
    public var gid: UInt32
    /// The peer's process.
    public var pid: Int32
    /// Whether they may control every job and the agent itself.
    public var isAdministrator: Bool

    /// A caller.
    public init(uid: UInt32, gid: UInt32, pid: Int32, isAdministrator: Bool) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.isAdministrator = isAdministrator
    }

    /// The agent itself (a signal, the drop-in watcher).
    public static var agent: ControlCaller {
        ControlCaller(uid: geteuid(), gid: getegid(), pid: getpid(), isAdministrator: true)
    }

    /// Whether files added by this caller are written as the agent's own user (root or the agent's user), or as
    /// the caller.
    var writesAsAgent: Bool { self.uid == 0 || self.uid == geteuid() }

    /// The owner that a one-shot job added by this caller gives its file (nil: the agent's own user).
    var fileOwner: FileOwner? {
        self.writesAsAgent ? nil : FileOwner(user: String(self.uid), group: String(self.gid))
    }

    /// Whether this caller may control `job`.
    func mayControl(_ job: JobView) -> Bool {
        if self.isAdministrator { return true }
        guard job.spec.isOneShot, let owner = job.spec.policy.owner else { return false }
        return owner.user == String(self.uid)
    }
}

/// Decides who is an administrator of the agent: root, the agent's own user, and the members of the admin group
/// (its members by name, and any process whose group is that group), resolved once when the agent starts.
struct ControlAccess: Sendable {
    let adminGID: UInt32?
    let adminUIDs: Set<UInt32>

    /// Resolves `group` (a name or a gid) through the user database; a group that does not exist names nobody.
    static func resolve(group: String?) -> ControlAccess {
        guard let group else { return ControlAccess(adminGID: nil, adminUIDs: []) }
        var entry = Glibc.group()
        var found: UnsafeMutablePointer<Glibc.group>?
        var buffer = [CChar](repeating: 0, count: 1 << 16)
        let status =
            if let gid = UInt32(group) {
                getgrgid_r(gid, &entry, &buffer, buffer.count, &found)
            } else {
                getgrnam_r(group, &entry, &buffer, buffer.count, &found)
            }
        guard status == 0, found != nil else {
            Log.error("admin-group '\(group)' does not exist: only root and the agent's user administer the agent")
            return ControlAccess(adminGID: UInt32(group), adminUIDs: [])
        }
        var uids: Set<UInt32> = []
        var member = entry.gr_mem
        while let name = member?.pointee {
            var user = passwd()
            var foundUser: UnsafeMutablePointer<passwd>?
            var userBuffer = [CChar](repeating: 0, count: 4096)
            if getpwnam_r(name, &user, &userBuffer, userBuffer.count, &foundUser) == 0, foundUser != nil {
                uids.insert(user.pw_uid)
            }
            member = member! + 1
        }
        return ControlAccess(adminGID: entry.gr_gid, adminUIDs: uids)
    }

    /// The caller that a peer with these credentials is.
    func caller(_ credentials: CBargeLinux_ucred) -> ControlCaller {
        let uid = credentials.uid
        let administrator =
            uid == 0 || uid == geteuid() || self.adminUIDs.contains(uid)
            || (self.adminGID != nil && credentials.gid == self.adminGID)
        return ControlCaller(uid: uid, gid: credentials.gid, pid: credentials.pid, isAdministrator: administrator)
    }
}

/// Runs blocking work (a user database look-up, a file-system check) on a Dispatch thread, so it never holds one
/// of the few cooperative threads that every task of the agent shares.
func offThePool<Result: Sendable>(_ body: @escaping @Sendable () -> Result) async -> Result {
    await withCheckedContinuation { continuation in
        DispatchQueue.global(qos: .utility).async { continuation.resume(returning: body()) }
    }
}
