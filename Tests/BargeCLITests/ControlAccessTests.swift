import BargeCore
import BargeTestSupport
import Foundation
import Glibc
import Testing

/// A local user made for a test (`useradd`), removed when the test ends.
final class LocalUser: @unchecked Sendable {
    let name: String
    let uid: UInt32
    let gid: UInt32

    /// Makes a user (with a group of its own), a member of `groups`.
    init(_ name: String, groups: [String] = []) throws {
        var arguments = ["/usr/sbin/useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group"]
        if !groups.isEmpty { arguments += ["--groups", groups.joined(separator: ",")] }
        try Self.run(arguments + [name])
        guard let entry = getpwnam(name) else { throw LocalUserError.missing(name) }
        self.name = name
        self.uid = entry.pointee.pw_uid
        self.gid = entry.pointee.pw_gid
    }

    deinit { try? Self.run(["/usr/sbin/userdel", self.name]) }

    static func run(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw LocalUserError.failed(arguments) }
    }

    /// Makes a group, removed when the returned value goes.
    static func group(_ name: String) throws -> LocalGroup {
        try Self.run(["/usr/sbin/groupadd", name])
        return LocalGroup(name: name)
    }

    /// Sends a control API request to the agent at `socket` as this user (curl, with this user's ids and groups);
    /// returns the HTTP status and the body.
    func request(_ method: String, _ path: String, socket: String, body: String? = nil) throws -> (Int, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        var arguments = [
            "--reuid=\(self.uid)", "--regid=\(self.gid)", "--init-groups", "/usr/bin/curl", "-s", "-X", method,
            "--unix-socket", socket, "-w", "\n%{http_code}",
        ]
        if let body { arguments += ["-H", "Content-Type: application/json", "--data", body] }
        process.arguments = arguments + ["http://barge\(path)"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    enum LocalUserError: Error {
        case missing(String)
        case failed([String])
    }
}

/// A group made for a test, removed when it goes.
final class LocalGroup: @unchecked Sendable {
    let name: String
    init(name: String) { self.name = name }
    deinit { try? LocalUser.run(["/usr/sbin/groupdel", self.name]) }
}

/// Least privilege on the control socket: each request is authorised by the peer's credentials.
@Suite(
    "control socket access",
    .serialized,
    .enabled(if: NginxServer.isAvailable, "nginx is not installed"),
    .enabled(if: geteuid() == 0, "needs root to make users"),
    .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/sbin/useradd"), "useradd is not installed")
)
struct ControlAccessTests {
    /// A local user reads the status, adds a job only where they may write and gets the file as theirs, and
    /// controls their own jobs but not another user's, nor the agent; a member of the admin group controls all.
    @Test func aLocalUserControlsOnlyTheirOwnJobs() async throws {
        let suffix = String(getpid() % 100_000)
        let admins = try LocalUser.group("barge-a\(suffix)")
        let user = try LocalUser("barge-u\(suffix)")
        let admin = try LocalUser("barge-m\(suffix)", groups: [admins.name])
        let nginx = try NginxServer(rateLimit: "100k")
        let agent = try AgentUnderTest(extraConfig: "admin-group: \(admins.name)")
        chmod(agent.scratch.path, 0o755)
        let theirs = agent.output + "/mine"
        try FileManager.default.createDirectory(atPath: theirs, withIntermediateDirectories: true)
        chown(theirs, user.uid, user.gid)
        let slow = try nginx.serve("slow.bin", bytes: TestContent.bytes(count: 2 << 20, seed: 51))
        let small = try nginx.serve("small.bin", bytes: TestContent.bytes(count: 4000, seed: 52))
        try agent.scratch.write(
            "manifests.d/10-root.yaml",
            "version: 1\ndownload:\n  - url: \(slow)?token=secret\n    dest: \(agent.output)/root.bin\n"
        )
        try await agent.start()
        let rootJob = try #require(try agent.status().jobs.first)

        let (statusCode, statusBody) = try user.request("GET", "/v1/status", socket: agent.socket)
        #expect(statusCode == 200)
        #expect(statusBody.contains("root.bin"))
        // Other users' URLs without their query (where tokens hide); the agent's own view has it.
        #expect(!statusBody.contains("token=secret"))
        #expect(try agent.status().jobs.first?.url.hasSuffix("?token=secret") == true)

        // Not where they may not write (the output directory is root's, mode 0755).
        let refused = try user.request(
            "POST",
            "/v1/jobs",
            socket: agent.socket,
            body: #"{"url": "\#(small)", "destination": "\#(agent.output)/theirs.bin"}"#
        )
        #expect(refused.0 == 403, "\(refused)")
        #expect(refused.1.contains("may not create"), "\(refused)")
        #expect(try agent.status().jobs.count == 1)

        // Where they may: the file is theirs.
        let added = try user.request(
            "POST",
            "/v1/jobs",
            socket: agent.socket,
            body: #"{"url": "\#(small)", "destination": "\#(theirs)/a.bin"}"#
        )
        #expect(added.0 == 200, "\(added)")
        let reply = try JSONDecoder().decode(CommandReply.self, from: Data(added.1.utf8))
        let ownJob = try #require(reply.jobs.first)
        #expect(await eventually { (try? agent.status())?.jobs.first { $0.id == ownJob }?.state == "complete" })
        var info = stat()
        #expect(stat(theirs + "/a.bin", &info) == 0)
        #expect(info.st_uid == user.uid && info.st_gid == user.gid)

        // Another user's job and the agent itself are out of reach; their own job is not.
        let cancel = try user.request("POST", "/v1/jobs/\(rootJob.id)/cancel", socket: agent.socket)
        #expect(cancel.0 == 403, "\(cancel)")
        #expect(try agent.status().jobs.first { $0.id == rootJob.id }?.state != "cancelled")
        #expect(try user.request("POST", "/v1/manifests/root/suspend", socket: agent.socket).0 == 403)
        #expect(try user.request("POST", "/v1/reload", socket: agent.socket).0 == 403)
        // Nor may they say what a link costs (an interface no test uses: nothing changes for the jobs).
        let metered = #"{"cost": "metered"}"#
        let setByUser = try user.request("POST", "/v1/network/bargetest0", socket: agent.socket, body: metered)
        #expect(setByUser.0 == 403, "\(setByUser)")
        let (networkCode, networkBody) = try user.request("GET", "/v1/network", socket: agent.socket)
        #expect(networkCode == 200 && !networkBody.contains("bargetest0"), "\(networkBody)")
        #expect(try user.request("POST", "/v1/jobs/\(ownJob)/retry", socket: agent.socket).0 == 200)

        // A member of the admin group controls every job.
        let adminCancel = try admin.request("POST", "/v1/jobs/\(rootJob.id)/cancel", socket: agent.socket)
        #expect(adminCancel.0 == 200, "\(adminCancel)")
        #expect(try agent.status().jobs.first { $0.id == rootJob.id }?.state == "cancelled")
        let setByAdmin = try admin.request("POST", "/v1/network/bargetest0", socket: agent.socket, body: metered)
        #expect(setByAdmin.0 == 200 && setByAdmin.1.contains("bargetest0: cost metered, roaming auto"), "\(setByAdmin)")
        let overrides = try JSONDecoder().decode(
            NetworkReport.self,
            from: Data(try user.request("GET", "/v1/network", socket: agent.socket).1.utf8)
        ).overrides
        #expect(
            overrides?.map { "\($0.name) \($0.cost ?? "auto")" } == ["bargetest0 metered"],
            "\(String(describing: overrides))"
        )
        #expect(agent.stop() == 0)
    }

    /// The socket is bound with its mode set before it has its name (no umask), and READY comes after it.
    @Test func theSocketIsOpenToLocalUsersWhoseRequestsAreAuthorised() async throws {
        let agent = try AgentUnderTest()
        try await agent.start()
        var info = stat()
        #expect(stat(agent.socket, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o666)
        #expect(info.st_uid == 0)
        #expect(agent.stop() == 0)
        #expect(!FileManager.default.fileExists(atPath: agent.socket))
    }

    /// A one-shot job may not write into the agent's state directory, even when an allowed root holds it.
    @Test func aGetOntoTheStateDatabaseIsRefused() async throws {
        let nginx = try NginxServer()
        let agent = try AgentUnderTest(rootIsScratch: true)
        let url = try nginx.serve("db.bin", bytes: TestContent.bytes(count: 1000, seed: 53))
        try await agent.start()
        let database = agent.scratch.path + "/state/barge.sqlite"
        let before = try Data(contentsOf: URL(fileURLWithPath: database))
        let result = try agent.barge(["get", url, database])
        #expect(result.status == 1)
        #expect(result.standardError.contains("inside barge's own state directory"), "\(result.standardError)")
        #expect(try agent.status().jobs.isEmpty)
        #expect(try Data(contentsOf: URL(fileURLWithPath: database)).count >= before.count)
        #expect(agent.stop() == 0)
    }
}
