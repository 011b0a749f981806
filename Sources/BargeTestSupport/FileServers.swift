import Foundation
import Glibc

/// A private OpenSSH server on 127.0.0.1 for `sftp://` tests: its own host key, one authorised client key, the
/// test's user, started with its own config and stopped when released.
public final class SSHServer: @unchecked Sendable {
    /// Whether sshd and ssh-keygen are installed (`openssh-server`).
    public static var isAvailable: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd")
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/ssh-keygen")
    }

    /// Keys, config and the served files.
    public let directory: ScratchDirectory
    /// The port it listens on.
    public let port: Int
    /// The client's private key (mode 0600).
    public let clientKey: String
    /// A known-hosts file that holds this server's host key.
    public let knownHosts: String
    /// The user to log in as (the test's own).
    public let user: String
    private let process: ChildProcess

    /// Starts sshd.
    public init() throws {
        self.directory = try ScratchDirectory()
        let path = self.directory.path
        chmod(path, 0o755)
        self.port = try freeLoopbackPort()
        for key in ["host_key", "client_key"] {
            try NginxServer.run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", "\(path)/\(key)"])
        }
        self.clientKey = "\(path)/client_key"
        try FileManager.default.copyItem(atPath: "\(path)/client_key.pub", toPath: "\(path)/authorized_keys")
        let hostKey = try String(contentsOfFile: "\(path)/host_key.pub", encoding: .utf8)
            .split(separator: " ").prefix(2).joined(separator: " ")
        self.knownHosts = "\(path)/known_hosts"
        try "[127.0.0.1]:\(self.port) \(hostKey)\n".write(toFile: self.knownHosts, atomically: true, encoding: .utf8)
        self.user = String(cString: getpwuid(geteuid())!.pointee.pw_name)
        try """
        Port \(self.port)
        ListenAddress 127.0.0.1
        HostKey \(path)/host_key
        PidFile \(path)/sshd.pid
        AuthorizedKeysFile \(path)/authorized_keys
        PubkeyAuthentication yes
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        PermitRootLogin prohibit-password
        StrictModes no
        UsePAM no
        Subsystem sftp internal-sftp

        """.write(toFile: "\(path)/sshd_config", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
        self.process = try NginxServer.launch(
            "/usr/sbin/sshd",
            ["-D", "-e", "-f", "\(path)/sshd_config"],
            port: self.port
        )
    }

    /// Puts a file in the server's directory; returns its `sftp://` URL.
    public func serve(_ name: String, bytes: [UInt8]) throws -> String {
        let file = try self.directory.write("files/\(name)", bytes: bytes)
        return "sftp://\(self.user)@127.0.0.1:\(self.port)\(file)"
    }

    deinit { self.process.stop() }
}

/// A private vsftpd on 127.0.0.1 for `ftp://` tests: anonymous and read-only, passive mode, run as the test's user
/// (no privilege separation, so no system `ftp` account is needed), with a transfer log
/// that records the bytes of every download (resumed ones included).
public final class FTPServer: @unchecked Sendable {
    /// Whether vsftpd is installed.
    public static var isAvailable: Bool { FileManager.default.isExecutableFile(atPath: "/usr/sbin/vsftpd") }

    /// Config, log and the served files (under `root`).
    public let directory: ScratchDirectory
    /// The port it listens on.
    public let port: Int
    private let process: ChildProcess
    /// With TLS: the server's self-signed certificate (for 127.0.0.1), to trust with a CA file.
    public let certificateFile: String?

