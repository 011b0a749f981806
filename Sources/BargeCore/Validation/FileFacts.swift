/// What validation needs to know about the local file system, asked through this protocol so that parsing stays
/// free of I/O: `BargeLoader.LocalFileFacts` answers from the real file system, tests may answer from a table.
public protocol FileFacts: Sendable {
    /// The status of the file at `path`, following symbolic links; nil when nothing is there.
    func status(ofPath path: String) -> FileStatus?
}

/// The facts of one file that validation looks at.
public struct FileStatus: Hashable, Sendable {
    /// What kind of file it is.
    public enum Kind: Hashable, Sendable {
        case regular, directory, other
    }

    /// Regular file, directory or other.
    public var kind: Kind
    /// Permission bits (`st_mode & 0o7777`).
    public var mode: UInt32
    /// Owning uid.
    public var owner: UInt32

    /// Permission bits as four octal digits: `0644`.
    public static func octal(_ mode: UInt32) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    /// Creates a status.
    public init(kind: Kind, mode: UInt32, owner: UInt32) {
        self.kind = kind
        self.mode = mode
        self.owner = owner
    }
}

/// File facts for a system where nothing exists; validation then checks only what the text says.
public struct NoFileFacts: FileFacts {
    /// Creates the empty view.
    public init() {}

    public func status(ofPath path: String) -> FileStatus? { nil }
}
