/// One file of the drop-in directory: what to mirror and how.
public struct Manifest: Hashable, Sendable {
    /// The file name without its extension; names the manifest in status and commands.
    public var id: String
    /// The file's path.
    public var path: String
    /// Shown in status.
    public var description: String?
    /// Remote → local entries.
    public var downloads: [DownloadEntry]
    /// Local → remote entries.
    public var uploads: [UploadEntry]
    /// Commands run when a job of this manifest completes or fails (in addition to the agent's).
    public var hooks: Hooks
    /// Whether the agent removes a mirrored file when its entry (or the whole manifest) is removed; by default
    /// files already mirrored stay in place.
    public var prune = false

    /// Creates a manifest.
    public init(
        id: String,
        path: String,
        description: String? = nil,
        downloads: [DownloadEntry] = [],
        uploads: [UploadEntry] = [],
        hooks: Hooks = Hooks()
    ) {
        self.id = id
        self.path = path
        self.description = description
        self.downloads = downloads
        self.uploads = uploads
        self.hooks = hooks
    }

    /// Downloads plus uploads.
    public var entryCount: Int { self.downloads.count + self.uploads.count }

    /// The sum of the declared download sizes, and how many downloads declare none.
    public var declaredSize: (total: ByteCount, undeclared: Int) {
        var total: UInt64 = 0
        var undeclared = 0
        for entry in self.downloads {
            if let size = entry.size { total &+= size.bytes } else { undeclared += 1 }
        }
        return (ByteCount(total), undeclared)
    }
}

/// A remote file kept mirrored at a local path.
public struct DownloadEntry: Hashable, Sendable {
    /// The sources, tried in order (one `url`, or `mirrors`).
    public var urls: [String]
    /// The absolute local path written.
    public var destination: String
    /// The expected SHA-256 of the content, lowercase hex.
    public var sha256: String?
    /// The expected size.
    public var size: ByteCount?
    /// The policy after defaults.
    public var policy: TransferPolicy
    /// Where the entry starts in its manifest.
    public var location: SourceLocation

    /// Creates an entry.
    public init(
        urls: [String],
        destination: String,
        sha256: String? = nil,
        size: ByteCount? = nil,
        policy: TransferPolicy = TransferPolicy(),
        location: SourceLocation
    ) {
        self.urls = urls
        self.destination = destination
        self.sha256 = sha256
        self.size = size
        self.policy = policy
        self.location = location
    }
}

/// Local files (a path or a glob) kept uploaded to a remote URL.
public struct UploadEntry: Hashable, Sendable {
    /// How the upload is sent.
    public enum UploadProtocol: String, CaseIterable, Hashable, Sendable {
        /// One HTTP PUT per file.
        case put
        /// tus 1.0 resumable uploads.
        case tus
    }

    /// What happens to a local file once uploaded.
    public enum AfterUpload: Hashable, Sendable {
        /// Leave it.
        case keep
        /// Delete it.
        case delete
        /// Move it into this directory.
        case moveTo(String)
    }

    /// An absolute path or glob; each match is one upload.
    public var source: String
    /// The target URL; may use `{hostname}` and `{name}`.
    public var urlTemplate: String
    /// PUT or tus.
    public var uploadProtocol: UploadProtocol
    /// What to do with the local file afterwards.
    public var after: AfterUpload
    /// How long a file must stay unchanged (and not open for writing) before it is uploaded.
    public var settle: TimeSpan = UploadEntry.defaultSettle
    /// The most of the server's reply body kept beside the job (shown by `barge status JOB`); nil keeps none.
    public var replyLimit: ByteCount?
    /// tus: the most bytes sent in one PATCH request (what a drop can cost when the server keeps nothing of an
    /// interrupted request).
    public var chunkSize: ByteCount = UploadEntry.defaultChunkSize
    /// The policy after defaults.
    public var policy: TransferPolicy
    /// Where the entry starts in its manifest.
    public var location: SourceLocation

    /// Creates an entry.
    public init(
        source: String,
        urlTemplate: String,
        uploadProtocol: UploadProtocol = .put,
        after: AfterUpload = .keep,
        policy: TransferPolicy = TransferPolicy(),
        location: SourceLocation
    ) {
        self.source = source
        self.urlTemplate = urlTemplate
        self.uploadProtocol = uploadProtocol
        self.after = after
        self.policy = policy
        self.location = location
    }

    /// The placeholders a URL template may use: the machine's host name, the file's name, its path below the
    /// glob's fixed directory, and its content's SHA-256 (lowercase hex).
    public static let placeholders = ["hostname", "name", "relpath", "sha256"]
    /// A file is uploaded once it has been unchanged this long, unless the entry says otherwise.
    public static let defaultSettle = TimeSpan(seconds: 10)
    /// A tus PATCH request carries at most this much, unless the entry says otherwise.
    public static let defaultChunkSize = ByteCount(16 << 20)
    /// The largest reply body an entry may keep (BITS keeps at most 1 MB in memory).
    public static let maximumReply = ByteCount(1 << 20)
}

/// Commands to run on job events: argv lists, never shell strings.
public struct Hooks: Hashable, Sendable {
    /// Run when a job completes.
    public var onComplete: [String]?
    /// Run when a job fails permanently.
    public var onError: [String]?

    /// Creates hooks.
    public init(onComplete: [String]? = nil, onError: [String]? = nil) {
        self.onComplete = onComplete
        self.onError = onError
    }
}

extension UploadEntry {
    /// The URL for one file: the template with its placeholders filled in, each value percent-encoded (a
    /// relative path keeps its slashes).
    public func url(name: String, relativePath: String, hostname: String, sha256: String?) -> String {
        var url = ""
        var rest = Substring(self.urlTemplate)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            url += rest[..<open]
            switch rest[rest.index(after: open)..<close] {
            case "hostname": url += Self.percentEncoded(hostname, keepingSlashes: false)
            case "name": url += Self.percentEncoded(name, keepingSlashes: false)
            case "relpath": url += Self.percentEncoded(relativePath, keepingSlashes: true)
            case "sha256": url += sha256 ?? ""
            case let other: url += "{\(other)}"
            }
            rest = rest[rest.index(after: close)...]
        }
        return url + rest
    }

    /// Whether the template uses the content's hash (the file is hashed before its URL is known).
    public var needsSHA256: Bool { self.urlTemplate.contains("{sha256}") }

    /// `text` with every byte but RFC 3986's unreserved ones (and `/` when kept) as `%XX`.
    static func percentEncoded(_ text: String, keepingSlashes: Bool) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.unicodeScalars.append(UnicodeScalar(byte))
            case UInt8(ascii: "/") where keepingSlashes:
                out += "/"
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                out += "%"
                out.unicodeScalars.append(hex[Int(byte >> 4)])
                out.unicodeScalars.append(hex[Int(byte & 0x0f)])
            }
        }
        return out
    }
}
