public import BargeCore
import CBargeLinux
internal import CCurl
import Crypto
import Glibc
import Synchronization

/// An upload's resumable session at its server: the upload's URL, and the file it was made for (a session is never
/// resumed with another file, nor with this one changed).
public struct UploadSession: Sendable, Hashable {
    /// The upload's URL (tus's `Location`, or the draft's 104).
    public var url: String
    /// The file as it was when the session was made.
    public var stamp: SourceStamp

    /// Creates a session.
    public init(url: String, stamp: SourceStamp) {
        self.url = url
        self.stamp = stamp
    }

    /// As stored: `SIZE MODIFIED INODE URL`.
    public var encoded: String { "\(self.stamp.size) \(self.stamp.modified) \(self.stamp.inode) \(self.url)" }

    /// A stored session; nil when the text is not one.
    public init?(encoded: String) {
        let fields = encoded.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
        guard fields.count == 4, let size = UInt64(fields[0]), let modified = Int64(fields[1]),
            let inode = UInt64(fields[2]), !fields[3].isEmpty
        else { return nil }
        self.init(url: String(fields[3]), stamp: SourceStamp(size: size, modified: modified, inode: inode))
    }
}

/// What makes a request an upload: its local file (``TransferRequest/destination``) goes to its one source URL.
public struct UploadRequest: Sendable, Hashable {
    /// PUT or tus.
    public var uploadProtocol: UploadEntry.UploadProtocol
    /// The upload's session from an earlier run (its server may hold part of the file); used only while the file
    /// is still the one it was made for.
    public var session: UploadSession?
    /// tus: the most bytes in one PATCH.
    public var chunkSize: UInt64
    /// The most of the server's reply body kept (0: none).
    public var replyLimit: Int
    /// Hash the content as it is sent (SHA-256, in ``CompletedTransfer/sha256`` when it went in order from its
    /// first byte): a kept file that is touched later is compared by content, not sent again unchanged.
    public var hashesContent = false
    /// The content's SHA-256 as last sent: the file is hashed first, and if it is the same it is not sent again
    /// (the transfer completes having sent nothing).
    public var unchangedIfSHA256: String?

    /// Creates an upload request.
    public init(
        uploadProtocol: UploadEntry.UploadProtocol,
        session: UploadSession? = nil,
        chunkSize: UInt64 = UploadEntry.defaultChunkSize.bytes,
        replyLimit: Int = 0
    ) {
        self.uploadProtocol = uploadProtocol
        self.session = session
        self.chunkSize = chunkSize
        self.replyLimit = replyLimit
    }
}

/// An upload's local file, open for reading: reached without following a symbolic link anywhere on its path (a
/// link planted in a log directory cannot make the agent send another file), read with `pread` at the offsets the
/// exchange asks for.
final class SourceFile: @unchecked Sendable {  // immutable; `pread` may run on any thread
    let path: String
    let descriptor: Int32
    /// The size and modification time when it was opened: what is uploaded.
    let stamp: SourceStamp
    var size: UInt64 { self.stamp.size }

    private init(path: String, descriptor: Int32, stamp: SourceStamp) {
        self.path = path
        self.descriptor = descriptor
        self.stamp = stamp
    }

    deinit { close(self.descriptor) }

    /// Opens `path` for reading.
    ///
    /// - Throws: ``TransferFailure``: permanent for a file that is gone, a link or not a regular file.
    static func open(_ path: String) throws(TransferFailure) -> SourceFile {
        let directory: SafeDirectory
        do {
            directory = try SafeDirectory.open(PathRules.directory(of: path), create: false)
        } catch {
            throw TransferFailure(
                error.isTransient ? .transient : .permanent,
                "cannot open the directory of \(path): \(error.reason)"
            )
        }
        let descriptor = openat(
            directory.descriptor,
            PathRules.fileName(of: path),
            O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
        )
        guard descriptor >= 0 else {
            let code = errno
            let reason =
                code == ELOOP
                ? "\(path) is a symbolic link: uploads never follow links"
                : code == ENOENT ? "\(path) is gone" : "cannot open \(path): \(String(cString: strerror(code)))"
            throw TransferFailure(code == EINTR || code == EMFILE || code == ENFILE ? .transient : .permanent, reason)
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            close(descriptor)
            throw TransferFailure(.permanent, "\(path) is not a regular file")
        }
        // Found settled, but a writer may have opened it again since: not sent while it is being written.
        if CBargeLinux_is_open_for_writing(descriptor) == 1 {
            close(descriptor)
            throw TransferFailure(.transient, "\(path) is open for writing; it is sent once it is closed")
        }
        return SourceFile(path: path, descriptor: descriptor, stamp: Self.stamp(info))
    }

