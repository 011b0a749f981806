public import BargeCore
import Glibc

/// ``FileFacts`` answered from the real file system with `stat(2)`.
public struct LocalFileFacts: FileFacts {
    /// Creates the view.
    public init() {}

    public func status(ofPath path: String) -> FileStatus? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return FileStatus(info)
    }
}

extension FileStatus {
    /// The facts of a `struct stat`.
    init(_ info: stat) {
        let kind: FileStatus.Kind
        switch info.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        default: kind = .other
        }
        self.init(kind: kind, mode: UInt32(info.st_mode & 0o7777), owner: info.st_uid)
    }
}