    /// Starts vsftpd; with `tls`, implicit FTPS (`ftps://`: TLS from the first byte, control and data).
    public init(tls: Bool = false) throws {
        self.directory = try ScratchDirectory()
        let path = self.directory.path
        chmod(path, 0o755)
        self.port = try freeLoopbackPort()
        var tlsSettings = ""
        if tls {
            let (certificate, key) = try NginxServer.makeSelfSignedCertificate(in: path)
            self.certificateFile = certificate
            tlsSettings = """
                ssl_enable=YES
                implicit_ssl=YES
                allow_anon_ssl=YES
                force_anon_logins_ssl=YES
                force_anon_data_ssl=YES
                require_ssl_reuse=NO
                rsa_cert_file=\(certificate)
                rsa_private_key_file=\(key)

                """
        } else {
            self.certificateFile = nil
        }
        try FileManager.default.createDirectory(atPath: "\(path)/root", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(path)/empty", withIntermediateDirectories: true)
        chmod("\(path)/root", 0o755)
        chmod("\(path)/empty", 0o755)
        try """
        listen=YES
        listen_address=127.0.0.1
        listen_port=\(self.port)
        background=NO
        anonymous_enable=YES
        no_anon_password=YES
        anon_root=\(path)/root
        local_enable=NO
        write_enable=NO
        pasv_enable=YES
        pasv_address=127.0.0.1
        secure_chroot_dir=\(path)/empty
        seccomp_sandbox=NO
        isolate=NO
        isolate_network=NO
        xferlog_enable=YES
        vsftpd_log_file=\(path)/vsftpd.log
        run_as_launching_user=YES
        \(tlsSettings)
        """.write(toFile: "\(path)/vsftpd.conf", atomically: true, encoding: .utf8)
        self.process = try NginxServer.launch("/usr/sbin/vsftpd", ["\(path)/vsftpd.conf"], port: self.port)
    }

    /// Puts a file in the anonymous root; returns its `ftp://` URL.
    public func serve(_ name: String, bytes: [UInt8]) throws -> String {
        let file = try self.directory.write("root/\(name)", bytes: bytes)
        chmod(file, 0o644)
        return "\(self.certificateFile == nil ? "ftp" : "ftps")://127.0.0.1:\(self.port)/\(name)"
    }

    /// The bytes sent by each download of `name` so far (`OK DOWNLOAD` and `FAIL DOWNLOAD` lines), waiting up to
    /// 5 s for at least `count` of them.
    public func downloads(of name: String, count: Int) -> [Int] {
        let deadline = Date().addingTimeInterval(5)
        while true {
            let text = (try? String(contentsOfFile: self.directory.path + "/vsftpd.log", encoding: .utf8)) ?? ""
            let sizes = text.split(separator: "\n").filter { $0.contains("DOWNLOAD") && $0.contains("/\(name)\",") }
                .compactMap { line -> Int? in
                    guard let range = line.range(of: #", (\d+) bytes"#, options: .regularExpression) else { return nil }
                    return Int(line[range].dropFirst(2).prefix { $0.isNumber })
                }
            if sizes.count >= count || Date() > deadline { return sizes }
            usleep(20_000)
        }
    }

    deinit { self.process.stop(grace: 0) }  // vsftpd's listener does not end on SIGTERM
}

/// A private Samba `smbd` on 127.0.0.1 (a free port) sharing one read-only directory to guests, speaking SMB1 —
/// the only dialect libcurl's smb:// has. Needs root, as smbd does.
public final class SMBServer: @unchecked Sendable {
    /// Whether smbd is installed and can run here.
    public static var isAvailable: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/sbin/smbd") && geteuid() == 0
    }

    /// Config, state, log and the shared files (under `share`).
    public let directory: ScratchDirectory
    /// The port it listens on.
    public let port: Int
    private let process: ChildProcess
    private let input = Pipe()

    /// Starts smbd.
    public init() throws {
        self.directory = try ScratchDirectory()
        let path = self.directory.path
        chmod(path, 0o755)
        self.port = try freeLoopbackPort()
        for sub in ["share", "run", "lock", "state", "cache", "private"] {
            try FileManager.default.createDirectory(atPath: "\(path)/\(sub)", withIntermediateDirectories: true)
        }
        chmod("\(path)/share", 0o755)
        try """
        [global]
          server role = standalone server
          server min protocol = NT1
          smb ports = \(self.port)
          bind interfaces only = yes
          interfaces = 127.0.0.1
          disable netbios = yes
          pid directory = \(path)/run
          lock directory = \(path)/lock
          state directory = \(path)/state
          cache directory = \(path)/cache
          private dir = \(path)/private
          ncalrpc dir = \(path)/run/ncalrpc
          log file = \(path)/smbd.log
          map to guest = Bad User
          guest account = nobody
          load printers = no
          disable spoolss = yes
          printcap name = /dev/null
        [share]
          path = \(path)/share
          guest ok = yes
          read only = yes
        """.write(toFile: "\(path)/smb.conf", atomically: true, encoding: .utf8)
        // In the foreground smbd ends when its standard input closes: give it one that stays open.
        self.process = try NginxServer.launch(
            "/usr/sbin/smbd",
            ["--foreground", "--no-process-group", "--configfile=\(path)/smb.conf"],
            port: self.port,
            input: self.input
        )
    }

    /// Puts a file in the share; returns its `smb://` URL (as the guest user).
    public func serve(_ name: String, bytes: [UInt8]) throws -> String {
        let file = try self.directory.write("share/\(name)", bytes: bytes)
        chmod(file, 0o644)
        return "smb://guest@127.0.0.1:\(self.port)/share/\(name)"
    }

    // SIGTERM first: smbd takes its helper processes down with it (a killed one would leave them running).
    deinit { self.process.stop() }
}