    static func stamp(_ info: stat) -> SourceStamp {
        SourceStamp(
            size: UInt64(info.st_size),
            modified: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec),
            inode: UInt64(info.st_ino)
        )
    }

    /// Why the file is no longer what was opened (deleted, rewritten, grown or shrunk), or nil when it is the same.
    func change() -> String? {
        var info = stat()
        guard fstat(self.descriptor, &info) == 0 else { return "cannot stat \(self.path) any more" }
        if info.st_nlink == 0 { return "\(self.path) was deleted while it was uploaded" }
        let now = Self.stamp(info)
        if now.size < self.size {
            return "\(self.path) shrank from \(self.size) to \(now.size) bytes while it was uploaded"
        }
        if now != self.stamp { return "\(self.path) changed while it was uploaded" }
        return nil
    }

    /// Reads up to `count` bytes at `offset`; a short read before the opened size means the file shrank.
    func read(into buffer: UnsafeMutableRawPointer, count: Int, at offset: UInt64) throws(TransferFailure) -> Int {
        while true {
            let read = pread(self.descriptor, buffer, count, off_t(offset))
            if read > 0 { return read }
            if read == 0 {
                throw TransferFailure(
                    .transient,
                    "\(self.path) shrank to \(offset) bytes while it was uploaded (it had \(self.size))"
                )
            }
            if errno == EINTR { continue }
            throw TransferFailure(.transient, "cannot read \(self.path): \(String(cString: strerror(errno)))")
        }
    }

    /// The whole file's SHA-256, lowercase hex; nil when it cannot be read whole.
    func sha256Hex() -> String? {
        var hasher = SHA256()
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var done: UInt64 = 0
        while done < self.size {
            guard let read = try? self.read(into: buffer, count: Int(min(1 << 20, self.size - done)), at: done) else {
                return nil
            }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(start: buffer, count: read))
            done += UInt64(read)
        }
        return Self.hex(hasher.finalize())
    }

    static func hex(_ digest: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        for byte in digest {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// The SHA-1 of `count` bytes at `offset`, base64 (tus's checksum extension).
    func sha1Base64(from offset: UInt64, count: UInt64) throws(TransferFailure) -> String {
        var hasher = Insecure.SHA1()
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var done: UInt64 = 0
        while done < count {
            let read = try self.read(into: buffer, count: Int(min(1 << 20, count - done)), at: offset + done)
            hasher.update(bufferPointer: UnsafeRawBufferPointer(start: buffer, count: read))
            done += UInt64(read)
        }
        return Base64.encode(Array(hasher.finalize()))
    }
}

/// Standard base64 (RFC 4648, with padding).
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let b0 = bytes[index]
            let b1 = index + 1 < bytes.count ? bytes[index + 1] : 0
            let b2 = index + 2 < bytes.count ? bytes[index + 2] : 0
            out.append(Self.alphabet[Int(b0 >> 2)])
            out.append(Self.alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
            out.append(index + 1 < bytes.count ? Self.alphabet[Int((b1 & 0x0f) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            out.append(index + 2 < bytes.count ? Self.alphabet[Int(b2 & 0x3f)] : UInt8(ascii: "="))
            index += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Where an upload's exchange with its server stands, and what each response means for it: pure, so every rule
/// is tested without a server.
///
/// PUT is one request with the whole file, offered as resumable to servers that speak the IETF draft "Resumable
/// Uploads for HTTP" (`Upload-Draft-Interop-Version: 6`, `Upload-Complete: ?1`): one that does answers
/// `104 Upload Resumption Supported` with the upload's URL, and an interrupted PUT then goes on with HEAD (the
/// server's `Upload-Offset`) and a PATCH of the rest. A server that speaks another interop version answers 400 with
/// its own: the PUT goes again without the draft's fields. tus 1.0 is OPTIONS (the server's version and extensions), then POST to
/// create an upload (its URL comes back in `Location`) or HEAD on a known one (its `Upload-Offset`), then PATCH
/// requests of at most a chunk each from the server's offset, each answered with the new offset.
struct UploadExchange: Sendable, Equatable {
    /// The request the next attempt makes.
    enum Step: Sendable, Equatable {
        /// tus: OPTIONS, for the version and extensions.
        case discover
        /// tus: POST, creating the upload.
        case create
        /// HEAD on the upload (tus's, or the draft's), for the server's offset.
        case query
        /// PATCH of `count` bytes from `offset` (tus: a chunk; the draft: the rest).
        case send(offset: UInt64, count: UInt64)
        /// One PUT of the whole file.
        case put
    }

    /// The parts of a response the exchange reads.
    struct Response: Sendable, Equatable {
        var status: Int
        var uploadOffset: UInt64?
        var uploadLength: UInt64?
        var location: String?
        var tusResumable: String?
        var tusVersion: String?
        var checksumAlgorithms: String?
        var tusExtension: String?
        var draftInteropVersion: String?
    }

    /// What a response means.
    enum Outcome: Sendable, Equatable {
        /// Go on with ``step``.
        case proceed
        /// The server has the whole file.
        case done
        /// A status that is not one the step expects: classified as any HTTP failure.
        case unexpectedStatus
        /// A failure of the exchange itself.
        case failed(TransferFailure.Kind, String)
    }

    /// What a tus server announced on OPTIONS (kept per creation URL by the engine: asked once, not per file).
    struct Capabilities: Sendable, Equatable {
        /// It takes an `Upload-Checksum` with SHA-1.
        var checksums = false
        /// The creation POST may carry the first chunk (`creation-with-upload`): a small file is one request.
        var creationWithUpload = false
    }

    /// The interop version of the resumable-uploads draft Barge speaks.
    static let draftInteropVersion = "6"

    let uploadProtocol: UploadEntry.UploadProtocol
    let size: UInt64
    let chunkSize: UInt64
    private(set) var step: Step
    /// PUT: the server refused the draft's interop version; plain PUTs from then on.
    private(set) var plainPut = false
    /// The server's capabilities, once known.
    private(set) var capabilities: Capabilities?
    /// The tus upload's URL.
    private(set) var session: String?
    /// Bytes the server confirmed it holds.
    private(set) var confirmed: UInt64 = 0
    /// The server takes an `Upload-Checksum` with SHA-1 on each PATCH.
    var checksums: Bool { self.capabilities?.checksums ?? false }
    /// Uploads created or found gone in this transfer: a server that keeps losing them is not tried forever.
    private var lostSessions = 0
    /// Checksum mismatches of the current PATCH.
    private var mismatches = 0
    /// Requests in a row that moved nothing (a PATCH the server took nothing of, a 409 and its HEAD): a server that
    /// keeps doing so is not asked forever.
    private var idle = 0

    /// `known`: the server's capabilities from an earlier upload to the same creation URL (no OPTIONS then).
    init(request: UploadRequest, size: UInt64, known: Capabilities? = nil) {
        self.uploadProtocol = request.uploadProtocol
        self.size = size
        self.chunkSize = max(1, request.uploadProtocol == .put ? .max : request.chunkSize)
        self.session = request.session?.url
        self.capabilities = known
        switch request.uploadProtocol {
        case .put: self.step = request.session == nil ? .put : .query
        case .tus: self.step = known == nil ? .discover : request.session == nil ? .create : .query
        }
    }

    /// The body the current step sends: its offset in the file and its length.
    var body: (offset: UInt64, count: UInt64) {
        switch self.step {
        case .send(let offset, let count): (offset, count)
        case .put: (0, self.size)
        case .create where self.capabilities?.creationWithUpload == true: (0, min(self.chunkSize, self.size))
        case .create, .discover, .query: (0, 0)
        }
    }

    private mutating func sendNext() -> Outcome {
        guard self.confirmed < self.size else { return .done }
        self.step = .send(offset: self.confirmed, count: min(self.chunkSize, self.size - self.confirmed))
        return .proceed
    }

    private mutating func loseSession(_ why: String) -> Outcome {
        self.session = nil
        self.confirmed = 0
        self.lostSessions += 1
        guard self.lostSessions <= 2 else { return .failed(.transient, "the server keeps losing the upload (\(why))") }
        self.step = self.uploadProtocol == .tus ? .create : .put
        return .proceed
    }

    /// A PUT's server announced the upload's URL (`104 Upload Resumption Supported`): it can be resumed there.
    mutating func announce(_ location: String, base: String) {
        guard self.uploadProtocol == .put, self.step == .put else { return }
        let session = Self.resolve(location, against: base)
        guard RedirectPolicy.sameOrigin(session, base) else { return }  // never elsewhere: resumed from zero instead
        self.session = session
    }

    /// Applies the response to the current step; `base` is the URL the step asked (for a relative `Location`).
    mutating func apply(_ response: Response, base: String) -> Outcome {
        let status = response.status
        switch self.step {
        case .put:
            if (200...299).contains(status) { return .done }
            if status == 400, !self.plainPut, let version = response.draftInteropVersion,
                version != Self.draftInteropVersion
            {
                // The server speaks another version of the draft: a plain PUT, which any server takes.
                self.plainPut = true
                self.session = nil
                return .proceed
            }
            return .unexpectedStatus
        case .discover:
            guard (200...299).contains(status) else { return .unexpectedStatus }
            let versions = Self.list(response.tusVersion ?? response.tusResumable)
            guard versions.contains("1.0.0") else {
                return .failed(
                    .permanent,
                    "\(URLRules.host(of: base)) does not announce tus 1.0.0 (OPTIONS has no Tus-Version)"
                )
            }
            self.capabilities = Capabilities(
                checksums: Self.list(response.checksumAlgorithms?.lowercased()).contains("sha1"),
                creationWithUpload: Self.list(response.tusExtension).contains("creation-with-upload")
            )
            self.step = self.session == nil ? .create : .query
            return .proceed
        case .create:
            guard status == 201 || status == 200 else { return .unexpectedStatus }
            guard let location = response.location, !location.isEmpty else {
                return .failed(.permanent, "\(URLRules.host(of: base)) created an upload without a Location")
            }
            let session = Self.resolve(location, against: base)
            // The file's bytes go only where the entry's URL said: never to another origin or scheme (a `file:`
            // Location would make libcurl write them locally).
            guard RedirectPolicy.sameOrigin(session, base) else {
                return .failed(
                    .permanent,
                    "\(URLRules.host(of: base)) named an upload URL at another origin: \(session)"
                )
            }
            self.session = session
            self.confirmed = min(response.uploadOffset ?? 0, self.size)
            return self.sendNext()
        case .query:
            if status == 404 || status == 410 || status == 403 { return self.loseSession("HTTP \(status) for it") }
            guard (200...299).contains(status) else { return .unexpectedStatus }
            guard let offset = response.uploadOffset else {
                return .failed(.permanent, "\(URLRules.host(of: base)) answered HEAD without Upload-Offset")
            }
            if let length = response.uploadLength, length != self.size {
                return self.loseSession("it is \(length) bytes long, the file \(self.size)")
            }
            guard offset <= self.size else { return self.loseSession("its offset \(offset) is past the end") }
            self.confirmed = offset
            return self.sendNext()
        case .send(let offset, _):
            if status == 409 {
                self.idle += 1
                guard self.idle <= 3 else {
                    return .failed(.transient, "\(URLRules.host(of: base)) keeps disagreeing about the offset (409)")
                }
                self.step = .query  // the offset differs from the server's: ask it
                return .proceed
            }
            if status == 460 {
                self.mismatches += 1
                guard self.mismatches <= 2 else {
                    return .failed(.transient, "\(URLRules.host(of: base)) keeps refusing the chunk's checksum")
                }
                return .proceed  // the same chunk again
            }
            if status == 404 || status == 410 { return self.loseSession("HTTP \(status) for it") }
            guard (200...299).contains(status) else { return .unexpectedStatus }
            if self.uploadProtocol == .put {
                // The draft's PATCH carried the rest with Upload-Complete: the final response is the upload's.
                self.confirmed = self.size
                return .done
            }
            guard let confirmed = response.uploadOffset, confirmed >= offset, confirmed <= self.size else {
                self.step = .query
                return .proceed
            }
            self.mismatches = 0
            if confirmed == offset {
                self.idle += 1
                guard self.idle <= 3 else {
                    return .failed(.transient, "\(URLRules.host(of: base)) takes none of the bytes sent")
                }
            } else {
                self.idle = 0
            }
            self.confirmed = confirmed
            return self.sendNext()
        }
    }

    /// A comma-separated header's items, trimmed.
    static func list(_ header: String?) -> [String] {
        (header ?? "").split(separator: ",").map { item in
            String(item.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
        }
    }

    /// `location` made absolute against `base` (a path, or a URL).
    static func resolve(_ location: String, against base: String) -> String {
        if location.contains("://") { return location }
        guard let colon = base.firstIndex(of: ":"), base[colon...].hasPrefix("://") else { return location }
        let afterScheme = base[base.index(colon, offsetBy: 3)...]
        let authorityEnd = afterScheme.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? base.endIndex
        let origin = String(base[..<authorityEnd])
        if location.hasPrefix("/") { return origin + location }
        let path = base[authorityEnd...].prefix { $0 != "?" && $0 != "#" }
        let directory = path.lastIndex(of: "/").map { String(path[...$0]) } ?? "/"
        return origin + directory + location
    }
}

/// An upload's state while the engine runs it: its open file, the exchange, the current request's body and the
/// server's reply.
final class UploadState {
    let source: SourceFile
    let request: UploadRequest
    var exchange: UploadExchange
    /// Bytes of the current request's body sent.
    var bodySent: UInt64 = 0
    /// The last response's body, up to the request's limit.
    var reply: [UInt8] = []
    /// The content's hash as sent, while the bytes went in order from the first (nil: not asked for, or out of
    /// order: a resumed upload).
    var hasher: SHA256?
    /// How far `hasher` has hashed.
    var hashedUpTo: UInt64 = 0

    /// Feeds bytes just read at `offset` to the content hash (bytes already hashed are skipped: a rewound body).
    func hash(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) {
        guard self.hasher != nil else { return }
        let end = offset + UInt64(bytes.count)
        guard offset <= self.hashedUpTo else {
            self.hasher = nil  // a gap: a resumed upload's bytes; its hash is not known
            return
        }
        guard end > self.hashedUpTo else { return }
        self.hasher!.update(bufferPointer: UnsafeRawBufferPointer(rebasing: bytes[Int(self.hashedUpTo - offset)...]))
        self.hashedUpTo = end
    }

    /// The content's SHA-256 as sent, when the whole file went in order.
    var sentSHA256: String? {
        guard let hasher = self.hasher, self.hashedUpTo == self.source.size else { return nil }
        return SourceFile.hex(hasher.finalize())
    }

    init(source: SourceFile, request: UploadRequest, known: UploadExchange.Capabilities?) {
        self.source = source
        var request = request
        // A session made for another file, or for this one before it changed, is not resumed: a new upload.
        if let session = request.session, session.stamp != source.stamp { request.session = nil }
        self.request = request
        self.exchange = UploadExchange(request: request, size: source.size, known: known)
        if request.hashesContent { self.hasher = SHA256() }
    }

    /// The exchange's session with the file it is for.
    var session: UploadSession? { self.exchange.session.map { UploadSession(url: $0, stamp: self.source.stamp) } }

    /// What the server holds plus what the current request sent.
    var received: UInt64 {
        let body = self.exchange.body
        return self.exchange.step == .put ? self.bodySent : max(self.exchange.confirmed, body.offset + self.bodySent)
    }

    func keepReply(_ bytes: UnsafeRawBufferPointer) {
        let room = self.request.replyLimit - self.reply.count
        guard room > 0 else { return }
        self.reply.append(contentsOf: bytes.prefix(room))
    }
}

extension ActiveTransfer {
    /// Configures the easy handle for the upload's current step.
    func configureUploadAttempt() throws(TransferFailure) {
        guard let upload = self.upload else { return }
        let step = upload.exchange.step
        let url: String
        switch step {
        case .discover, .create, .put: url = self.currentSource
        case .query, .send: url = upload.exchange.session ?? self.currentSource
        }
        let scheme = url.prefix { $0 != ":" }.lowercased()
        self.isHTTP = scheme == "http" || scheme == "https"
        self.responseHeaders = ResponseHeaders()
        self.status = 0
        self.abortFailure = nil
        self.lastByteAt = monotonicNow()
        self.lastProgressAt = self.lastByteAt
        upload.bodySent = 0
        upload.reply.removeAll(keepingCapacity: true)
        // The upload's own URL is the attempt's (credentials go only to the entry's origin).
        self.redirectedURL = url == self.currentSource ? nil : url
        var headers = try self.configureConnection(url: url, scheme: scheme)
        headers.append("Expect:")  // no 100-continue round trip before each body
        let body = upload.exchange.body
        let tus = "Tus-Resumable: 1.0.0"
        let draft = "Upload-Draft-Interop-Version: \(UploadExchange.draftInteropVersion)"
        let isTus = upload.request.uploadProtocol == .tus
        switch step {
        case .put:
            try self.sendBody(upload, count: body.count)
            if !upload.exchange.plainPut { headers += [draft, "Upload-Complete: ?1"] }
        case .discover:
            try self.set(CURLOPT_CUSTOMREQUEST, "OPTIONS")
            try self.set(CURLOPT_NOBODY, 1)
            headers.append(tus)
        case .create:
            try self.sendBody(upload, count: body.count)
            try self.set(CURLOPT_CUSTOMREQUEST, "POST")
            headers += [tus, "Upload-Length: \(upload.source.size)"]
            if body.count > 0 { headers.append("Content-Type: application/offset+octet-stream") }
            let name = PathRules.fileName(of: upload.source.path)
            let type = Base64.encode(Array("application/octet-stream".utf8))
            headers.append("Upload-Metadata: filename \(Base64.encode(Array(name.utf8))),filetype \(type)")
        case .query:
            try self.set(CURLOPT_NOBODY, 1)
            headers.append(isTus ? tus : draft)
        case .send(let offset, let count) where !isTus:
            try self.sendBody(upload, count: count)
            try self.set(CURLOPT_CUSTOMREQUEST, "PATCH")
            headers += [
                draft, "Upload-Offset: \(offset)", "Upload-Complete: ?1", "Content-Type: application/partial-upload",
            ]
        case .send(let offset, let count):
            try self.sendBody(upload, count: count)
            try self.set(CURLOPT_CUSTOMREQUEST, "PATCH")
            headers += [tus, "Upload-Offset: \(offset)", "Content-Type: application/offset+octet-stream"]
            if upload.exchange.checksums {
                headers.append("Upload-Checksum: sha1 \(try upload.source.sha1Base64(from: offset, count: count))")
            }
        }
        try self.setHeaders(headers)
        self.continuation.yield(.started(url: url, offset: upload.exchange.confirmed))
        if body.count > 0 {
            // Bytes are about to move: the job is transferring from here on (the exchange before was set-up).
            self.continuation.yield(
                .response(
                    TransferResponse(
                        status: 0,
                        httpVersion: "",
                        validators: Validators(),
                        totalSize: upload.source.size,
                        offset: body.offset
                    )
                )
            )
        }
    }

    private func sendBody(_ upload: UploadState, count: UInt64) throws(TransferFailure) {
        try self.set(CURLOPT_UPLOAD, 1)
        // Bytes per read callback: as large as a download's reads (libcurl's default is 64 KiB), smaller under a
        // low cap so pacing stays smooth.
        try self.set(CURLOPT_UPLOAD_BUFFERSIZE, self.bufferSize)
        try self.check(barge_easy_setopt_off_t(self.easy, CURLOPT_INFILESIZE_LARGE, curl_off_t(count)))
        let me = Unmanaged.passUnretained(self).toOpaque()
        try self.check(barge_easy_setopt_pointer(self.easy, CURLOPT_READDATA, me))
        try self.check(
            barge_easy_setopt_read_function(self.easy) { buffer, size, count, context in
                let transfer = Unmanaged<ActiveTransfer>.fromOpaque(context!).takeUnretainedValue()
                return transfer.sendBody(into: UnsafeMutableRawPointer(buffer!), capacity: size * count)
            }
        )
        // libcurl rewinds the body to send it again on a fresh connection when the server closed a reused one
        // just as the request went (without this it fails: "rewinding of the data stream failed").
        try self.check(barge_easy_setopt_pointer(self.easy, CURLOPT_SEEKDATA, me))
        try self.check(
            barge_easy_setopt_seek_function(self.easy) { context, offset, origin in
                let transfer = Unmanaged<ActiveTransfer>.fromOpaque(context!).takeUnretainedValue()
                return transfer.rewindBody(to: offset, origin: origin)
            }
        )
    }

    /// The seek callback: the current body from `offset` again (only from its start: SEEK_SET).
    func rewindBody(to offset: curl_off_t, origin: Int32) -> Int32 {
        guard let upload = self.upload, origin == SEEK_SET, offset >= 0, UInt64(offset) <= upload.exchange.body.count
        else { return Int32(CURL_SEEKFUNC_CANTSEEK) }
        upload.bodySent = UInt64(offset)
        return Int32(CURL_SEEKFUNC_OK)
    }

    /// The read callback: the next bytes of the current request's body, paced like a download's.
    func sendBody(into buffer: UnsafeMutableRawPointer, capacity: Int) -> Int {
        guard let upload = self.upload else { return Int(CURL_READFUNC_ABORT) }
        let body = upload.exchange.body
        let left = body.count - upload.bodySent
        guard left > 0 else { return 0 }
        // Paced, it reads a twentieth of a second's worth at a time (at least 4 KiB): a whole buffer under a low
        // budget would go out in one burst and then nothing for seconds.
        let yieldPacer = self.request.yields && self.traffic?.isBound == true ? self.traffic?.sendYieldPacer : nil
        let tightest = [self.bucket?.rate, self.globalPacer.rate, yieldPacer?.rate].compactMap { $0 }.min()
        let paced = tightest.map { UInt64(max(4096, $0 / 20)) } ?? UInt64(capacity)
        let count = Int(min(UInt64(capacity), left, paced))
        let now = monotonicNow()
        guard self.pass(count, now: now) else { return Int(CURL_READFUNC_PAUSE) }
        let read: Int
        do {
            read = try upload.source.read(into: buffer, count: count, at: body.offset + upload.bodySent)
        } catch {
            self.abortFailure = error
            return Int(CURL_READFUNC_ABORT)
        }
        upload.hash(UnsafeRawBufferPointer(start: buffer, count: read), at: body.offset + upload.bodySent)
        upload.bodySent += UInt64(read)
        self.transferred += UInt64(read)
        if let traffic = self.traffic, !traffic.isBound { traffic.wireSent.add(UInt64(read), ordering: .relaxed) }
        self.lastByteAt = now
        return read
    }

    /// The response's parts the exchange reads.
    var uploadResponse: UploadExchange.Response {
        UploadExchange.Response(
            status: self.status,
            uploadOffset: self.responseHeaders[.uploadOffset].flatMap { UInt64($0) },
            uploadLength: self.responseHeaders[.uploadLength].flatMap { UInt64($0) },
            location: self.responseHeaders[.location],
            tusResumable: self.responseHeaders[.tusResumable],
            tusVersion: self.responseHeaders[.tusVersion],
            checksumAlgorithms: self.responseHeaders[.tusChecksumAlgorithm],
            tusExtension: self.responseHeaders[.tusExtension],
            draftInteropVersion: self.responseHeaders[.uploadDraftInteropVersion]
        )
    }
}
